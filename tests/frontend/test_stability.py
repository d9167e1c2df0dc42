"""A stability analysis from the browser: the form's settings, then β, κ and α per order."""

from __future__ import annotations

import time
from typing import Any

from tests.frontend.conftest import Console, shot


def test_stability_analysis_from_the_form(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")
    ready = """fetch('/api/models').then(r => r.json()).then(b => (b.data || []).filter(
        m => m.name.includes('PyTorch weights, seed 0') && m.status === 'ready').length)"""
    deadline = time.monotonic() + 120  # the PyTorch demos are trained at first start
    while page.evaluate(ready) < 1:
        assert time.monotonic() < deadline, "the PyTorch demo model never became ready"
        page.wait_for_timeout(500)
    page.goto(f"{server}/#/new?grid=3x3&baseline=zero")
    page.wait_for_selector("#model-select")
    torch = "s => [...s.options].find(o => o.text.includes('PyTorch weights, seed 0')).value"
    page.select_option("#model-select", value=page.eval_on_selector("#model-select", torch))
    page.check("#mode-stability")
    page.wait_for_selector("#stability-settings:not([hidden])")
    page.fill("#draws", "1")
    page.fill("#pgd-steps", "3")
    page.select_option("#dataset-select", index=1)
    page.fill("#dataset-k", "4")
    page.wait_for_selector("#cost:has-text('4 images')")
    page.click("#run")
    page.wait_for_selector("#stability-kappa .main-svg", timeout=180_000)
    page.wait_for_selector("#stability-alpha .main-svg")
    page.wait_for_selector("#stability-title:has-text('4 images')")
    shot(page, "stability")
    assert not console.errors, console.errors
    context.close()
