"""The FastAPI application: API under ``/api``, health checks, the static frontend.

``create_app(on_startup=…, on_shutdown=…)`` lets the caller add lifecycle hooks (the
embedded worker is started that way by ``conceptlens serve``) without the backend
importing the worker or torch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from backend.api.main import api_router
from backend.api.routes import health
from backend.errors import ClientError

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"

Hook = Callable[[], None]


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def create_app(*, on_startup: Sequence[Hook] = (), on_shutdown: Sequence[Hook] = ()) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
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

    @app.exception_handler(RequestValidationError)
    async def readable_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(
                str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")
            )
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        errors = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(parts), "errors": errors}, status_code=422)

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_bundle() -> FileResponse:
        return FileResponse(plotly_js(), media_type="text/javascript")

    @app.get("/s/{token}", name="shared_page", include_in_schema=False)
    def shared_page(token: str) -> FileResponse:
        """The read-only page of a share link (it reads ``/api/shared/{token}``)."""
        return FileResponse(FRONTEND / "share.html")

    @app.get("/s/c/{token}", name="shared_components_page", include_in_schema=False)
    def shared_components_page(token: str) -> FileResponse:
        """The read-only page of a component analysis' share link."""
        return FileResponse(FRONTEND / "share.html")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(FRONTEND / "index.html")

    app.mount("/static", StaticFiles(directory=FRONTEND), name="static")

    @app.exception_handler(ClientError)
    async def client_error(_: Request, exc: ClientError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    return app
