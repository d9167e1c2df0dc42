"""A model series uploaded on the Models page, then its learning dynamics from the form."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.frontend.conftest import Console, shot


def test_series_upload_and_dynamics(browser: Any, server: str, tmp_path: Path) -> None:
    from conceptlens.models.demo import write_demo_model

    manifest = write_demo_model(tmp_path, n_samples=1)
    onnx = tmp_path / manifest["files"]["onnx"]
    files = [tmp_path / f"step{k}.onnx" for k in (0, 5)]
    for copy in files:
        shutil.copy(onnx, copy)
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/models")
    page.wait_for_selector("#series-form")
    page.set_input_files("#series-files", [str(f) for f in files])
    page.fill("#series-name", "browser run")
    page.fill("#series-steps", "0, 5")
    page.click("#series-upload")
    page.wait_for_selector("text=Uploaded the series browser run")
    ready = """fetch('/api/model-series').then(r => r.json()).then(b => b.data.filter(
        s => s.name === 'browser run' && s.statuses.every(x => x === 'ready')).length)"""
    for _ in range(240):
        if page.evaluate(ready):
            break
        page.wait_for_timeout(500)
    page.goto(f"{server}/#/new?grid=2x2")
    page.wait_for_selector("#model-select")
    page.check("#mode-dynamics")
    page.select_option("#series-select", "browser run")
    page.locator(".image-choice input").first.check()
    page.wait_for_selector("#cost:has-text('forward passes')")
    page.click("#run")
    page.wait_for_selector("#dynamics-similarity .main-svg", timeout=120_000)
    page.wait_for_selector("#dynamics-strength .main-svg")
    shot(page, "dynamics")
    assert not console.errors, console.errors
    context.close()
