"""What a new user hit on the results page (issue 13 §3): a double click on a patch, the
keyboard on the patch canvas, toasts that outlived their page, deleting an analysis."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.frontend.conftest import Console

CREATE = """async () => {
  const models = (await (await fetch('/api/models')).json()).data;
  const model = models.find((m) => m.builtin && m.status === 'ready' && m.format === 'onnx')
    || models.find((m) => m.status === 'ready');
  const images = (await (await fetch('/api/images')).json()).data;
  const response = await fetch('/api/analyses', {
    method: 'POST', headers: {'content-type': 'application/json'},
    body: JSON.stringify({model_id: model.id, image_ids: [images[0].id], grid: '3x3'}),
  });
  return (await response.json()).id;
}"""


@pytest.fixture()
def result_page(browser: Any, server: str) -> Iterator[tuple[Any, Console]]:
    """A page on a finished 3×3 analysis of the demo model (created through the API)."""
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")  # the workspace cookie is set
    analysis_id = page.evaluate(CREATE)
    page.goto(f"{server}/#/analyses/{analysis_id}")
    page.wait_for_selector("#patch-canvas", timeout=120_000)
    page.wait_for_selector("#curve-figure .main-svg")
    yield page, console
    context.close()


def centre_of_cell(page: Any, row: int, col: int, rows: int = 3) -> tuple[float, float]:
    box = page.locator("#patch-canvas").bounding_box()
    assert box is not None
    x = box["x"] + box["width"] * (col + 0.5) / rows
    return x, box["y"] + box["height"] * (row + 0.5) / rows


def test_a_double_click_on_a_patch_leaves_a_clean_state(result_page: tuple[Any, Console]) -> None:
    page, console = result_page
    x, y = centre_of_cell(page, 1, 1)
    page.mouse.dblclick(x, y)  # select, then deselect before the first answers arrive
    page.wait_for_timeout(1500)  # the first click's answers have arrived by now
    assert "undefined" not in page.inner_text("#selection")
    assert "No patch selected" in page.inner_text("#selection")
    assert page.locator("#shapley-figure .main-svg").count() == 0
    assert page.locator("#toasts .toast").count() == 0
    # a single click afterwards still works
    page.mouse.click(x, y)
    page.wait_for_selector("#selection h3:has-text('Patch 4')")
    page.wait_for_selector("#shapley-figure .main-svg")
    assert console.errors == []


def test_toasts_clear_on_navigation(result_page: tuple[Any, Console], server: str) -> None:
    page, _ = result_page
    page.route(
        re.compile(r".*/figures/shapley.*"),
        lambda route: route.fulfill(status=500, json={"detail": "The heat map broke."}),
    )
    x, y = centre_of_cell(page, 0, 0)
    page.mouse.click(x, y)
    page.wait_for_selector("#toasts .toast.error:has-text('The heat map broke.')")
    page.goto(f"{server}/#/models")
    page.wait_for_selector("text=Demo digits CNN")
    assert page.locator("#toasts .toast").count() == 0


def test_the_results_canvas_answers_the_keyboard(result_page: tuple[Any, Console]) -> None:
    page, console = result_page
    page.focus("#patch-canvas")
    for key in ("ArrowRight", "ArrowDown", "Enter"):  # from patch 0 to patch 4, select it
        page.keyboard.press(key)
    page.wait_for_selector("#selection h3:has-text('Patch 4')")
    page.wait_for_selector("#shapley-figure .main-svg")
    page.keyboard.press("ArrowRight")
    scrolled = page.evaluate("window.scrollY")  # focusing may scroll the canvas into view
    page.keyboard.press(" ")  # a second patch: the pair figure
    page.wait_for_selector("#pair-figure .main-svg")
    assert page.evaluate("window.scrollY") == scrolled  # Space did not scroll the page
    assert console.errors == []


def test_an_analysis_is_deleted_from_its_page_after_asking(
    result_page: tuple[Any, Console], server: str
) -> None:
    page, console = result_page
    path = page.url.split("#")[1]
    analysis_id = path.rsplit("/", 1)[1]
    status = f"fetch('/api/analyses/{analysis_id}').then((r) => r.status)"
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#delete-analysis")
    assert page.evaluate(status) == 200  # dismissed: nothing happens
    assert page.url.endswith(path)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-analysis")
    page.wait_for_url(re.compile(r"#/$"))
    assert page.evaluate(status) == 404
    page.wait_for_selector("text=Demo digits CNN")
    assert [e for e in console.errors if "404" not in e] == []


def test_the_new_analysis_canvas_still_answers_the_keyboard(browser: Any, server: str) -> None:
    """The same keyboard code drives the New-analysis canvas (it toggles players there)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(f"{server}/#/new")
    page.wait_for_selector("#grid-canvas")
    page.wait_for_selector("#players-summary:not(:empty)")
    before = page.input_value("#players-input")
    page.focus("#grid-canvas")
    page.keyboard.press("ArrowRight")
    page.keyboard.press(" ")  # patch 1 is no player now
    assert before == "0-15"  # the default 4×4 grid, every patch a player
    assert page.input_value("#players-input") == "0, 2-15"
    page.keyboard.press("Enter")  # and a player again
    assert page.input_value("#players-input") == before
    context.close()


