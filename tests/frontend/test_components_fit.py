"""A well-fitted component analysis shows no poor-fit warning and nothing stray in its place."""

from __future__ import annotations

from typing import Any

from tests.frontend.conftest import Console, ready_models


def test_a_good_fit_shows_no_warning(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")
    models = ready_models(page, "PyTorch weights, seed 0)")
    sets = page.evaluate("fetch('/api/datasets').then(r => r.json())")["data"]
    body = {"model_id": models[0]["id"], "dataset_id": sets[0]["id"], "layer": "relu2",
            "orders": [0, 1], "epochs": 30, "max_samples": 240}  # fmt: skip
    job = page.evaluate(
        """b => fetch('/api/components', {method: 'POST', headers: {'Content-Type':
            'application/json'}, body: JSON.stringify(b)}).then(r => r.json())""",
        body,
    )
    page.goto(f"{server}/#/components/{job['id']}")
    page.wait_for_selector("#comp-maps .main-svg", timeout=240_000)
    fits = page.evaluate(f"fetch('/api/components/{job['id']}').then(r => r.json())")
    assert max(fits["metrics"]["test_r2"]) >= 0.5, fits["metrics"]["test_r2"]  # a good fit
    assert page.locator("#poor-fit").count() == 0
    lines = page.evaluate("document.body.innerText.split('\\n').map(l => l.trim())")
    assert "null" not in lines  # the absent warning left nothing behind
    assert not console.errors, console.errors
    context.close()
