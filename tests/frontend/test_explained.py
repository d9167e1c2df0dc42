"""Every chart explains itself in place (issue 13 §1): on each kind of result page, every
rendered Plotly chart has a note in its card that gives a formula and names the seed that
defines it, and the red/blue tint of patch overlays has a legend wherever overlays are drawn.

Small settings throughout: exact 2x2 and 3x3 grids on a few built-in digits, one or two
epochs of training, a sampled 4x4 grid with two contexts."""

from __future__ import annotations

from typing import Any

from tests.frontend.conftest import Console, ready_models, shot

POST = """([path, body]) => fetch('/api' + path, {method: 'POST', headers: {'Content-Type':
    'application/json'}, body: JSON.stringify(body)}).then(r => r.json())"""
GET = "path => fetch('/api' + path).then(r => r.json())"

# per chart: its id, whether its card shows a note that names a seed, and one with a formula
NOTES = """() => [...document.querySelectorAll('.js-plotly-plot')].map(div => {
    const card = div.closest('.card');
    const hints = card ? [...card.querySelectorAll('.cl-hint')].filter(p => p.offsetParent) : [];
    return {id: div.id, seed: hints.some(p => /seed 00[0-4]/i.test(p.textContent)),
            formula: hints.some(p => p.querySelector('code.cl-formula'))};
})"""

RIGHTMOST_NOTE = """() => Math.max(...[...document.querySelectorAll('.cl-hint')].map(
    p => p.getBoundingClientRect().right))"""


