"""Component analysis jobs through the API on the embedded default (SCIENCE.md §7)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import wait_for


def ids(client: TestClient) -> dict[str, str]:
    models = {m["name"]: m["id"] for m in client.get("/api/models").json()["data"]}
    digits = next(d["id"] for d in client.get("/api/datasets").json()["data"] if d["builtin"])
    return {
        "seed0": models["Demo digits CNN (PyTorch weights, seed 0)"],
        "seed1": models["Demo digits CNN (PyTorch weights, seed 1)"],
        "onnx": models["Demo digits CNN"],
        "digits": digits,
    }


def ended(job: dict[str, Any]) -> bool:
    return job["status"] in ("done", "failed", "cancelled")


def test_job_runs_and_reports_every_metric(client: TestClient, other_client: TestClient) -> None:
    known = ids(client)
    body = {
        "model_id": known["seed0"], "compare_model_id": known["seed1"],
        "dataset_id": known["digits"], "layer": "relu2", "orders": [0, 1], "epochs": 2,
        "width": 8, "max_samples": 120,
    }  # fmt: skip
    created = client.post("/api/components", json=body)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["progress_total"] == 2 * 2 * 2  # (model + exemplar) × orders × epochs
    done = wait_for(client, f"/api/components/{job['id']}", ended, timeout=300)
    assert done["status"] == "done", done["error"]
    metrics = done["metrics"]
    assert metrics["orders"] == [0, 1] and metrics["n_test"] == 20
    assert len(metrics["significance"]["component"]) == 2
    assert metrics["reliability"] is not None and metrics["effects"] is not None
    maps = client.get(f"/api/components/{job['id']}/maps", params={"index": 1}).json()
    assert len(maps["components"]) == 2 and len(maps["image"]) == 16
    assert len(maps["figure"]["data"]) == 1 + 1 + 2 + 1  # image, f, c^(0), c^(1), residual
    figs = client.get(f"/api/components/{job['id']}/figures").json()
    assert set(figs) == {"significance", "reliability", "effects"}
    assert figs["significance"]["data"][0]["y"] == pytest.approx(
        metrics["significance"]["component"]
    )
    compared = client.get(
        "/api/components/compare/significance", params={"ids": f"{job['id']},{job['id']}"}
    )
    assert len(compared.json()["data"]) == 2
    assert other_client.get(f"/api/components/{job['id']}").status_code == 404
    again = client.post("/api/components", json=body).json()  # identical: no training
    reused = wait_for(client, f"/api/components/{again['id']}", ended)
    assert reused["status"] == "done" and reused["metrics"]["cached"] is True
    assert reused["metrics"]["significance"] == metrics["significance"]


@pytest.mark.parametrize(
    "change,status,words",
    [
        ({"layer": "nope"}, 400, "no layer"),
        ({"model_id": "onnx"}, 400, "ONNX"),
        ({"dataset_id": "missing"}, 404, "image set"),
        ({"orders": []}, 422, "orders"),
    ],
)
def test_bad_requests(client: TestClient, change: dict[str, Any], status: int, words: str) -> None:
    known = ids(client)
    body = {"model_id": known["seed0"], "dataset_id": known["digits"], "layer": "relu2"}
    for key, value in change.items():
        body[key] = known.get(value, value) if isinstance(value, str) else value
    response = client.post("/api/components", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
