"""The AND-OR split in a browser: chosen on the New-analysis page, shown on the result page
as AND and OR sets side by side with their counts and sparsity curves."""

from __future__ import annotations

from typing import Any

from tests.frontend.conftest import Console, ready_models, shot


def test_and_or_split_on_the_result_page(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")
    page.goto(f"{server}/#/new?grid=3x3&baseline=zero")
    page.wait_for_selector("#model-select")
    demo = "s => [...s.options].find(o => o.text.startsWith('Demo digits CNN (demo) —')).value"
    page.select_option("#model-select", value=page.eval_on_selector("#model-select", demo))
    page.locator(".image-choice input").first.check()
    page.check("#and-or")
    page.fill("#and-or-steps", "2000")
    page.check("#and-or-noise")
    page.fill("#grid-rows", "5")
    page.fill("#grid-cols", "4")
    page.wait_for_selector("#run-reason:has-text('at most 16 players')")
    page.fill("#grid-rows", "3")
    page.fill("#grid-cols", "3")
    page.wait_for_selector("#cost:has-text('512')")
    page.click("#run")
    page.wait_for_selector("#and-or-counts .main-svg", timeout=120_000)
    page.wait_for_selector("#and-or-curves .main-svg")
    page.wait_for_selector("#curve-figure .main-svg")
    page.wait_for_selector("#dense-note:has-text('of all sets are salient')")
    page.wait_for_selector("#and-title:has-text('salient')")
    assert page.locator("#and-sets figure").count() >= 1
    assert page.locator("#or-sets figure, #or-sets p").count() >= 1
    shot(page, "and-or")
    assert not console.errors, console.errors
    context.close()


def test_a_learned_baseline_from_the_form(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")
    ready_models(page, "PyTorch weights, seed 0)")
    page.goto(f"{server}/#/new?grid=3x3")
    page.wait_for_selector("#model-select")
    onnx = "s => [...s.options].find(o => o.text.startsWith('Demo digits CNN (demo) —')).value"
    page.select_option("#model-select", value=page.eval_on_selector("#model-select", onnx))
    page.locator(".image-choice input").first.check()
    page.select_option("#baseline", "learned")
    page.wait_for_selector("#run-reason:has-text('needs gradients')")  # ONNX: refused here
    torch = "s => [...s.options].find(o => o.text.includes('PyTorch weights, seed 0')).value"
    page.select_option("#model-select", value=page.eval_on_selector("#model-select", torch))
    page.fill("#learned-steps", "10")
    page.wait_for_selector("#cost:has-text('512')")
    page.click("#run")
    page.wait_for_selector("text=Σ|I|, learned baseline", timeout=120_000)
    shot(page, "learned-baseline")
    assert not console.errors, console.errors
    context.close()
