"""Organising and comparing runs in the browser (issue 13 §2): name, note and tags from the
page, the list filters, two analyses side by side (owner URL and share links), the data-set
view of a multi-image analysis, delete. Small settings: 2x2 and 3x3 grids on 10 digits."""

from __future__ import annotations

from typing import Any

from tests.frontend.conftest import Console, ready_models, shot

POST = """body => fetch('/api/analyses', {method: 'POST', headers: {'Content-Type':
    'application/json'}, body: JSON.stringify(body)}).then(r => r.json())"""
STATUS = "id => fetch('/api/analyses/' + id).then(r => r.json()).then(a => a.status)"


def run(page: Any, body: dict[str, Any]) -> str:
    created = page.evaluate(POST, body)
    assert "id" in created, created
    for _ in range(600):
        if page.evaluate(STATUS, created["id"]) == "done":
            return str(created["id"])
        page.wait_for_timeout(300)
    raise AssertionError(f"analysis {created['id']} did not finish")


def test_organise_and_compare_runs(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")  # the page has its workspace
    model = ready_models(page, "Demo digits CNN")[0]["id"]
    digits = page.evaluate(
        "fetch('/api/datasets').then(r => r.json()).then(b => b.data.find(d => d.builtin).id)"
    )
    common = {"model_id": model, "dataset_id": digits, "dataset_pick": "per_class", "dataset_k": 1}
    a = run(page, {**common, "grid": "2x2", "baseline": "zero"})
    b = run(page, {**common, "grid": "3x3", "baseline": "mean"})

    # the data-set view of a 10-image analysis, with its notes
    page.goto(f"{server}/#/analyses/{a}")
    page.wait_for_selector("#dataset-curve .main-svg")
    page.wait_for_selector("#dataset-deviating-list li")
    assert page.locator("#dataset-view .cl-hint").count() == 3
    assert page.eval_on_selector("#dataset-curve", "d => d.data.length") == 11  # 10 labels + all
    page.select_option("#dataset-by", "predicted")
    page.wait_for_function("() => document.querySelector('#dataset-curve').data.length >= 2")
    shot(page, "dataset-view")

    # name, note and tags from the page
    page.click("#edit-labels")
    page.fill("#label-name", "zero baseline 2x2")
    page.fill("#label-note", "the sparse one")
    page.fill("#label-tags", "paper, zero")
    page.click("#save-labels")
    page.wait_for_selector("#analysis-title:has-text('zero baseline 2x2')")
    page.wait_for_selector("#run-tags:has-text('paper')")
    page.reload()
    page.wait_for_selector("#run-note:has-text('the sparse one')")

    # "Compare with…" opens the comparison at a URL of its own
    page.wait_for_selector(f"#compare-with option[value='{b}']", state="attached")
    page.select_option("#compare-with", b)
    page.wait_for_url(f"**/#/compare?a={a}&b={b}")
    page.wait_for_selector("#compare-curve .main-svg")
    page.wait_for_selector("#compare-canvas-b")
    traces = page.eval_on_selector("#compare-curve", "d => d.data.map(t => t.name)")
    assert sum(name.endswith("J(m)") for name in traces) == 2, traces
    assert page.locator("#compare-sets-a li").count() >= 1
    assert "in common" in page.inner_text("#compare-common-b")
    assert page.locator(".compare-view .cl-hint").count() >= 3  # every chart explained
    shot(page, "compare")
    page.reload()  # the URL is the comparison
    page.wait_for_selector("#compare-canvas-a")
    page.click("#compare-swap")
    page.wait_for_url(f"**/#/compare?a={b}&b={a}")
    page.wait_for_selector(f".compare-run:first-child a[href='#/analyses/{b}']")  # B is A now
    page.wait_for_selector("#compare-canvas-a")

    # the lists filter by tag and kind (kept in the URL)
    page.goto(f"{server}/#/?tag=paper")
    page.wait_for_selector(f".cl-home a[href='#/analyses/{a}']")  # the list, not the old page
    links = page.locator(f".cl-home a[href='#/analyses/{a}'], .cl-home a[href='#/analyses/{b}']")
    assert links.all_inner_texts() == ["zero baseline 2x2"]  # b has no tag
    page.select_option("#filter-kind", "sampled")
    page.wait_for_selector("#no-matching-analyses")
    page.select_option("#filter-kind", "components")
    page.wait_for_selector("text=Hidden: the list shows component analyses only.")
    page.click("#filter-clear")
    page.wait_for_selector(f".cl-home a[href='#/analyses/{b}']")

    # a share link's page compares with another share link
    tokens = [
        page.evaluate(f"fetch('/api/analyses/{x}/shares', {{method: 'POST'}}).then(r => r.json())")
        for x in (a, b)
    ]
    anonymous = browser.new_context(viewport={"width": 1280, "height": 900})
    shared = console.watch(anonymous.new_page())
    shared.goto(tokens[0]["url"])
    shared.wait_for_selector("#compare-link")
    shared.fill("#compare-link", tokens[1]["url"])
    shared.click("#compare-go")
    shared.wait_for_selector("#shared-compare #compare-canvas-b")
    anonymous.close()

    # delete from the page: back to the overview, gone from the list
    page.goto(f"{server}/#/analyses/{b}")
    page.wait_for_selector("#curve-figure .main-svg")  # loaded: nothing left to ask for
    page.wait_for_selector("#dataset-deviating-list img")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-analysis")
    page.wait_for_url(f"{server}/#/")
    page.wait_for_selector(f".cl-home a[href='#/analyses/{a}']")
    assert page.locator(f".cl-home a[href='#/analyses/{b}']").count() == 0
    assert not console.errors, console.errors
    context.close()
