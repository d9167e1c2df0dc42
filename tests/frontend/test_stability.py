"""A stability analysis from the browser: the form's settings, then β, κ and α per order."""

from __future__ import annotations

from typing import Any

from tests.frontend.conftest import Console, ready_models, shot


def test_stability_analysis_from_the_form(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")
    ready_models(page, "PyTorch weights, seed 0)")
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
    # a second σ on the same images, overlaid on the first analysis's plots
    first = page.url.split("#")[1]
    body = page.evaluate(
        """path => fetch('/api' + path).then(r => r.json()).then(a => ({
            model_id: a.model_id, image_ids: [...new Set(a.items.map(i => i.image_id))],
            grid: a.params.grid, baseline: a.params.baseline, mode: 'stability',
            stability: {...a.params.stability, sigma: 0.5}}))""",
        first,
    )
    second = page.evaluate(
        """body => fetch('/api/analyses', {method: 'POST', headers: {'Content-Type':
            'application/json'}, body: JSON.stringify(body)}).then(r => r.json())""",
        body,
    )
    done = f"() => fetch('/api/analyses/{second['id']}').then(r => r.json()).then(a => a.status)"
    for _ in range(360):
        if page.evaluate(done) == "done":
            break
        page.wait_for_timeout(500)
    page.reload()
    page.wait_for_selector(f"#stability-overlay option[value='{second['id']}']", state="attached")
    page.select_option("#stability-overlay", second["id"])
    page.wait_for_function("() => document.querySelector('#stability-kappa').data.length === 2")
    assert not console.errors, console.errors
    context.close()
