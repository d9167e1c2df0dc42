"""The components page: two exemplars, the estimator chosen, and which one ran."""

from __future__ import annotations

from typing import Any

from tests.frontend.conftest import Console, ready_models


def test_two_exemplars_and_the_paper_estimator(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")
    ready_models(page, "PyTorch weights", 3)  # seeds 0 and 1, and 200 samples
    page.goto(f"{server}/#/components")
    page.wait_for_selector("#comp-model")

    def value(select: str, text: str) -> str:
        found = page.locator(f"{select} option", has_text=text).first.get_attribute("value")
        assert found
        return found

    page.select_option("#comp-model", value=value("#comp-model", "seed 0"))
    page.select_option("#comp-compare", value=value("#comp-compare", "seed 1"))
    page.select_option("#comp-compare-2", value=value("#comp-compare-2", "200 training samples"))
    assert page.eval_on_selector("#comp-estimator", "s => s.value") == "cycle"
    page.fill("#comp-orders", "0, 1")
    page.fill("#comp-epochs", "2")
    page.fill("#comp-samples", "120")
    page.click("#comp-run")
    page.wait_for_selector("#comp-reliability .main-svg", timeout=240_000)
    note = page.inner_text("#comp-reliability-note")
    assert "cycle (the paper's)" in note and "near 1" in note
    head = page.inner_text("h1 + p, .head-line + p")
    assert "seed 1" in head and "200 training samples" in head
    assert not console.errors, console.errors
    context.close()
