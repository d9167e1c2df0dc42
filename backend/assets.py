"""The page's static files under versioned, immutable URLs, gzip-compressed once.

``/assets/<version>/<path>`` serves ``frontend/<path>`` (and ``vendor/plotly.min.js``, the
Plotly bundle: :func:`plotly_js`). ``<version>`` is a digest of every file
served, so any change to any file gives every URL a new address: browsers may keep what they
fetched for a year (``Cache-Control: immutable``) and never see a stale file. The module
graph is one version: ``js/app.js`` imports ``./api.js`` relative to its own URL, so every
file of a page comes from the same version. The HTML pages themselves are served with
``no-cache`` (revalidated through an ``ETag``) and carry the version in their links.

Each file is read and compressed once per process (gzip, level 6) and kept in memory; a
client that sends ``Accept-Encoding: gzip`` gets the compressed bytes (the Plotly bundle:
1.5 MB → 0.5 MB). A request for an older version gets the current file, ``no-cache``:
a page loaded just before an upgrade still works and no cache keeps the wrong file.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

#: Where the versioned files are served: ``/assets/<version>/<path>``.
PREFIX = "/assets"
#: The Plotly bundle's path under :data:`PREFIX`, whichever file :func:`plotly_js` finds.
PLOTLY = "vendor/plotly.min.js"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
#: Smaller files are sent as they are (gzip would save little and cost a header).
MIN_GZIP_BYTES = 512
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8"}


#: The page's Plotly: plotly.js's cartesian bundle (scatter, bar, heatmap and the other 2-D
#: traces, all the pages draw), 1.5 MB against the full bundle's 4.8 MB, from npm's
#: ``plotly.js-cartesian-dist-min`` at the version the Python package ships (MIT licence
#: beside it). A cold page waited for the browser to compile Plotly before its first chart;
#: a third of the code compiles in about a third of the time (bench/README.md).
CARTESIAN = Path(__file__).resolve().parents[1] / "frontend/vendor/plotly-cartesian.min.js"


def plotly_js() -> Path:
    """The Plotly bundle the pages load: the cartesian one, else the Python package's full
    one (a checkout without ``frontend/vendor``)."""
    if CARTESIAN.is_file():
        return CARTESIAN
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


def _media_type(path: Path) -> str:
    guessed = mimetypes.guess_type(path.name)[0]
    return TYPES.get(path.suffix) or guessed or "application/octet-stream"


def wants_gzip(request: Request) -> bool:
    """Whether the client accepts gzip (``Accept-Encoding``, a ``q=0`` refusal respected)."""
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class Assets:
    """The files of ``root`` (plus the Plotly bundle), their version and their responses."""

    def __init__(self, root: Path, plotly: Path | None = None) -> None:
        self.root = root.resolve()
        self.plotly = plotly or plotly_js()
        self._lock = threading.Lock()
        self._cache: dict[str, Asset] = {}
        self._pages: dict[str, Asset] = {}
        self.version = self._digest()

    def files(self) -> dict[str, Path]:
        """Every servable file by its path under the version (POSIX, relative)."""
        out = {
            p.relative_to(self.root).as_posix(): p
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        }
        out[PLOTLY] = self.plotly
        return out

    def _digest(self) -> str:
        """SHA-256 over every file's path and bytes, 12 hex digits: the version."""
        h = hashlib.sha256()
        for name, path in sorted(self.files().items()):
            h.update(name.encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()[:12]

    def url(self, path: str) -> str:
        """The versioned URL of ``path`` (e.g. ``js/app.js``)."""
        return f"{PREFIX}/{self.version}/{path}"

    def _resolve(self, path: str) -> Path | None:
        if path == PLOTLY:
            return self.plotly
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return None
        if any(part.startswith(".") for part in target.relative_to(self.root).parts):
            return None
        return target

    def asset(self, path: str) -> Asset | None:
        """The file at ``path``, read and compressed on first use; ``None`` if there is none.

        Kept under the file's resolved path, so that spellings of one file (``js//app.js``,
        ``x/../js/app.js``) share one entry: keyed by the path as asked, a client could grow
        the cache without end (found in review)."""
        target = self._resolve(path)
        if target is None:
            return None
        key = str(target)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        made = make_asset(target.read_bytes(), _media_type(target))
        with self._lock:
            return self._cache.setdefault(key, made)

    def page(self, name: str) -> Asset:
        """An HTML page of ``root`` with its links pointing at this version."""
        with self._lock:
            found = self._pages.get(name)
        if found is not None:
            return found
        html = (self.root / name).read_text()
        html = html.replace('"/vendor/plotly.min.js"', f'"{self.url(PLOTLY)}"')
        html = html.replace('"/static/', f'"{PREFIX}/{self.version}/')
        made = make_asset(html.encode(), TYPES[".html"])
        with self._lock:
            return self._pages.setdefault(name, made)

    def warm(self) -> None:
        """Read and compress every file now (a server start calls this in a thread), so no
        first visitor waits for the 4.8 MB Plotly bundle to be compressed."""
        for name in self.files():
            self.asset(name)

    def respond(self, request: Request, asset: Asset, cache_control: str) -> Response:
        return respond_asset(request, asset, cache_control)


def make_asset(body: bytes, media_type: str) -> Asset:
    """``body`` with its gzip (when large enough to be worth it) and its ``ETag``."""
    zipped = gzip.compress(body, 6, mtime=0) if len(body) >= MIN_GZIP_BYTES else None
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, zipped, media_type, etag)


def respond_asset(request: Request, asset: Asset, cache_control: str) -> Response:
    """``asset`` as a response: 304 for a matching ``If-None-Match``, gzip when accepted."""
    headers = {"cache-control": cache_control, "etag": asset.etag, "vary": "Accept-Encoding"}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if asset.gzipped is not None and wants_gzip(request):
        headers["content-encoding"] = "gzip"
        body = asset.gzipped
    else:
        body = asset.body
    if request.method == "HEAD":
        headers["content-length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=asset.media_type)
    return Response(body, headers=headers, media_type=asset.media_type)