def test_a_label_that_is_the_class_number_is_printed_once(
    result_page: tuple[Any, Console],
) -> None:
    """The demo model's labels are "0" … "9": "class 3", never "class 3 (3)"."""
    page, _ = result_page
    text = page.inner_text("#view")
    assert re.search(r"class \d", text), text
    assert not re.search(r"class (\d+) \(\1\)", text), text


def test_the_progress_view_says_finishing_once_the_passes_are_done(
    result_page: tuple[Any, Console],
) -> None:
    """All forward passes done, the job still running (the transforms): "Finishing", not a
    time left of "< 1 s" (the analysis is served as such a moment of itself)."""
    page, _ = result_page
    analysis_id = page.url.rsplit("/", 1)[1]

    def still_running(route: Any) -> None:
        body = route.fetch().json()
        body.update(status="running", eta_seconds=None, finished_at=None)
        body["progress_done"] = body["progress_total"]
        route.fulfill(json=body)

    page.route(re.compile(rf".*/api/analyses/{analysis_id}$"), still_running)
    page.reload()
    page.wait_for_selector("#progress-title:has-text('Finishing')")
    text = page.inner_text("#progress-text")
    assert "all done" in text and "< 1 s" not in text and "time left" not in text


def test_the_components_form_uploads_an_image_set(
    browser: Any, server: str, tmp_path: Path
) -> None:
    """A zip chosen on the components form is uploaded and selected; a refused one shows the
    server's sentence."""
    from PIL import Image

    archive = tmp_path / "my shapes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for cls, shade in (("dark", 40), ("light", 210)):
            for k in range(3):
                png = tmp_path / f"{cls}{k}.png"
                Image.new("L", (16, 16), shade + 5 * k).save(png)
                z.write(png, f"{cls}/{k}.png")
    flat = tmp_path / "one-class.zip"
    with zipfile.ZipFile(flat, "w") as z:
        z.writestr("only/a.txt", "not an image")
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/components")
    page.wait_for_selector("#comp-dataset-file")
    page.set_input_files("#comp-dataset-file", str(archive))
    page.wait_for_selector("#comp-dataset-status:has-text('Uploaded my shapes: 6 images')")
    chosen = page.eval_on_selector("#comp-dataset", "s => s.options[s.selectedIndex].text")
    assert chosen == "my shapes (6 images)"
    page.set_input_files("#comp-dataset-file", str(flat))
    error = page.wait_for_selector("#comp-dataset-status .error")
    assert "PNG and JPEG" in error.inner_text(), error.inner_text()
    assert page.eval_on_selector("#comp-dataset", "s => s.value") != ""
    assert [e for e in console.errors if "status of 415" not in e] == []
    context.close()
