"""Browser tests: Debian Chromium driven by the Python playwright package, against the app on
the embedded default (``conceptlens serve`` with a fresh data folder). Screenshots go to
``tests/artifacts/`` (ignored by git)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "Debian chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextmanager
def serving(data: Path, *, ready_model: bool = True) -> Iterator[str]:
    """``conceptlens serve`` on a free port with its own SQLite file and blobs in ``data``;
    yields its URL once it answers (and, with ``ready_model``, once a model is ready)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CONCEPTLENS_DATA_DIR": str(data)}
    env.pop("CONCEPTLENS_DATABASE_URL", None)
    env.pop("CONCEPTLENS_BROKER_URL", None)
    log = open(data / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "conceptlens.cli", "serve", "--port", str(port)],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                secret = httpx.post(f"{base}/api/workspace", timeout=2).json()["secret"]
                auth = {"Authorization": f"Bearer {secret}"}
                listed = httpx.get(f"{base}/api/models", headers=auth)
                if not ready_model or any(m["status"] == "ready" for m in listed.json()["data"]):
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError((data / "serve.log").read_text()[-3000:])
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app with the built-in demo model ready, shared by the browser tests."""
    with serving(tmp_path_factory.mktemp("dashboard")) as base:
        yield base


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Console:
    """Collects console errors and uncaught exceptions of the pages it watches."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Any) -> Any:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def ready_models(page: Any, name_part: str, count: int = 1) -> list[dict[str, Any]]:
    """The ready models whose name holds ``name_part``, once there are ``count`` of them
    (the PyTorch demos are trained at first start); fails after two minutes."""
    ready = f"""fetch('/api/models').then(r => r.json()).then(b => (b.data || []).filter(
        m => m.name.includes({name_part!r}) && m.status === 'ready'))"""
    deadline = time.monotonic() + 120
    while len(models := page.evaluate(ready)) < count:
        assert time.monotonic() < deadline, f"no {count} ready models named like {name_part!r}"
        page.wait_for_timeout(500)
    return list(models)
