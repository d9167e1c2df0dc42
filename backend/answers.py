"""Answers derived from a finished result, encoded once and kept: figures and tables.

A finished image's result never changes (a retry re-runs only what is not done, and a new
result is a new blob), so what is drawn or listed from it is built on the first request and
then served as stored bytes: no figure building, no JSON encoding, gzip done once. Keys are
digests of everything an answer depends on — the result's blob key (its content's SHA-256),
the request's parameters, the summary it reads — and of the code that builds answers
(:data:`CODE`), so an upgrade that draws differently never serves an old drawing. Answers
about something unfinished (an analysis still running) are never looked up nor stored.

Two levels: an in-memory LRU of :data:`MEMORY_BYTES` per process, and for figures a folder
(``<data_dir>/cache/answers``) that survives restarts and is shared by the processes of one
machine. Both are caches: deleting them loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from backend import figures, results
from backend.assets import Asset, make_asset, respond_asset
from backend.storage import description_key
from conceptlens import figures as library_figures

#: Bytes of answers (plain and gzipped together) each process keeps in memory.
MEMORY_BYTES = 64 * 2**20
#: URLs :class:`FastAnswers` knows per process.
MAX_ROUTES = 100_000
#: Answers are fetched by pages that may hold a stale one: revalidate with the ETag.
CACHE_CONTROL = "private, no-cache"


def _code_digest() -> str:
    h = hashlib.sha256()
    for module in (figures, library_figures, results):  # the builders live in the library
        h.update(Path(str(module.__file__)).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


#: A digest of the code that builds answers: part of every key.
CODE = _code_digest()


def encode(value: Any) -> bytes:
    """JSON as Starlette's ``JSONResponse`` writes it (compact, UTF-8, no NaN)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def answer_key(**description: Any) -> str:
    """The key of an answer described by ``description`` (JSON-able), with :data:`CODE`."""
    return description_key({**description, "code": CODE})


def _asset(body: bytes) -> Asset:
    return make_asset(body, "application/json")


class Answers:
    """The two levels of the cache; thread-safe (routes run in a thread pool)."""

    def __init__(self, folder: Path | None, memory_bytes: int = MEMORY_BYTES) -> None:
        self.folder = folder
        self.memory_bytes = memory_bytes
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, Asset] = OrderedDict()
        self._size = 0
        self.built = 0  # answers built (not found): for tests and the benchmark
        self.fast = 0  # answers served by :class:`FastAnswers`
        #: (path, query string) → what a kept answer there was drawn from
        self.routes: dict[tuple[str, bytes], Route] = {}

    def route(self, request: Request, route: Route) -> None:
        """Let :class:`FastAnswers` serve this URL's answer from now on (bounded: the
        oldest URLs are forgotten first)."""
        url = (request.scope["path"], request.scope.get("query_string", b""))
        with self._lock:
            self.routes[url] = route
            while len(self.routes) > MAX_ROUTES:
                del self.routes[next(iter(self.routes))]

    def get_memory(self, key: str) -> Asset | None:
        with self._lock:
            return self._memory.get(key)

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / key[:2] / f"{key}.json"

    def _remember(self, key: str, asset: Asset) -> None:
        size = len(asset.body) + len(asset.gzipped or b"")
        if size > self.memory_bytes:
            return
        with self._lock:
            if key in self._memory:
                return
            self._memory[key] = asset
            self._size += size
            while self._size > self.memory_bytes:
                _, old = self._memory.popitem(last=False)
                self._size -= len(old.body) + len(old.gzipped or b"")

    def get(self, key: str) -> Asset | None:
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
                return found
        path = self._path(key)
        if path is None:
            return None
        try:
            body = path.read_bytes()
        except OSError:
            return None
        asset = _asset(body)
        self._remember(key, asset)
        return asset

    def put(self, key: str, body: bytes, *, persist: bool) -> Asset:
        asset = _asset(body)
        self._remember(key, asset)
        path = self._path(key)
        if persist and path is not None:
            tmp = None
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                os.replace(tmp, path)
            except OSError:  # a read-only or full disk: memory only
                if tmp is not None:
                    Path(tmp).unlink(missing_ok=True)
        return asset

    def answer(
        self,
        request: Request,
        key: str | None,
        make: Callable[[], Any],
        *,
        persist: bool = False,
    ) -> Response:
        """The answer under ``key`` (built by ``make`` the first time); ``key=None``: an
        answer about something unfinished, built every time and never kept."""
        if key is None:
            return respond_asset(request, _asset(encode(make())), CACHE_CONTROL)
        asset = self.get(key)
        if asset is None:
            self.built += 1
            asset = self.put(key, encode(make()), persist=persist)
        return respond_asset(request, asset, CACHE_CONTROL)


