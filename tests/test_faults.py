"""Kill -9 in the middle of jobs, for real, and the jobs still finish with the same numbers.

Production shape: Postgres, Redis, uvicorn, and separate prefork ``celery worker``
processes; a worker (with its pool and its model sandboxes) is killed with SIGKILL
mid-analysis and mid-component-job, another is started, and the jobs end ``done`` within
a bounded time with results bit-identical to an undisturbed run. Embedded shape: the whole
``conceptlens serve`` process is killed and started again. Leases are short here (2 s) so
that the sweep finds the dead work quickly.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from tests.services import fresh_postgres_database, redis_url
from tests.test_production import ROOT, free_port, poll, wait_ready

FAST_LEASES = {
    "CONCEPTLENS_LEASE_S": "2",
    "CONCEPTLENS_SWEEP_INTERVAL_S": "0.5",
    "CONCEPTLENS_CHUNK_SIZE": "4096",
    "CONCEPTLENS_PROGRESS_INTERVAL_S": "0.05",
    "CONCEPTLENS_BATCH_SIZE": "8",  # slow enough to be caught mid-way
}


def ended(job: dict[str, Any]) -> bool:
    return job["status"] in ("done", "failed", "cancelled")


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A process in its own group, so that killing the group takes its children too."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_group(proc)


def worker_args(queue: str) -> list[str]:
    return [
        "-m", "celery", "-A", "worker.celery_app", "worker", "--concurrency", "2",
        "--pool", "prefork", "-Q", queue, "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def client_for(base: str) -> httpx.Client:
    secret = httpx.post(f"{base}/api/workspace").json()["secret"]
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def upload_demo(client: httpx.Client, demo_dir: Path) -> tuple[str, str]:
    """The demo ONNX model (ready) and one sample digit: their ids."""
    data = (demo_dir / "digit_cnn.onnx").read_bytes()
    created = client.post("/api/models", files={"file": ("digits.onnx", data)})
    assert created.status_code == 201, created.text
    model = poll(client, f"/api/models/{created.json()['id']}", lambda m: m["status"] != "pending")
    model = poll(client, f"/api/models/{model['id']}", lambda m: m["status"] != "validating")
    assert model["status"] == "ready", model["error"]
    sample = next((demo_dir / "samples").glob("*.png"))
    image = client.post("/api/images", files=[("files", ("d.png", sample.read_bytes()))])
    return model["id"], image.json()["data"][0]["id"]


def interactions(client: httpx.Client, analysis: dict[str, Any]) -> np.ndarray:
    item = analysis["items"][0]["id"]
    data = client.get(f"/api/analyses/{analysis['id']}/items/{item}/export.npz").content
    return np.asarray(np.load(io.BytesIO(data))["interactions"])


def run_killing(
    client: httpx.Client, body: dict[str, Any], kill: Any, *, timeout: float = 240
) -> dict[str, Any]:
    """Start an analysis, call ``kill()`` once it is part-way, wait for it to end."""
    analysis = client.post("/api/analyses", json=body).json()
    path = f"/api/analyses/{analysis['id']}"
    seen = poll(client, path, lambda a: a["progress_done"] > 0 or ended(a), timeout=120)
    assert not ended(seen), "the analysis ended before it could be interrupted"
    kill()
    return poll(client, path, ended, timeout=timeout)


def forget_tables(db_url: str) -> None:
    """Drop the logit-table cache rows, so the next identical request computes again."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM logit_tables"))
        conn.execute(text("UPDATE component_jobs SET cache_key = NULL"))
    engine.dispose()


@pytest.fixture
def production(tmp_path: Path) -> Iterator[dict[str, Any]]:
    broker = redis_url(db=8)
    queue = f"faults-{uuid.uuid4().hex[:12]}"  # its own queue: other runs may share Redis
    with fresh_postgres_database() as db_url:
        env = {
            **os.environ, **FAST_LEASES, "CONCEPTLENS_DATABASE_URL": db_url,
            "CONCEPTLENS_BROKER_URL": broker, "CONCEPTLENS_DATA_DIR": str(tmp_path),
            "CONCEPTLENS_QUEUE": queue,
        }  # fmt: skip
        subprocess.run([sys.executable, "-m", "backend.db.migrate"], env=env, cwd=ROOT, check=True)
        port = free_port()
        procs = [
            start(["-m", "uvicorn", "backend.main:app", "--port", str(port)], env,
                  tmp_path / "api.log"),
        ]  # fmt: skip

        def new_worker() -> subprocess.Popen[bytes]:
            procs.append(start(worker_args(queue), env, tmp_path / "worker.log"))
            return procs[-1]

        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base)
            yield {"base": base, "db": db_url, "new_worker": new_worker, "procs": procs}
        finally:
            for proc in procs:
                stop_group(proc)


