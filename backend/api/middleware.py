"""Pure ASGI middleware: security headers, a body-size cap, a clean 500 for any crash.

Pure ASGI rather than ``BaseHTTPMiddleware`` so that bodies stream through untouched and an
error inside a route never leaves a half-sent response. Order (outermost first):
:class:`SecurityHeaders` → :class:`CatchAll` → :class:`BodyLimit` → the app's routes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("conceptlens.api")

#: Plotly injects <style> elements and draws with data:/blob: images; nothing else is inline.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
#: FastAPI's console pages (/docs, /redoc) load Swagger UI / ReDoc from a CDN and start it
#: with an inline script; they show no user content.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:; worker-src blob:; "
    "frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
)
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # share tokens live in URLs
    "x-frame-options": "DENY",
}
CRASHED = "Something went wrong on the server; the error was logged. Please try again."


class SecurityHeaders:
    """Adds a CSP and :data:`SECURITY_HEADERS` to every response that does not set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        csp = DOCS_CSP if scope["path"] in DOCS_PATHS else CSP
        wanted = {"content-security-policy": csp, **SECURITY_HEADERS}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in wanted.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class CatchAll:
    """An unhandled error becomes a logged, clean ``500 {"detail": …}`` (no traceback).

    Starlette's own handler re-raises after answering, and uvicorn then drops the
    keep-alive connection, so the client's next request on it fails; here it ends.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            log.exception("Unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # too late for a clean answer
                raise
            await JSONResponse({"detail": CRASHED}, status_code=500)(scope, receive, send)


class BodyLimit:
    """Refuses a body larger than ``cap(method, path)`` bytes with 413: at once when
    ``Content-Length`` says so (nothing is read), else as soon as the stream passes it."""

    def __init__(self, app: ASGIApp, cap: Callable[[str, str], int]) -> None:
        self.app = app
        self.cap = cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.cap(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(limit, declared)(scope, receive, send)
            return
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, too_large(limit))
            return message

        await self.app(scope, capped, send)


def too_large(limit: int) -> str:
    size = f"{limit / 2**20:.0f} MB" if limit >= 2**20 else f"{limit / 1024:.0f} KB"
    return f"The request body is larger than the limit of {size} for this address."


def _refuse(limit: int, declared: bytes) -> JSONResponse:
    if not declared.isdigit():
        return JSONResponse({"detail": "The Content-Length header is not a number."}, 400)
    return JSONResponse({"detail": too_large(limit)}, 413, headers={"Connection": "close"})
