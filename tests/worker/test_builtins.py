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
    # the ONNX demo, three PyTorch variants and the 7 checkpoints of the training series
    assert len(names) == len(set(names)) == 4 + 7, names
    assert {status for _, status in models} == {"ready"}
    assert len(images) == len(set(images)) == 10
    assert len(datasets) == 1


def test_the_series_ends_at_the_seed_0_demo() -> None:
    """Keeping checkpoints does not change the training: the last checkpoint has the seed-0
    PyTorch demo's weights exactly, and the first differs from it."""
    import torch
    from safetensors.torch import load

    from conceptlens.models.demo import safetensors_bytes, train_demo_model
    from worker.builtins import DEMO_SERIES_EPOCHS

    kept: dict[int, bytes] = {}

    def keep(epoch: int, model: torch.nn.Module) -> None:
        kept[epoch] = safetensors_bytes(model)

    train_demo_model(seed=0, epochs=max(DEMO_SERIES_EPOCHS), on_epoch=keep)
    plain, _ = train_demo_model(seed=0)
    last, first = load(kept[max(DEMO_SERIES_EPOCHS)]), load(kept[1])
    assert all(torch.equal(last[k], v) for k, v in plain.state_dict().items())
    assert not all(torch.equal(first[k], v) for k, v in plain.state_dict().items())
