"""A sampled analysis gives the same numbers from one worker process as from two (issue 10).

Production shape, as :mod:`tests.test_faults` starts it: a fresh Postgres database, a
private Redis queue, uvicorn, and prefork ``celery worker`` processes. The same sampled
request (the demo model, one digit, an 8×8 grid, seed 7) runs once on a worker with two
processes and, after the stored statistics are forgotten, once on a worker with one;
``CONCEPTLENS_SAMPLED_CHUNK_PASSES`` is small, so the image fans out into one chunk task
per sampled order. The exported statistics are bit-identical, and so are the statistics
each chunk stored.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

import tests.test_faults as faults
from backend.storage import LocalBlobStore
from tests.test_faults import (  # noqa: F401  (``production`` is a fixture)
    client_for,
    ended,
    forget_tables,
    production,
    stop_group,
    torch_demos,
    upload_demo,
)
from tests.test_production import poll

SAMPLED = {"ratios": [0.0, 0.3, 0.6, 1.0], "radius": 1, "contexts": 3, "seed": 7}
STATISTICS = ("p0_replicate_count", "p0_replicate_sum", "p0_replicate_sumsq", "p0_center")
_WORKER_ARGS: Callable[[str], list[str]] = faults.worker_args


@pytest.fixture
def sampled_production(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """:func:`tests.test_faults.production` with small sampled chunks (its processes take
    their environment from this one), and ``new_worker(concurrency)``."""
    monkeypatch.setenv("CONCEPTLENS_SAMPLED_CHUNK_PASSES", "300")
    stack: dict[str, Any] = request.getfixturevalue("production")

    def new_worker(concurrency: int) -> Any:
        def args(queue: str) -> list[str]:
            out = list(_WORKER_ARGS(queue))
            out[out.index("--concurrency") + 1] = str(concurrency)
            return out

        monkeypatch.setattr(faults, "worker_args", args)
        return stack["new_worker"]()

    return {**stack, "new_worker_of": new_worker}


def run_watching(client: httpx.Client, body: dict[str, Any], db_url: str) -> dict[str, Any]:
    """Run an analysis to its end; also the most chunks of its item seen running at once."""
    created = client.post("/api/analyses", json=body)
    assert created.status_code == 201, created.text
    path = f"/api/analyses/{created.json()['id']}"
    engine = create_engine(db_url)
    most = 0
    deadline = time.monotonic() + 180
    try:
        while True:
            analysis = client.get(path).json()
            if ended(analysis):
                break
            assert time.monotonic() < deadline, f"timed out: {analysis}"
            with engine.connect() as conn:
                running = conn.scalar(
                    text(
                        "SELECT count(*) FROM chunks JOIN analysis_items i ON i.id = item_id "
                        "WHERE i.analysis_id = :a AND chunks.status = 'running'"
                    ),
                    {"a": analysis["id"]},
                )
            most = max(most, int(running or 0))
            time.sleep(0.03)
        with engine.connect() as conn:
            chunks = conn.execute(
                text(
                    "SELECT chunks.start, chunks.stop, chunks.status, chunks.done, "
                    "chunks.blob_key FROM chunks JOIN analysis_items i ON i.id = item_id "
                    "WHERE i.analysis_id = :a ORDER BY chunks.start"
                ),
                {"a": analysis["id"]},
            ).all()
    finally:
        engine.dispose()
    analysis["_chunks"] = [tuple(row) for row in chunks]
    analysis["_most_running"] = most
    return analysis


def arrays_of(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: np.asarray(npz[key]) for key in npz.files}


def statistics(client: httpx.Client, analysis: dict[str, Any]) -> dict[str, np.ndarray]:
    item = analysis["items"][0]["id"]
    data = client.get(f"/api/analyses/{analysis['id']}/items/{item}/export.npz")
    assert data.status_code == 200, data.text
    return arrays_of(data.content)


def same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_one_and_two_worker_processes_give_the_same_sampled_numbers(
    sampled_production: dict[str, Any], demo_dir: Path, tmp_path: Path
) -> None:
    stack = sampled_production
    two = stack["new_worker_of"](2)
    client = client_for(stack["base"])
    model, image = upload_demo(client, demo_dir)
    # the built-in demo models the API asked for at start-up: made, so that both processes
    # are free for the analysis
    poll(client, "/api/models", torch_demos, timeout=300)
    body = {"model_id": model, "image_ids": [image], "grid": "8x8", "baseline": "zero",
            "mode": "sampled", "sampled": SAMPLED}  # fmt: skip

    shared = run_watching(client, body, stack["db"])
    assert shared["status"] == "done", shared["error"]
    # both processes held a chunk at once (the item has one chunk per sampled order)
    assert shared["_most_running"] >= 2, shared["_chunks"]
    stop_group(two)

    forget_tables(stack["db"])
    stack["new_worker_of"](1)
    alone = run_watching(client, body, stack["db"])
    assert alone["status"] == "done", alone["error"]
    assert not alone["items"][0]["cached"]  # computed again, not read back

    for run in (alone, shared):
        assert len(run["_chunks"]) > 1 and all(c[2] == "done" for c in run["_chunks"])
    # every chunk: the same units, the same passes, the same statistics (compared as arrays,
    # not as the bytes of the stored npz files)
    blobs = LocalBlobStore(tmp_path / "blobs")  # the fixture's CONCEPTLENS_DATA_DIR
    for mine, theirs in zip(alone["_chunks"], shared["_chunks"], strict=True):
        assert mine[:4] == theirs[:4]
        assert same_arrays(arrays_of(blobs.get(mine[4])), arrays_of(blobs.get(theirs[4])))
    # and the pooled statistics the service exports are bit-identical
    first, second = statistics(client, alone), statistics(client, shared)
    for key in STATISTICS:
        assert np.array_equal(first[key], second[key]), key
    assert same_arrays(first, second)
    a, b = alone["items"][0]["summary"], shared["items"][0]["summary"]
    assert a["passes"] == b["passes"] == sum(c[3] for c in alone["_chunks"])
    assert a["J"] == b["J"] and a["strength"] == b["strength"]
