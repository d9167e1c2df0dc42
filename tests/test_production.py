"""The production shape for real: Postgres, Redis, a separate ``celery worker`` process and
uvicorn on a free port, driven over HTTP like a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services import fresh_postgres_database, redis_url

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("production")
    broker = redis_url(db=7)
    import redis

    redis.Redis.from_url(broker).flushdb()
    with fresh_postgres_database() as db_url:
        env = {
            **os.environ,
            "CONCEPTLENS_DATABASE_URL": db_url,
            "CONCEPTLENS_BROKER_URL": broker,
            "CONCEPTLENS_DATA_DIR": str(data),  # the blob folder both processes share
            "CONCEPTLENS_CHUNK_SIZE": "4096",
            "CONCEPTLENS_PROGRESS_INTERVAL_S": "0.05",
            "CONCEPTLENS_BATCH_SIZE": "256",
        }
        subprocess.run([sys.executable, "-m", "backend.db.migrate"], env=env, cwd=ROOT, check=True)
        port = free_port()
        logs = {name: open(data / f"{name}.log", "w") for name in ("worker", "api")}  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
             "--concurrency", "2", "--pool", "prefork", "-Q", "conceptlens",
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
            env=env, cwd=ROOT, stdout=logs["worker"], stderr=subprocess.STDOUT,
        )  # fmt: skip
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port)],
            env=env, cwd=ROOT, stdout=logs["api"], stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base)
            yield {"base": base, "data": data, "logs": logs}
        finally:
            for proc in (api, worker):
                proc.send_signal(signal.SIGTERM)
            for proc in (api, worker):
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for f in logs.values():
                f.close()


def wait_ready(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the API did not become ready")


def poll(client: httpx.Client, path: str, done: Any, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        body = client.get(path).json()
        seen.append(body)
        if done(body):
            body["_history"] = seen
            return body
        time.sleep(0.05)
    raise AssertionError(f"timed out on {path}: {seen[-1] if seen else None}")


def test_the_whole_flow_over_http(stack: dict[str, Any], tmp_path: Path) -> None:
    from conceptlens.models.demo import write_demo_model

    manifest = write_demo_model(tmp_path, n_samples=2)
    base = stack["base"]
    secret = httpx.post(f"{base}/api/workspace").json()["secret"]
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30)

    model_file = tmp_path / manifest["files"]["onnx"]
    created = client.post(
        "/api/models",
        files={"file": ("digits.onnx", model_file.read_bytes())},
        data={"name": "digits"},
    )
    assert created.status_code == 201, created.text
    model = poll(
        client, f"/api/models/{created.json()['id']}", lambda m: m["status"] in ("ready", "failed")
    )
    assert model["status"] == "ready", model["error"]
    assert (model["format"], model["num_classes"]) == ("onnx", 10)

    sample = manifest["samples"][1]
    upload = client.post(
        "/api/images", files=[("files", ("d.png", (tmp_path / sample["file"]).read_bytes()))]
    )
    image_id = upload.json()["data"][0]["id"]

    body = {"model_id": model["id"], "image_ids": [image_id], "grid": "4x4", "baseline": "zero"}
    analysis = client.post("/api/analyses", json=body).json()
    assert analysis["forward_passes"] == 65536
    done = poll(
        client,
        f"/api/analyses/{analysis['id']}",
        lambda a: a["status"] in ("done", "failed", "cancelled"),
    )
    assert done["status"] == "done", done["error"]
    assert done["progress_done"] == done["progress_total"] == 65536
    partial = [a["progress_done"] for a in done["_history"] if 0 < a["progress_done"] < 65536]
    assert partial, "progress was never seen between 0 and the total"
    item = done["items"][0]
    assert item["summary"]["prediction"] == sample["label"]

    prefix = f"/api/analyses/{analysis['id']}/items/{item['id']}"
    top = client.get(f"{prefix}/interactions", params={"top_k": 3}).json()
    assert len(top["data"]) == 3
    figures = client.get(f"{prefix}/figures").json()
    assert figures["curve"]["data"] and figures["sparsity"]["data"]

    share = client.post(f"/api/analyses/{analysis['id']}/shares").json()
    anonymous = httpx.Client(base_url=base, timeout=30)  # no secret, no cookie
    assert anonymous.get(f"/api/analyses/{analysis['id']}").status_code == 401
    shared = anonymous.get(f"/api/shared/{share['token']}").json()
    assert shared["id"] == analysis["id"] and shared["status"] == "done"
    assert (
        anonymous.get(
            f"/api/shared/{share['token']}{prefix.split(analysis['id'])[1]}/interactions"
        ).status_code
        == 200
    )
    page = anonymous.get(share["url"])
    assert page.status_code == 200

    again = client.post("/api/analyses", json={**body, "target": 0}).json()
    assert again["forward_passes"] == 0  # the logit table is reused across processes
    assert poll(client, f"/api/analyses/{again['id']}", lambda a: a["status"] == "done")["items"][
        0
    ]["cached"]


def test_component_job_through_a_real_worker(stack: dict[str, Any]) -> None:
    """The built-ins are created by a worker at API start-up; a component job runs there."""
    base = stack["base"]
    secret = httpx.post(f"{base}/api/workspace").json()["secret"]
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30)

    def torch_demos(models: dict[str, Any]) -> bool:
        ready = [m for m in models["data"] if "PyTorch" in m["name"] and m["status"] == "ready"]
        return len(ready) == 3

    models = poll(client, "/api/models", torch_demos, timeout=240)["data"]
    seed0 = next(m["id"] for m in models if m["name"].endswith("seed 0)"))
    digits = next(d["id"] for d in client.get("/api/datasets").json()["data"] if d["builtin"])
    body = {
        "model_id": seed0, "dataset_id": digits, "layer": "relu2", "orders": [0, 1],
        "epochs": 2, "width": 8, "max_samples": 100,
    }  # fmt: skip
    job = client.post("/api/components", json=body).json()
    done = poll(client, f"/api/components/{job['id']}", lambda j: j["status"] in ("done", "failed"))
    assert done["status"] == "done", done["error"]
    assert len(done["metrics"]["significance"]["component"]) == 2
    assert client.get(f"/api/components/{job['id']}/maps").json()["figure"]["data"]
