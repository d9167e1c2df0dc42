"""Static files: versioned URLs cached immutably, gzip when accepted, pages revalidated."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.assets import PLOTLY, Assets, plotly_js


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())  # no lifespan: nothing here needs the database


def test_page_links_every_file_under_the_current_version(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-cache"
    assert "content-security-policy" in page.headers  # the middleware still applies
    version = client.app.state.assets.version  # type: ignore[attr-defined]
    links = re.findall(r'(?:src|href)="(/[^"]+)"', page.text)
    assert f"/assets/{version}/js/app.js" in links
    assert f"/assets/{version}/vendor/plotly.min.js" in links
    assert f"/assets/{version}/style.css" in links
    assert not [link for link in links if not link.startswith(f"/assets/{version}/")]
    share = client.get("/s/sometoken")
    assert f"/assets/{version}/js/share.js" in share.text


def test_plotly_is_gzipped_and_immutable(client: TestClient) -> None:
    version = client.app.state.assets.version  # type: ignore[attr-defined]
    raw = plotly_js().read_bytes()
    zipped = client.get(f"/assets/{version}/{PLOTLY}", headers={"accept-encoding": "gzip, br"})
    assert zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert zipped.headers["content-type"].startswith("text/javascript")
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert int(zipped.headers["content-length"]) < len(raw) / 2
    assert zipped.content == raw  # httpx decodes gzip
    plain = client.get(f"/assets/{version}/{PLOTLY}", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == raw
    refused = client.get(f"/assets/{version}/{PLOTLY}", headers={"accept-encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


def test_module_files_conditional_requests_and_old_versions(client: TestClient) -> None:
    version = client.app.state.assets.version  # type: ignore[attr-defined]
    app_js = client.get(f"/assets/{version}/js/views/analysis.js")
    assert app_js.status_code == 200 and "export async function mount" in app_js.text
    assert app_js.headers["cache-control"].endswith("immutable")
    again = client.get(
        f"/assets/{version}/js/views/analysis.js",
        headers={"if-none-match": app_js.headers["etag"]},
    )
    assert again.status_code == 304 and again.content == b""
    # a page loaded before an upgrade asks for the old version: the file, but not cached
    old = client.get("/assets/000000000000/js/app.js")
    assert old.status_code == 200 and old.headers["cache-control"] == "no-cache"
    assert client.get(f"/assets/{version}/js/nothing.js").status_code == 404
    assert client.get(f"/assets/{version}/%2E%2E/backend/app.py").status_code == 404
    head = client.head(f"/assets/{version}/style.css")
    assert head.status_code == 200 and head.content == b""


def test_the_version_changes_with_any_file(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "app.js").write_text("export const a = 1;\n")
    (tmp_path / "style.css").write_text("body {}\n")
    plotly = tmp_path / "plotly.js"
    plotly.write_text("var Plotly = {};\n")
    first = Assets(tmp_path, plotly).version
    assert Assets(tmp_path, plotly).version == first  # the same files, the same version
    (tmp_path / "js" / "app.js").write_text("export const a = 2;\n")
    second = Assets(tmp_path, plotly).version
    assert second != first
    plotly.write_text("var Plotly = {v: 2};\n")
    assert Assets(tmp_path, plotly).version not in (first, second)
    assets = Assets(tmp_path, plotly)
    assert assets.asset("../plotly.js") is None  # nothing outside the folder
    assert assets.asset("js/app.js") is not None
    small = assets.asset("style.css")
    assert small is not None and small.gzipped is None  # too small to be worth it
    big = "x" * 4096
    (tmp_path / "big.js").write_text(big)
    made = Assets(tmp_path, plotly).asset("big.js")
    assert made is not None and made.gzipped is not None
    assert gzip.decompress(made.gzipped) == big.encode()


def test_spellings_of_one_file_share_one_cache_entry(tmp_path: Path) -> None:
    """Keyed by the path as asked, every spelling of a file kept its own copy and gzip:
    1,000 spellings kept 64 MB (found in review)."""
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "app.js").write_text("export const a = 1;\n" * 500)
    plotly = tmp_path / "plotly.js"
    plotly.write_text("var Plotly = {};\n")
    assets = Assets(tmp_path, plotly)
    spellings = ["js/app.js", "js//app.js", "js/./app.js", "x/../js/app.js"]
    spellings += [f"js/{'./' * k}app.js" for k in range(2, 50)]
    served = [assets.asset(p) for p in spellings]
    assert all(a is served[0] for a in served)
    assert len(assets._cache) == 1


def _traces(bundle: Path) -> set[str]:
    """The trace types a plotly.js bundle registers."""
    return set(re.findall(r'moduleType:"trace",name:"(\w+)"', bundle.read_text()))


def test_the_pages_bundle_draws_every_trace_type_we_use() -> None:
    """The pages load plotly.js's cartesian bundle: every trace type the server's figures
    (``go.X``) and the pages' own charts (``type: "x"``) use must be one it registers."""
    import plotly

    from backend.assets import CARTESIAN

    assert plotly_js() == CARTESIAN
    full = _traces(Path(plotly.__file__).parent / "package_data" / "plotly.min.js")
    root = Path(__file__).resolve().parents[2]
    sources = [*(root / "backend").rglob("*.py"), root / "conceptlens" / "figures.py"]
    python = "".join(p.read_text() for p in sources)
    js = "".join(p.read_text() for p in (root / "frontend" / "js").rglob("*.js"))
    used = {name.lower() for name in re.findall(r"\bgo\.([A-Z]\w+)\(", python)} & full
    used |= {t for t in full if re.search(rf'\btype: "{t}"', js)}
    assert {"scatter", "bar", "heatmap"} <= used <= _traces(CARTESIAN)
