"""Knowledge-consistency jobs through the API on the embedded default (SCIENCE.md §8)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.backend.api.test_components import ended, ids
from tests.backend.conftest import wait_for


def small_job(known: dict[str, str], **change: Any) -> dict[str, Any]:
    """Seed 0 against seed 1 at relu2, on few images and epochs (seconds)."""
    body = {
        "model_id": known["seed0"], "compare_model_id": known["seed1"],
        "dataset_id": known["digits"], "layer": "relu2", "compare_layer": "relu2",
        "epochs": 2, "width": 4, "max_samples": 60,
    }  # fmt: skip
    return {**body, **change}


def test_job_reports_both_directions_exports_and_shares(
    client: TestClient, other_client: TestClient, app: Any
) -> None:
    known = ids(client)
    created = client.post("/api/consistency", json=small_job(known))
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["kind"] == "consistency" and job["compare_layer"] == "relu2"
    assert job["progress_total"] == 2 * (1 + 2 * 2)  # directions × (linear + 2 orders × epochs)
    url = f"/api/components/{job['id']}"
    done = wait_for(client, url, ended, timeout=300)
    assert done["status"] == "done", done["error"]
    assert done["progress_done"] == done["progress_total"]
    metrics = done["metrics"]
    assert metrics["orders"] == [0, 1, 2] and metrics["n_test"] == 10
    for direction in ("a_from_b", "b_from_a"):
        for split in ("train", "test"):
            v = metrics[direction][split]
            assert len(v["consistent"]) == 3 and v["feature"] > 0
            assert v["inconsistent"] >= 0
        assert metrics[direction]["feature_shape"] == [32, 8, 8]

    # listed under /consistency only, not among the component analyses
    assert [j["id"] for j in client.get("/api/consistency").json()["data"]] == [job["id"]]
    assert job["id"] not in [j["id"] for j in client.get("/api/components").json()["data"]]
    assert other_client.get(url).status_code == 404

    figs = client.get(f"{url}/figures").json()
    assert set(figs) == {"parts", "cumulative"}
    a_from_b = figs["parts"]["data"][0]
    assert a_from_b["name"] == "A from B" and len(a_from_b["x"]) == 4  # k = 0, 1, 2, rest
    assert client.get(f"{url}/maps").status_code == 409

    exported = json.loads(client.get(f"{url}/export.json").content)
    assert exported["kind"] == "consistency" and exported["a_from_b"] == metrics["a_from_b"]
    rows = list(csv.DictReader(io.StringIO(client.get(f"{url}/export.csv").text)))
    assert len(rows) == 2 * 2 * 5  # directions × splits × (3 orders, rest, feature)
    feature = next(r for r in rows if r["direction"] == "a_from_b" and r["split"] == "test"
                   and r["part"] == "feature")  # fmt: skip
    assert float(feature["variance"]) == pytest.approx(metrics["a_from_b"]["test"]["feature"])
    npz = np.load(io.BytesIO(client.get(f"{url}/export.npz").content))
    assert npz["a_from_b_test"].shape == (1 + 3 + 1, 32)  # f, x^(0..2), ε per channel
    assert client.get(f"{url}/export.xml").status_code == 404

    share = client.post(f"{url}/shares").json()
    anonymous = TestClient(app)  # no cookie, no header
    base = f"/api/shared-components/{share['token']}"
    assert anonymous.get(base).json()["kind"] == "consistency"
    assert set(anonymous.get(f"{base}/figures").json()) == {"parts", "cumulative"}
    assert anonymous.get(f"{base}/export.csv").status_code == 200

    again = client.post("/api/consistency", json=small_job(known)).json()  # identical
    reused = wait_for(client, f"/api/components/{again['id']}", ended)
    assert reused["metrics"]["cached"] is True
    assert reused["metrics"]["a_from_b"] == metrics["a_from_b"]


def test_cancel_and_retry(client: TestClient) -> None:
    body = small_job(ids(client), epochs=400, max_samples=40, seed=3)
    job = client.post("/api/consistency", json=body).json()
    url = f"/api/components/{job['id']}"
    wait_for(client, url, lambda j: j["progress_done"] > 1 or ended(j), timeout=120)
    assert client.post(f"{url}/cancel").status_code == 200
    stopped = wait_for(client, url, ended)
    assert stopped["status"] == "cancelled" and stopped["metrics"] is None
    assert client.get(f"{url}/export.json").status_code == 409
    assert client.post(f"{url}/retry").json()["status"] == "queued"
    assert client.post(f"{url}/cancel").status_code == 200  # and end it for good


@pytest.mark.parametrize(
    "change,status,words",
    [
        ({"layer": "nope"}, 400, "Model A"),
        ({"compare_layer": "nope"}, 400, "Model B"),
        ({"compare_model_id": "onnx", "compare_layer": "relu2"}, 400, "has no layer"),
        ({"dataset_id": "missing"}, 404, "image set"),
        ({"epochs": 0}, 422, "epochs"),
        ({"width": 10_000}, 422, "width must be at most"),
    ],
)
def test_bad_requests(client: TestClient, change: dict[str, Any], status: int, words: str) -> None:
    known = ids(client)
    body = small_job(known)
    for key, value in change.items():
        body[key] = known.get(value, value) if isinstance(value, str) else value
    response = client.post("/api/consistency", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
