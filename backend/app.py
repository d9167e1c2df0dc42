"""The FastAPI application: API under ``/api``, health checks, the static frontend.

``create_app(on_startup=…, on_shutdown=…)`` lets the caller add lifecycle hooks (the
embedded worker is started that way by ``conceptlens serve``) without the backend
importing the worker or torch.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from backend.answers import FastAnswers
from backend.api.main import api_router
from backend.api.middleware import BodyLimit, CatchAll, SecurityHeaders
from backend.api.problems import allowed_methods, readable
from backend.api.routes import health
from backend.api.uploading import body_cap
from backend.assets import IMMUTABLE, PLOTLY, PREFIX, REVALIDATE, Assets, plotly_js
from backend.errors import ClientError

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"

Hook = Callable[[], None]

__all__ = ["FRONTEND", "create_app", "plotly_js"]


def create_app(*, on_startup: Sequence[Hook] = (), on_shutdown: Sequence[Hook] = ()) -> FastAPI:
    assets = Assets(FRONTEND)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=assets.warm, name="assets-warm", daemon=True).start()
        for hook in on_startup:
            hook()
        yield
        for hook in on_shutdown:
            hook()

    app = FastAPI(
        title="ConceptLens",
        summary="Which interaction concepts does a neural network encode?",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(api_router, prefix="/api")

    app.add_middleware(FastAnswers)  # innermost: inside the headers, the 500s, the cap
    app.add_middleware(BodyLimit, cap=body_cap)
    app.add_middleware(CatchAll)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(RequestValidationError)
    async def readable_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": readable(exc.errors()), "errors": errors}, 422)

    app.state.assets = assets

    get_or_head = ["GET", "HEAD"]

    @app.api_route(PREFIX + "/{version}/{path:path}", methods=get_or_head, include_in_schema=False)
    def versioned(request: Request, version: str, path: str) -> Response:
        """A file of the page under its version: immutable when the version is current."""
        asset = assets.asset(path)
        if asset is None:
            raise HTTPException(404, "No such file.")
        policy = IMMUTABLE if version == assets.version else REVALIDATE
        return assets.respond(request, asset, policy)

    @app.api_route("/vendor/plotly.min.js", methods=get_or_head, include_in_schema=False)
    def plotly_bundle(request: Request) -> Response:
        """The Plotly bundle at its old, unversioned address (revalidated every time)."""
        asset = assets.asset(PLOTLY)
        assert asset is not None
        return assets.respond(request, asset, REVALIDATE)

    @app.get("/s/{token}", name="shared_page", include_in_schema=False)
    def shared_page(request: Request, token: str) -> Response:
        """The read-only page of a share link (it reads ``/api/shared/{token}``)."""
        return assets.respond(request, assets.page("share.html"), REVALIDATE)

    @app.get("/s/c/{token}", name="shared_components_page", include_in_schema=False)
    def shared_components_page(request: Request, token: str) -> Response:
        """The read-only page of a component analysis' share link."""
        return assets.respond(request, assets.page("share.html"), REVALIDATE)

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        return assets.respond(request, assets.page("index.html"), REVALIDATE)

    # the same files unversioned (old links, scripts): revalidated on every use
    app.mount("/static", StaticFiles(directory=FRONTEND), name="static")

    @app.exception_handler(ClientError)
    async def client_error(_: Request, exc: ClientError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 405:
            methods = allowed_methods(request, (exc.headers or {}).get("Allow", ""))
            detail = f"This address does not accept {request.method}; use {', '.join(methods)}."
            return JSONResponse({"detail": detail}, 405, headers={"Allow": ", ".join(methods)})
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    return app
