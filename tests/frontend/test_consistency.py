"""Knowledge consistency from the browser: the components page links it, the built-in example
runs in one click (small settings), and its table, charts, exports and share link show."""

from __future__ import annotations

from typing import Any

from tests.frontend.conftest import Console, ready_models, shot


def test_built_in_example_in_one_click(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")
    ready_models(page, "PyTorch weights, seed", count=2)
    page.goto(f"{server}/#/components")
    page.click("#kc-link a")
    page.wait_for_selector("#kc-example:not([disabled])")
    page.fill("#kc-epochs", "2")
    page.fill("#kc-samples", "40")
    page.click("#kc-example")
    page.wait_for_selector("#kc-parts .main-svg", timeout=180_000)
    page.wait_for_selector("#kc-cumulative .main-svg")
    assert page.locator("#kc-table tbody tr").count() == 4  # two directions × two image sets
    header = page.locator("#kc-table thead").inner_text()
    assert "k = 0" in header and "inconsistent" in header
    assert page.locator(".kc-explain").count() == 2  # every chart says how to read it
    assert page.locator("#kc-parts").evaluate("d => d.data.length") == 2  # A from B, B from A
    csv_link = page.locator("#kc-exports a", has_text="CSV").get_attribute("href")
    assert csv_link is not None and csv_link.endswith("/export.csv")
    csv_text = page.evaluate("u => fetch(u).then(r => r.text())", csv_link)
    assert csv_text.startswith("direction,split,part,variance,share")
    shot(page, "consistency")

    page.click("#share")
    page.wait_for_selector("#share-url")
    shared = page.locator("#share-url").get_attribute("href")
    anonymous = browser.new_context(viewport={"width": 1280, "height": 900})
    other = console.watch(anonymous.new_page())
    other.goto(shared)
    other.wait_for_selector("#kc-parts .main-svg", timeout=60_000)
    assert other.locator("#share").count() == 0  # read-only
    page.goto(f"{server}/#/consistency")
    page.wait_for_selector("#kc-list li")
    assert not console.errors, console.errors
    anonymous.close()
    context.close()
