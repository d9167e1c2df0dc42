"""A sampled 16×16 analysis over 10 digits of the built-in image set, in a browser: the form's
cost from the server, the run, the curve with its error bars, a clicked patch's pairs."""

from __future__ import annotations

from typing import Any

from tests.frontend.conftest import Console, shot


def test_sampled_analysis_over_an_image_set(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")
    page.goto(f"{server}/#/new")
    page.wait_for_selector("#model-select")
    demo = "s => [...s.options].find(o => o.text.startsWith('Demo digits CNN (demo) —')).value"
    page.select_option("#model-select", value=page.eval_on_selector("#model-select", demo))
    page.check("#mode-sampled")
    page.fill("#grid-rows", "16")
    page.fill("#grid-cols", "16")
    page.wait_for_selector("#sampled-settings:not([hidden])")
    page.fill("#ratios", "0, 0.2, 0.5, 0.8, 1")
    page.fill("#radius", "1")
    page.fill("#contexts", "2")
    page.select_option("#dataset-select", index=1)  # the built-in digits
    page.fill("#dataset-k", "10")
    page.wait_for_selector("#cost:has-text('10 images')")
    page.wait_for_selector("#cost:has-text('Orders m: 0, 50, 127, 203, 254')")
    shot(page, "sampled-form")
    # a refusal from the server is the form's
    page.fill("#contexts", "9999")
    page.wait_for_selector("#run-reason:has-text('forward passes per image')")
    assert page.is_disabled("#run")
    page.fill("#contexts", "2")
    page.wait_for_selector("#cost:has-text('10 images')")
    page.click("#run")
    page.wait_for_selector("#curve-figure .main-svg", timeout=240_000)
    page.wait_for_selector("#curve-title:has-text('over 10 images')")
    bars = page.evaluate(
        "() => document.querySelector('#curve-figure').data"
        ".find(t => t.name === 'J<sup>(m)</sup>').error_y.array.length"
    )
    assert bars == 5
    page.check("#debias-toggle")
    page.check("#by-label-toggle")
    page.wait_for_timeout(500)
    page.click("#patch-canvas", position={"x": 100, "y": 100})
    page.wait_for_selector("#pairs-figure .main-svg")
    shot(page, "sampled-result")
    unexpected = [e for e in console.errors if "status of 413" not in e]  # the refusal above
    assert not unexpected, unexpected
    context.close()
