"""The whole flow in a browser: upload the demo model and an image, configure and run an
analysis, watch progress, click patches, read the curves, share, open the link elsewhere."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from tests.frontend.conftest import Console, ready_models, serving, shot


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from conceptlens.models.demo import write_demo_model

    out = tmp_path_factory.mktemp("demo-files")
    manifest = write_demo_model(out, n_samples=3)
    return {"dir": out, **manifest}


def test_upload_analyse_explore_share(browser: Any, server: str, demo: dict[str, Any]) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")
    shot(page, "overview")
    page.click("#try-demo")  # the demo leads: the ONNX CNN, not one of its variants
    page.wait_for_selector("#model-select")
    chosen = page.eval_on_selector("#model-select", "s => s.options[s.selectedIndex].text")
    assert chosen.startswith("Demo digits CNN (demo) —"), chosen

    # 1. bring a model: the file input, with labels
    page.goto(f"{server}/#/models")
    page.set_input_files("#model-file", str(demo["dir"] / demo["files"]["onnx"]))
    page.get_by_label(re.compile("name", re.I)).first.fill("my digits")
    page.click("#model-upload")
    # selectors, not wait_for_function: its string predicates are eval'd, which the CSP forbids
    page.wait_for_selector("#model-status:has-text('ready')", timeout=60_000)
    assert "onnx" in page.inner_text("#model-status").lower()
    shot(page, "models")

    # 2. bring an image
    page.goto(f"{server}/#/images")
    sample = demo["samples"][2]
    page.set_input_files("#image-files", str(demo["dir"] / sample["file"]))
    page.click("#image-upload")
    page.wait_for_selector(f"text={Path(sample['file']).name}")
    shot(page, "images")

    # 3. configure: the uploaded model, the uploaded image, a 3x3 grid
    page.goto(f"{server}/#/new")
    page.wait_for_selector("#model-select option:has-text('my digits')", state="attached")
    value = page.locator("#model-select option", has_text="my digits").get_attribute("value")
    page.select_option("#model-select", value=value)
    page.locator(".image-choice input[type=checkbox]").first.check()
    page.fill("#grid-rows", "3")
    page.fill("#grid-cols", "3")
    page.dispatch_event("#grid-cols", "input")
    page.wait_for_selector("#cost:has-text('512')")
    shot(page, "new-analysis")
    page.click("#run")

    # 4. watch it finish
    page.wait_for_url(re.compile(r"#/analyses/[0-9a-f]+"))
    page.wait_for_selector("#patch-canvas", timeout=120_000)
    analysis_url = page.url

    # 5. click a patch: its interactions and the heat map appear; a second patch: I^(m)(i,j)
    canvas = page.locator("#patch-canvas")
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.wait_for_selector("#selection li")
    assert "Patch 4" in page.inner_text("#selection")
    page.wait_for_selector("#shapley-figure .main-svg")
    page.mouse.click(box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.15)
    page.wait_for_selector("#pair-figure .main-svg")
    for figure in ("#curve-figure", "#salient-figure", "#sparsity-figure", "#average-figure"):
        assert page.locator(f"{figure} .main-svg").count() >= 1, figure
    assert page.locator("#top-sets canvas").count() >= 1
    # the τ slider re-reads stored results, no worker involved
    page.eval_on_selector(
        "#tau-slider", "el => { el.value = '0.3'; el.dispatchEvent(new Event('input')); }"
    )
    page.wait_for_selector("#gallery-title:has-text('0.3')")
    shot(page, "result")

    # reload keeps the page
    page.reload()
    page.wait_for_selector("#patch-canvas")
    assert page.url == analysis_url

    # 6. share: a fresh browser with no cookies opens the same result read-only
    page.click("#share")
    page.wait_for_selector("#share-url")
    link = page.get_attribute("#share-url", "href")
    assert link is not None and "/s/" in link
    stranger = browser.new_context(viewport={"width": 390, "height": 844})
    other = console.watch(stranger.new_page())
    other.goto(link)
    other.wait_for_selector("#patch-canvas", timeout=30_000)
    other.wait_for_selector("#curve-figure .main-svg")
    assert other.locator("#share").count() == 0 and other.locator("#cancel").count() == 0
    assert stranger.cookies() == []
    shot(other, "shared-narrow")
    stranger.close()

    assert console.errors == []
    context.close()


def test_a_bad_model_file_shows_its_message(browser: Any, server: str, tmp_path: Path) -> None:
    bad = tmp_path / "model.pkl"
    bad.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server}/#/models")
    page.set_input_files("#model-file", str(bad))
    page.click("#model-upload")
    error = page.wait_for_selector(".error")
    assert "pickle" in error.inner_text().lower()
    shot(page, "model-error")
    context.close()


def test_delete_asks_first_then_removes(browser: Any, server: str, tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "to-delete.png"
    Image.new("L", (16, 16), 90).save(path)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server}/#/images")
    page.set_input_files("#image-files", str(path))
    page.click("#image-upload")
    card = page.locator("li[data-image-id]", has_text="to-delete.png")
    card.wait_for()
    page.once("dialog", lambda dialog: dialog.dismiss())
    card.get_by_role("button", name=re.compile("Delete image")).click()
    assert card.count() == 1  # dismissed: nothing happens
    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name=re.compile("Delete image")).click()
    card.wait_for(state="detached")
    context.close()


#: The page's width in CSS pixels, and what sticks out past the viewport.
WIDEST = "document.documentElement.scrollWidth"
OVERFLOWING = """[...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > innerWidth + 1 && !e.closest('.scroll-x'))
  .slice(0, 8).map(e => [e.closest('.js-plotly-plot')?.id || e.tagName + '#' + e.id,
    Math.round(e.getBoundingClientRect().right), e.tagName, e.getAttribute('class')])"""


def test_component_analysis_view(browser: Any, server: str) -> None:
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = console.watch(context.new_page())
    page.goto(f"{server}/#/")
    page.wait_for_selector("text=Demo digits CNN")  # the page has its workspace cookie now
    ready_models(page, "PyTorch weights", count=3)
    page.goto(f"{server}/#/components")
    page.wait_for_selector("#comp-model")
    seed0 = page.locator("#comp-model option", has_text="seed 0").get_attribute("value")
    page.select_option("#comp-model", value=seed0)
    seed1 = page.locator("#comp-compare option", has_text="seed 1").get_attribute("value")
    page.select_option("#comp-compare", value=seed1)
    assert page.eval_on_selector("#comp-layer", "s => s.value") == "relu2"
    page.fill("#comp-epochs", "5000")  # past the server's cap: its sentence is shown
    page.click("#comp-run")
    page.wait_for_selector(".comp-form >> text=epochs must be at most 500; 5000 is too large.")
    page.fill("#comp-orders", "0, one")
    page.fill("#comp-epochs", "2")
    page.click("#comp-run")
    page.wait_for_selector(".comp-form >> text=orders[1] must be a whole number.")
    refused = [e for e in console.errors if "status of 422" in e]  # the two refusals above
    assert len(refused) == 2
    console.errors = [e for e in console.errors if e not in refused]
    page.fill("#comp-orders", "0, 1")
    page.fill("#comp-samples", "120")
    page.click("#comp-run")
    page.wait_for_url(re.compile(r"#/components/[0-9a-f]+"))
    page.wait_for_selector("#comp-significance .main-svg", timeout=180_000)
    page.wait_for_selector("#comp-reliability .main-svg")
    page.wait_for_selector("#comp-effects .main-svg")
    page.wait_for_selector("#comp-maps .main-svg")
    job = page.url.split("#/components/")[1]
    fits = page.evaluate(f"fetch('/api/components/{job}').then(r => r.json())")["metrics"][
        "test_r2"
    ]
    best = max(r for r in fits if r is not None)
    assert (page.locator("#poor-fit").count() == 1) == (best < 0.5), fits  # warned iff poor
    lines = page.evaluate("document.body.innerText.split('\\n').map(l => l.trim())")
    assert "null" not in lines  # nothing missing was printed as text
    shot(page, "components")

    # the ONNX demo is offered too: its relu2 is the node output /relu2/Relu_output_0
    page.wait_for_selector('#comp-rerun-model option:text-is("Demo digits CNN")', state="attached")
    assert page.locator("#comp-rerun-none").count() == 0
    # the same analysis on the seed-1 CNN, run from the results page and drawn beside this one
    rerun = page.locator("#comp-rerun-model option", has_text="seed 1").get_attribute("value")
    page.select_option("#comp-rerun-model", value=rerun)
    page.click("#comp-rerun")
    page.wait_for_selector("#comp-compare-figure .main-svg", timeout=180_000)
    assert page.locator("#comp-compare-figure .trace.bars").count() == 2
    # after a reload the finished one is offered for comparison
    page.reload()
    page.wait_for_selector("#comp-compare-with option >> nth=1", state="attached")
    other_job = page.locator("#comp-compare-with option", has_text="seed 1").first
    page.select_option("#comp-compare-with", value=other_job.get_attribute("value"))
    page.wait_for_selector("#comp-compare-figure .main-svg")
    assert page.locator("#comp-compare-figure .trace.bars").count() == 2
    shot(page, "components-compared")

    # share: a browser with no cookies opens the results read-only
    page.click("#share")
    page.wait_for_selector("#share-url")
    link = page.get_attribute("#share-url", "href")
    assert link is not None and "/s/c/" in link
    stranger = browser.new_context(viewport={"width": 390, "height": 844})
    other = console.watch(stranger.new_page())
    other.goto(link)
    other.wait_for_selector("#comp-significance .main-svg", timeout=30_000)
    other.wait_for_selector("#comp-maps .main-svg")
    assert "seed 0" in other.inner_text("h1")
    for owner_only in ("#share", "#comp-cancel", "#comp-compare-with"):
        assert other.locator(owner_only).count() == 0, owner_only
    assert stranger.cookies() == []
    shot(other, "components-shared-narrow")
    assert other.evaluate(WIDEST) <= 390  # nothing runs off a phone's screen
    stranger.close()
    page.set_viewport_size({"width": 390, "height": 844})  # the owner's page too
    page.wait_for_timeout(500)  # Plotly redraws at the new width
    assert page.evaluate(WIDEST) <= 390, page.evaluate(OVERFLOWING)
    page.set_viewport_size({"width": 1280, "height": 860})

    # the overview lists both; the list page deletes one after asking
    page.goto(f"{server}/#/")
    page.wait_for_selector("#home-component-list a >> nth=1")
    assert "seed 1" in page.inner_text("#home-component-list")
    # the built-in series of checkpoints is one line of the overview, not one per checkpoint
    page.wait_for_selector(".series-row >> text=Demo digits CNN training (seed 0)")
    assert re.search(r"a series of \d+ checkpoints", page.inner_text(".series-row"))
    assert page.locator(".cl-row", has_text="· epoch").count() == 0
    page.goto(f"{server}/#/components")
    row = page.locator(".comp-list li", has_text="seed 1")
    row.wait_for()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=re.compile("Delete component analysis")).click()
    row.wait_for(state="detached")
    assert page.locator(".comp-list li", has_text="seed 0").count() == 1
    assert console.errors == []
    context.close()


def test_a_first_start_shows_the_demo_without_a_reload(browser: Any, tmp_path: Path) -> None:
    """The overview opened while the built-ins are still being made fills in by itself."""
    console = Console()
    with serving(tmp_path, ready_model=False) as base:
        context = browser.new_context()
        page = console.watch(context.new_page())
        page.goto(f"{base}/#/")
        page.wait_for_selector("#try-demo", timeout=120_000)  # needs a ready built-in model
        context.close()
    assert console.errors == []


CSP_WATCH = """window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));"""


def test_pages_keep_to_the_content_security_policy(browser: Any, server: str) -> None:
    """Every page works under the CSP: no violation event, no console error."""
    console = Console()
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.add_init_script(CSP_WATCH)
    page = console.watch(context.new_page())
    response = page.goto(f"{server}/")
    assert response is not None
    assert "script-src 'self';" in response.headers["content-security-policy"]
    for route, ready in [
        ("#/", "text=Demo digits CNN"),
        ("#/models", "text=Demo digits CNN"),
        ("#/images", "img"),
        ("#/new", "canvas"),
        ("#/components", "#comp-model"),
        ("#/consistency", "#kc-a-model"),
    ]:
        page.goto(f"{server}/{route}")
        page.wait_for_selector(ready)
        page.wait_for_timeout(300)  # let late styles and images load
        assert page.evaluate("window.__csp") == [], route
    assert console.errors == []
    context.close()
