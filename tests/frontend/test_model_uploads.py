"""The Models page's upload forms: a model's training split, and a series as one zip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.frontend.conftest import Console


def test_a_model_uploaded_with_its_training_split_shows_it(
    browser: Any, server: str, tmp_path: Path
) -> None:
    from conceptlens.models.demo import write_demo_model

    manifest = write_demo_model(tmp_path, n_samples=1)
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/models")
    page.wait_for_selector("#model-form")
    page.set_input_files("#model-file", str(tmp_path / manifest["files"]["safetensors"]))
    page.fill("#model-name", "split upload")
    page.fill("#model-train-samples", "5000")  # more than the digits hold: refused
    page.click("#model-upload")
    page.wait_for_selector("#model-error:has-text('train_samples must be at most 1500')")
    page.set_input_files("#model-file", str(tmp_path / manifest["files"]["safetensors"]))
    page.fill("#model-train-samples", "200")
    page.click("#model-upload")
    row = page.locator(".cl-row", has_text="split upload")
    row.locator("text=trained on the first 200 training digits").wait_for()
    assert not [e for e in console.errors if "422" not in e], console.errors
    context.close()


def test_a_series_uploads_as_one_zip(browser: Any, server: str, tmp_path: Path) -> None:
    import zipfile

    from conceptlens.models.demo import write_demo_model

    manifest = write_demo_model(tmp_path, n_samples=1)
    onnx = (tmp_path / manifest["files"]["onnx"]).read_bytes()
    archive = tmp_path / "run.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("epoch_3.onnx", onnx)
        z.writestr("epoch_1.onnx", onnx)
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/models")
    page.wait_for_selector("#series-form")
    page.set_input_files("#series-files", str(archive))
    page.fill("#series-name", "zipped in the browser")
    page.click("#series-upload")
    page.wait_for_selector("text=Uploaded the series zipped in the browser (2 checkpoints)")
    listed = page.evaluate("fetch('/api/model-series').then(r => r.json())")["data"]
    series = next(s for s in listed if s["name"] == "zipped in the browser")
    assert series["steps"] == [1, 3]
    assert not console.errors, console.errors
    context.close()