def test_killed_worker_mid_analysis_and_mid_components(
    production: dict[str, Any], demo_dir: Path
) -> None:
    first = production["new_worker"]()
    client = client_for(production["base"])
    model, image = upload_demo(client, demo_dir)
    body = {"model_id": model, "image_ids": [image], "grid": "4x4", "baseline": "mean"}

    def replace_worker() -> None:
        kill_group(first)
        production["new_worker"]()

    t0 = time.monotonic()
    survived = run_killing(client, body, replace_worker)
    assert survived["status"] == "done", survived["error"]
    assert time.monotonic() - t0 < 240

    forget_tables(production["db"])
    undisturbed = poll(client, f"/api/analyses/{post(client, body)}", ended)
    assert undisturbed["status"] == "done" and not undisturbed["items"][0]["cached"]
    assert np.array_equal(interactions(client, survived), interactions(client, undisturbed))

    # the same for a component job, on the built-in seed-0 CNN the API had a worker make
    models = poll(client, "/api/models", torch_demos, timeout=240)["data"]
    seed0 = next(m["id"] for m in models if m["name"].endswith("seed 0)"))
    digits = next(d["id"] for d in client.get("/api/datasets").json()["data"] if d["builtin"])
    job = {
        "model_id": seed0, "dataset_id": digits, "layer": "relu2", "orders": [0, 1, 2],
        "epochs": 12, "width": 16, "max_samples": 400, "seed": 3,
    }  # fmt: skip
    second = production["procs"][-1]
    created = client.post("/api/components", json=job).json()
    path = f"/api/components/{created['id']}"
    seen = poll(client, path, lambda j: j["progress_done"] > 0 or ended(j), timeout=240)
    assert not ended(seen), "the component job ended before it could be interrupted"
    kill_group(second)
    production["new_worker"]()
    trained = poll(client, path, ended, timeout=300)
    assert trained["status"] == "done", trained["error"]
    forget_tables(production["db"])
    again = poll(
        client,
        f"/api/components/{client.post('/api/components', json=job).json()['id']}",
        ended,
        timeout=300,
    )
    assert again["status"] == "done" and not again["metrics"].get("cached")
    assert comparable(trained["metrics"]) == comparable(again["metrics"])


def post(client: httpx.Client, body: dict[str, Any]) -> str:
    created = client.post("/api/analyses", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def torch_demos(models: dict[str, Any]) -> bool:
    ready = [m for m in models["data"] if "PyTorch" in m["name"] and m["status"] == "ready"]
    return len(ready) == 3


def comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics without what may differ between two identical runs (timings, cache flag)."""
    return {k: v for k, v in metrics.items() if k not in ("seconds", "cached")}


def test_killed_embedded_server_resumes_after_restart(tmp_path: Path, demo_dir: Path) -> None:
    env = {**os.environ, **FAST_LEASES, "CONCEPTLENS_DATA_DIR": str(tmp_path)}
    for name in ("CONCEPTLENS_DATABASE_URL", "CONCEPTLENS_BROKER_URL"):
        env.pop(name, None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = [
        "-c",
        "import sys, conceptlens.cli; sys.exit(conceptlens.cli.main())",
        "serve",
        "--port",
        str(port),
    ]
    server = start(serve, env, tmp_path / "serve.log")
    try:
        wait_ready(base, timeout=120)
        client = client_for(base)
        model, image = upload_demo(client, demo_dir)
        body = {"model_id": model, "image_ids": [image], "grid": "4x4", "baseline": "blur"}
        analysis = client.post("/api/analyses", json=body).json()
        path = f"/api/analyses/{analysis['id']}"
        seen = poll(client, path, lambda a: a["progress_done"] > 0 or ended(a), timeout=120)
        assert not ended(seen)
        kill_group(server)
        server = start(serve, env, tmp_path / "serve.log")
        wait_ready(base, timeout=120)
        survived = poll(client, path, ended, timeout=240)
        assert survived["status"] == "done", survived["error"]
        forget_tables(f"sqlite:///{tmp_path / 'conceptlens.db'}")
        again = poll(client, f"/api/analyses/{post(client, body)}", ended)
        assert again["status"] == "done" and not again["items"][0]["cached"]
        assert np.array_equal(interactions(client, survived), interactions(client, again))
    finally:
        stop_group(server)


def model_blob(db_url: str, model_id: str) -> str:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        key = conn.execute(text("SELECT blob_key FROM models WHERE id = :i"), {"i": model_id})
        value = str(key.scalar_one())
    engine.dispose()
    return value


def test_killed_worker_mid_training_run(production: dict[str, Any]) -> None:
    """A training run whose worker is killed mid-epoch is trained again from the start by
    another worker and ends with the weights and history of an undisturbed run; checkpoints
    kept before the kill are not stored twice."""
    first = production["new_worker"]()
    client = client_for(production["base"])
    digits = poll(client, "/api/datasets", lambda d: any(x["builtin"] for x in d["data"]))
    body = {
        "dataset_id": next(d["id"] for d in digits["data"] if d["builtin"]),
        "preset": "encourage middle", "grid": "2x2", "epochs": 12, "max_train": 600,
        "batch_size": 16, "samples": 2, "evaluate": None, "attack": {"eps": [0.1], "steps": 2},
    }  # fmt: skip
    created = client.post("/api/training-runs", json=body)
    assert created.status_code == 201, created.text
    path = f"/api/training-runs/{created.json()['id']}"
    seen = poll(client, path, lambda r: len(r["history"] or []) >= 1 or ended(r), timeout=240)
    assert not ended(seen), "the run ended before it could be interrupted"
    kill_group(first)
    production["new_worker"]()
    survived = poll(client, path, ended, timeout=400)
    assert survived["status"] == "done", survived["error"]
    again = client.post("/api/training-runs", json=body).json()
    undisturbed = poll(client, f"/api/training-runs/{again['id']}", ended, timeout=400)
    assert undisturbed["status"] == "done", undisturbed["error"]

    def timeless(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    assert timeless(survived["history"]) == timeless(undisturbed["history"])
    assert comparable(survived["metrics"]) == comparable(undisturbed["metrics"])
    db = production["db"]
    assert model_blob(db, survived["model_id"]) == model_blob(db, undisturbed["model_id"])
    series = next(
        s for s in client.get("/api/model-series").json()["data"] if s["name"] == survived["series"]
    )
    assert series["steps"] == list(range(1, 13))  # one checkpoint per epoch, none twice
