"""Built-in resources: created once, even when several workers are asked at the same time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.services import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[2]
ENSURE = "from worker.builtins import ensure_builtins; ensure_builtins()"


def test_concurrent_workers_create_the_builtins_once(tmp_path: Path) -> None:
    """Two processes (e.g. the workers of two API replicas' start-up tasks) race on Postgres."""
    with fresh_postgres_database() as url:
        env = {**os.environ, "CONCEPTLENS_DATABASE_URL": url, "CONCEPTLENS_DATA_DIR": str(tmp_path)}
        subprocess.run([sys.executable, "-m", "backend.db.migrate"], env=env, cwd=ROOT, check=True)
        racers = [
            subprocess.Popen([sys.executable, "-c", ENSURE], env=env, cwd=ROOT) for _ in range(2)
        ]
        assert [racer.wait(timeout=300) for racer in racers] == [0, 0]
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                models = conn.execute(text("SELECT name, status FROM models")).all()
                images = conn.execute(text("SELECT blob_key FROM images")).scalars().all()
                datasets = conn.execute(text("SELECT name FROM datasets")).scalars().all()
        finally:
            engine.dispose()
    names = [name for name, _ in models]
    assert len(names) == len(set(names)) == 4, names  # the ONNX demo and three PyTorch variants
    assert {status for _, status in models} == {"ready"}
    assert len(images) == len(set(images)) == 10
    assert len(datasets) == 1