def create(page: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    created = page.evaluate(POST, [path, body])
    assert "id" in created or "data" in created, created
    return dict(created)


def finished(page: Any, path: str) -> dict[str, Any]:
    """Polls GET path until its status is done (fails on failed or cancelled)."""
    for _ in range(1200):
        got = page.evaluate(GET, path)
        assert "status" in got, (path, got)
        assert got.get("status") not in ("failed", "cancelled"), got
        if got.get("status") == "done":
            return dict(got)
        page.wait_for_timeout(300)
    raise AssertionError(f"{path} did not finish")


def charts_explained(page: Any, expected: int) -> list[str]:
    """Waits until `expected` charts are drawn, then checks each one's note."""
    for _ in range(200):
        if page.locator(".js-plotly-plot").count() >= expected:
            break
        page.wait_for_timeout(150)
    charts = page.evaluate(NOTES)
    assert len(charts) >= expected, charts
    missing = [c["id"] for c in charts if not (c["seed"] and c["formula"])]
    assert not missing, f"charts without a note naming a formula and a seed: {missing}"
    return [c["id"] for c in charts]


def test_every_chart_is_explained(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")
    demo = ready_models(page, "Demo digits CNN")[0]["id"]
    torch = sorted(ready_models(page, "PyTorch weights, seed", count=2), key=lambda m: m["name"])
    seed0, seed1 = torch[0]["id"], torch[1]["id"]
    digits = page.evaluate(GET, "/datasets")
    digits = next(d["id"] for d in digits["data"] if d["builtin"])
    first = {"dataset_id": digits, "dataset_pick": "first"}

    # everything is started first, then each page is read as its job ends
    exact = create(page, "/analyses", {"model_id": demo, **first, "dataset_k": 1, "grid": "3x3",
                                       "baseline": "zero", "and_or": {"steps": 500}})  # fmt: skip
    per_class = {**first, "model_id": demo, "dataset_pick": "per_class", "dataset_k": 1}
    a = create(page, "/analyses", {**per_class, "grid": "2x2", "baseline": "zero"})
    b = create(page, "/analyses", {**per_class, "grid": "3x3", "baseline": "zero"})
    stability = create(page, "/analyses", {
        "model_id": seed0, **first, "dataset_k": 4, "grid": "2x2", "baseline": "zero",
        "mode": "stability", "stability": {"draws": 1, "pgd_steps": 2}})  # fmt: skip
    sampled = create(page, "/analyses", {
        "model_id": demo, **first, "dataset_k": 1, "grid": "4x4", "baseline": "zero",
        "mode": "sampled", "sampled": {"ratios": [0, 0.5, 1], "radius": 1, "contexts": 2},
    })  # fmt: skip
    components = create(page, "/components", {
        "model_id": seed0, "dataset_id": digits, "layer": "relu2", "orders": [0, 1],
        "epochs": 1, "max_samples": 60, "width": 8, "compare_model_ids": [seed1]})  # fmt: skip
    consistency = create(page, "/consistency", {
        "model_id": seed0, "compare_model_id": seed1, "dataset_id": digits, "layer": "relu2",
        "compare_layer": "relu2", "epochs": 1, "max_samples": 40, "width": 4})  # fmt: skip
    runs = create(page, "/training-runs/experiment", {
        "dataset_id": digits, "presets": ["normal", "encourage low"], "grid": "2x2",
        "epochs": 2, "max_train": 64, "attack": {"eps": [0.1], "steps": 2},
        "evaluate": {"grid": "2x2", "images": 2}})["data"]  # fmt: skip

    # an exact analysis: the curves, the AND-OR split, a patch's and a pair's interactions
    finished(page, f"/analyses/{exact['id']}")
    page.goto(f"{server}/#/analyses/{exact['id']}")
    page.wait_for_selector("#and-or-counts .main-svg")
    page.focus("#patch-canvas")
    page.keyboard.press("Enter")  # patch 0
    page.wait_for_selector("#shapley-figure .main-svg")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")  # and patch 1: their multi-order interaction
    page.wait_for_selector("#pair-figure .main-svg")
    ids = charts_explained(page, 8)
    assert {"curve-figure", "salient-figure", "shapley-figure", "pair-figure"} <= set(ids), ids
    # the tint is explained next to the image, the gallery and the AND-OR galleries
    for card in ["section:has(#patch-canvas)", "section:has(#top-sets)", "#and-or"]:
        legend = page.locator(f"{card} .cl-tint-legend")
        assert legend.is_visible(), card
        assert "red" in legend.inner_text() and "blue" in legend.inner_text()
    assert "residual" in page.inner_text(".trust .trust-note")
    shot(page, "explained-exact")
    # on a phone the notes wrap, formulas too: none runs past the screen's edge
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate(RIGHTMOST_NOTE) <= 390
    shot(page, "explained-exact-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    # a data-set view of a multi-image analysis, then two analyses side by side
    finished(page, f"/analyses/{a['id']}")
    finished(page, f"/analyses/{b['id']}")
    page.goto(f"{server}/#/analyses/{a['id']}")
    page.wait_for_selector("#dataset-deviating .main-svg")
    ids = charts_explained(page, 7)
    assert {"dataset-curve", "dataset-sparsity", "dataset-deviating"} <= set(ids), ids
    shot(page, "explained-dataset")
    page.goto(f"{server}/#/compare?a={a['id']}&b={b['id']}")
    page.wait_for_selector("#compare-canvas-b")
    charts_explained(page, 2)
    legend = page.locator("#compare-sets .cl-tint-legend")
    assert legend.is_visible()
    assert "orange" in legend.inner_text() and "[object" not in legend.inner_text()
    shot(page, "explained-compare")

    # stability β, κ, α; a sampled analysis
    finished(page, f"/analyses/{stability['id']}")
    page.goto(f"{server}/#/analyses/{stability['id']}")
    page.wait_for_selector("#stability-alpha .main-svg")
    ids = charts_explained(page, 3)
    assert {"stability-beta", "stability-kappa", "stability-alpha"} <= set(ids), ids
    shot(page, "explained-stability")
    finished(page, f"/analyses/{sampled['id']}")
    page.goto(f"{server}/#/analyses/{sampled['id']}")
    page.wait_for_selector("#curve-figure .main-svg")
    page.focus("#patch-canvas")
    page.keyboard.press("Enter")
    page.wait_for_selector("#pairs-figure .main-svg")
    charts_explained(page, 2)
    shot(page, "explained-sampled")

    # feature components (significance, reliability, effects, maps) and knowledge consistency
    finished(page, f"/components/{components['id']}")
    page.goto(f"{server}/#/components/{components['id']}")
    page.wait_for_selector("#comp-maps .main-svg")
    ids = charts_explained(page, 4)
    assert {"comp-significance", "comp-reliability", "comp-maps"} <= set(ids), ids
    assert "R²" in page.inner_text(".trust .trust-note")
    shot(page, "explained-components")
    finished(page, f"/components/{consistency['id']}")  # a component job of its own kind
    page.goto(f"{server}/#/consistency/{consistency['id']}")
    page.wait_for_selector("#kc-cumulative .main-svg")
    charts_explained(page, 2)
    shot(page, "explained-consistency")

    # a training run, its experiment, and the learning dynamics of its checkpoints
    for run in runs:
        finished(page, f"/training-runs/{run['id']}")
    run = page.evaluate(GET, f"/training-runs/{runs[0]['id']}")
    page.goto(f"{server}/#/training/{run['id']}")
    page.wait_for_selector("#train-acc .main-svg")
    charts_explained(page, 2)
    shot(page, "explained-training")
    for r in runs:
        done = page.evaluate(GET, f"/training-runs/{r['id']}")
        finished(page, f"/analyses/{done['evaluation_id']}")
    page.goto(f"{server}/#/bottleneck/{run['experiment']}")
    page.wait_for_selector("#bottleneck-curve .main-svg")
    page.wait_for_selector("#bottleneck-acc .main-svg")
    charts_explained(page, 2)
    shot(page, "explained-bottleneck")
    series = {"mode": "dynamics", "series": run["series"], "dataset_k": 2, "grid": "2x2"}
    dynamics = create(page, "/analyses", {**first, **series, "baseline": "zero"})
    finished(page, f"/analyses/{dynamics['id']}")
    page.goto(f"{server}/#/analyses/{dynamics['id']}")
    page.wait_for_selector("#dynamics-strength .main-svg")
    ids = charts_explained(page, 2)
    assert {"dynamics-similarity", "dynamics-strength"} <= set(ids), ids
    shot(page, "explained-dynamics")

    assert not console.errors, console.errors
    context.close()