_answers: dict[Path, Answers] = {}
_answers_lock = threading.Lock()


def answers_for(data_dir: Path) -> Answers:
    """The process's cache for the data folder ``data_dir`` (one per folder)."""
    with _answers_lock:
        if data_dir not in _answers:
            _answers[data_dir] = Answers(data_dir / "cache" / "answers")
        return _answers[data_dir]


# --- the fast path: a kept answer served before routing ----------------------------------


@dataclass(frozen=True)
class Route:
    """What a kept answer at one URL was drawn from, to re-check who may read it."""

    key: str
    analysis_id: str
    item_id: str
    result_key: str
    token: str | None  # a share link's token, or None for the owner's URL


class FastAnswers:
    """Serves a kept answer of a finished image straight from memory, before routing,
    dependencies and the ORM (those cost 4–8 ms of CPU per request at load 6–9 on the
    2-core machine; this path about 1 ms: bench/README.md). Only URLs a route has already
    answered are known here (:meth:`Answers.route`), and each request is re-checked by one
    SQL query with the
    routes' own rules: the owner's workspace secret (``Authorization: Bearer`` or the
    cookie) owns the analysis, or the share link is live (not revoked) and opens it; the
    image is done with the same result. Anything else goes on to the routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":  # as the routes: GET only
            from backend.config import get_settings

            cache = answers_for(get_settings().data_dir)
            route = cache.routes.get((scope["path"], scope.get("query_string", b"")))
            if route is not None:
                request = Request(scope)
                asset = cache.get_memory(route.key)
                if asset is not None and await run_in_threadpool(allowed, request, route):
                    cache.fast += 1
                    await respond_asset(request, asset, CACHE_CONTROL)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def allowed(request: Request, route: Route) -> bool:
    """Whether the routes would serve ``route`` to ``request`` (one query)."""
    from sqlalchemy import text

    from backend.api.deps import workspace_secret
    from backend.db.session import get_engine
    from backend.services.workspaces import hash_secret

    if route.token is not None:
        sql = text(
            "SELECT i.result_key FROM analysis_items i JOIN share_links s"
            " ON s.analysis_id = i.analysis_id WHERE i.id = :item AND i.analysis_id = :analysis"
            " AND i.status = 'done' AND s.token = :token AND s.revoked_at IS NULL"
        )
        params = {"item": route.item_id, "analysis": route.analysis_id, "token": route.token}
    else:
        secret = workspace_secret(request)
        if secret is None:
            return False
        sql = text(
            "SELECT i.result_key FROM analysis_items i JOIN analyses a ON a.id = i.analysis_id"
            " JOIN workspaces w ON w.id = a.workspace_id WHERE i.id = :item"
            " AND a.id = :analysis AND i.status = 'done' AND w.secret_hash = :hash"
        )
        params = {"item": route.item_id, "analysis": route.analysis_id}
        params["hash"] = hash_secret(secret)
    with get_engine().connect() as connection:
        found = connection.execute(sql, params).scalar()
    return found is not None and found == route.result_key
