"""The service on the embedded default: SQLite in a temp folder, the in-process worker."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backend.config import get_settings
from backend.db.session import get_engine, get_sessionmaker


def reset_caches() -> None:
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Migrated database, built-in demo model and samples, a running embedded worker."""
    data = tmp_path_factory.mktemp("service")
    mp = pytest.MonkeyPatch()
    mp.setenv("CONCEPTLENS_DATA_DIR", str(data))
    mp.setenv("CONCEPTLENS_CHUNK_SIZE", "4096")  # a 4x4 grid (65,536 masks) fans out into 16 chunks
    mp.setenv("CONCEPTLENS_PROGRESS_INTERVAL_S", "0.05")
    mp.setenv("CONCEPTLENS_BATCH_SIZE", "128")
    reset_caches()
    from backend.db.migrate import upgrade
    from worker.builtins import ensure_builtins
    from worker.embedded import EmbeddedWorker

    upgrade()
    demo_id = ensure_builtins()
    worker = EmbeddedWorker(concurrency=2)
    worker.start()
    yield {"data": data, "demo_model_id": demo_id}
    worker.stop()
    mp.undo()
    reset_caches()


@pytest.fixture(scope="session")
def app(service: dict[str, Any]) -> Any:
    from backend.app import create_app

    return create_app()


def new_client(app: Any) -> TestClient:
    """A client with its own new workspace (cookie set by GET /api/workspace)."""
    client = TestClient(app)
    assert client.get("/api/workspace").status_code == 200
    return client


@pytest.fixture
def client(app: Any) -> TestClient:
    return new_client(app)


@pytest.fixture
def other_client(app: Any) -> TestClient:
    return new_client(app)


@pytest.fixture
def make_client(app: Any) -> Callable[[], TestClient]:
    return lambda: new_client(app)


def png_bytes(size: tuple[int, int] = (16, 16), color: int = 128, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def wait_for(
    client: TestClient, path: str, done: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting on {path}: {body}")
        time.sleep(0.1)


def sample_image_id(client: TestClient, label: str = "3") -> str:
    images = client.get("/api/images").json()["data"]
    return next(i["id"] for i in images if i["builtin"] and i["label"] == label)


def demo_files(tmp: Path) -> dict[str, Path]:
    from conceptlens.models.demo import write_demo_model

    manifest = write_demo_model(tmp, n_samples=2)
    return {fmt: tmp / name for fmt, name in manifest["files"].items()}
