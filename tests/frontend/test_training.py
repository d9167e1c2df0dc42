"""Training with the order losses from the browser: a run from the form with live curves,
then two presets as an experiment on the bottleneck page (small settings)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.frontend.conftest import ROOT, Console, shot


def test_the_page_describes_the_presets_the_engine_uses() -> None:
    from conceptlens.order_loss import OrderTerm
    from conceptlens.training import PRESETS

    source = (ROOT / "frontend" / "js" / "views" / "training.js").read_text()
    block = source.split("const PRESET_NOTES = {")[1].split("};")[0]
    notes = dict(re.findall(r'^  "?([a-z ]+)"?: "([^"]+)",$', block, flags=re.M))

    def term(t: OrderTerm, sign: str) -> str:
        return f"{t.weight:g}·L{sign}({t.r1:g}, {t.r2:g})"

    assert set(notes) == set(PRESETS)
    for name, config in PRESETS.items():
        if config is None:
            assert notes[name] == "classification loss only"
            continue
        parts = [term(t, s) for t, s in ((config.plus, "+"), (config.minus, "−")) if t]
        assert notes[name].split(" (")[0] == " + ".join(parts), name


def shapes_zip(path: Path, *, flat: bool = False) -> Path:
    """12 small PNGs of two classes, in class folders (or flat)."""
    import io
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(path, "w") as archive:
        for k in range(12):
            buf = io.BytesIO()
            Image.new("L", (16, 16), 40 + 17 * k).save(buf, format="PNG")
            folder = "" if flat else ("dark/" if k % 2 else "light/")
            archive.writestr(f"{folder}{k}.png", buf.getvalue())
    return path


def fill_small_settings(page: Any) -> None:
    """The form's small settings: a 2x2 grid, 2 epochs on 64 images, one attack budget,
    and an exact evaluation of 2 images on a 2x2 grid."""
    page.fill("#train-grid", "2x2")
    page.fill("#train-epochs", "2")
    page.fill("#train-max", "64")
    page.fill("#train-eps", "0.1")
    page.fill("#train-eval-grid", "2x2")
    page.fill("#train-eval-images", "2")


def test_training_run_and_bottleneck_experiment(browser: Any, server: str, tmp_path: Path) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/training")
    page.wait_for_selector("#train-run")
    # an image set uploaded from the form: a flat (unlabelled) zip is refused for training,
    # a class-per-folder one is selected
    page.set_input_files("#train-dataset-file", str(shapes_zip(tmp_path / "flat.zip", flat=True)))
    page.wait_for_selector("#train-dataset-status .error:has-text('has no labels')")
    page.set_input_files("#train-dataset-file", str(shapes_zip(tmp_path / "shapes.zip")))
    page.wait_for_selector("#train-dataset-status:has-text('Uploaded shapes: 12 images')")
    assert "shapes" in page.locator("#train-dataset option:checked").inner_text()
    page.select_option("#train-dataset", index=0)  # back to the built-in digits
    # one small custom run: L+ on the upper half of a 2x2 grid
    page.check("#train-custom")
    page.fill("#train-plus-weight", "0.5")
    page.fill("#train-plus-r1", "0.5")
    page.fill("#train-plus-r2", "1")
    fill_small_settings(page)
    page.click("#train-run")
    page.wait_for_selector("h1:has-text('Training run')")
    page.wait_for_selector("#train-loss .main-svg", timeout=120_000)
    page.wait_for_selector("#adv-table", timeout=120_000)
    page.wait_for_selector("#train-evaluation", timeout=120_000)
    assert "L+: λ 0.5 on orders [0.5·n, 1·n]" in page.inner_text("main")
    shot(page, "training-run")
    # a bad setting is refused with the server's sentence, nothing started
    page.goto(f"{server}/#/training")
    page.wait_for_selector("#train-run")
    page.fill("#train-grid", "40x40")
    page.click("#train-run")
    page.wait_for_selector(".error:has-text('does not fit')")
    refused = [e for e in console.errors if "status of 400" in e]  # the refusal above
    assert len(refused) == 1
    console.errors = [e for e in console.errors if e not in refused]
    # two presets as an experiment
    fill_small_settings(page)
    page.click("#train-experiment")
    page.wait_for_selector("h1:has-text('Bottleneck experiment')")
    page.wait_for_selector("#bottleneck-curve .main-svg", timeout=240_000)
    traces = page.locator("#bottleneck-curve .scatterlayer .trace")
    for _ in range(480):  # one curve per run, as each run's analysis ends, and F(m)
        if traces.count() == 5:
            break
        page.wait_for_timeout(500)
    assert traces.count() == 5
    assert page.locator("#bottleneck-curve .legendtext", has_text="theory F(m), n = 4").count() == 1
    assert page.locator("#adv-table tbody tr").count() == 4
    shot(page, "bottleneck-experiment")
    # each run's checkpoints are a model series: its learning dynamics in one click
    page.locator("button.run-dynamics").first.click()
    page.wait_for_selector("#dynamics-similarity .main-svg", timeout=120_000)
    assert not console.errors, console.errors
    context.close()
