"""Fixtures shared by every test folder: the demo model, written once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from conceptlens.models import write_demo_model

ROOT = Path(__file__).resolve().parent.parent
# The service (backend/, worker/) is not installed; it runs from the checkout. pytest puts
# the checkout on its own path (pyproject's `pythonpath`); the processes tests start (a
# server, Celery workers) find it through PYTHONPATH, as under ./dev.sh.
if str(ROOT) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
    )


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding :func:`write_demo_model`'s output (seed 0, 8 samples)."""
    out = tmp_path_factory.mktemp("demo")
    write_demo_model(out, seed=0, n_samples=8)
    return out


@pytest.fixture(scope="session")
def demo_manifest(demo_dir: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((demo_dir / "demo_model.json").read_text())
    return manifest
