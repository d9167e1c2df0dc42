"""Plotly (4.8 MB; 1.5 MB gzipped) loads beside the app instead of before it: the app's pages
and first requests do not wait for the charting library, and charts draw once it has run."""

from __future__ import annotations

import time
from typing import Any

from tests.frontend.conftest import Console


def test_the_app_starts_before_plotly_arrives(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    held: list[Any] = []

    def hold(route: Any) -> None:  # keep Plotly back until the page has shown itself
        held.append(route)

    context.route("**/plotly.min.js", hold)
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/training", wait_until="commit")
    page.wait_for_selector("#train-run", timeout=30_000)  # the app ran without Plotly
    assert page.evaluate("typeof window.Plotly") == "undefined"
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert held, "the page never asked for Plotly"
    held[0].continue_()
    for _ in range(300):
        if page.evaluate("typeof window.Plotly") == "object":
            break
        page.wait_for_timeout(100)
    assert page.evaluate("typeof window.Plotly") == "object"
    assert not console.errors, console.errors
    context.close()
