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
