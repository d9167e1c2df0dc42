"""The FastAPI application: API under ``/api``, health checks, the static frontend.

``create_app(on_startup=…, on_shutdown=…)`` lets the caller add lifecycle hooks (the
embedded worker is started that way by ``conceptlens serve``) without the backend
importing the worker or torch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from backend.api.main import api_router
from backend.api.middleware import BodyLimit, CatchAll, SecurityHeaders
from backend.api.problems import allowed_methods, readable
from backend.api.routes import health
from backend.api.uploading import body_cap
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

    app.add_middleware(BodyLimit, cap=body_cap)
    app.add_middleware(CatchAll)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(RequestValidationError)
    async def readable_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": readable(exc.errors()), "errors": errors}, 422)

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
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 405:
            methods = allowed_methods(request, (exc.headers or {}).get("Allow", ""))
            detail = f"This address does not accept {request.method}; use {', '.join(methods)}."
            return JSONResponse({"detail": detail}, 405, headers={"Allow": ", ".join(methods)})
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    return app
