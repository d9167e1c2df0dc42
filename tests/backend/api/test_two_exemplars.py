"""A component job with two exemplary models (seed 001), and the paper's estimator."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.backend.api.test_components import ended, ids
from tests.backend.conftest import wait_for

SMALL = "Demo digits CNN (PyTorch weights, 200 training samples)"


def job(client: TestClient, **body: Any) -> dict[str, Any]:
    known = ids(client)
    full = {"model_id": known["seed0"], "dataset_id": known["digits"], "layer": "relu2",
            "orders": [0, 1], "epochs": 2, "width": 8, "max_samples": 120, **body}  # fmt: skip
    created = client.post("/api/components", json=full)
    assert created.status_code == 201, created.text
    done = wait_for(client, f"/api/components/{created.json()['id']}", ended, timeout=240)
    assert done["status"] == "done", done["error"]
    return done


def test_the_model_itself_twice_is_fully_reliable(client: TestClient) -> None:
    seed0 = ids(client)["seed0"]
    done = job(client, compare_model_ids=[seed0, seed0])
    assert done["compare_model_ids"] == [seed0, seed0]
    assert done["compare_model_id"] == seed0  # older clients read the first
    metrics = done["metrics"]
    assert metrics["reliability_estimator"] == "cycle"
    assert metrics["reliability"]["cumulative"] == pytest.approx([1.0, 1.0], abs=1e-3)
    assert len(metrics["reliability_head_r2"][0]) == 3


def test_two_other_models_and_both_estimators(client: TestClient) -> None:
    models = {m["name"]: m["id"] for m in client.get("/api/models").json()["data"]}
    pair = [ids(client)["seed1"], models[SMALL]]
    cycle = job(client, compare_model_ids=pair)
    preview = job(client, compare_model_ids=pair, reliability="preview")
    assert cycle["compare_model_names"] == ["Demo digits CNN (PyTorch weights, seed 1)", SMALL]
    assert cycle["progress_total"] == 2 * 2 * 2  # the model's training, one multi-head
    assert preview["progress_total"] == 3 * 2 * 2  # one per model
    for done, name in ((cycle, "cycle"), (preview, "preview")):
        assert done["metrics"]["reliability_estimator"] == name
        assert all(0 <= r <= 1 + 1e-6 for r in done["metrics"]["reliability"]["cumulative"])


def test_one_exemplar_the_old_way_still_works(client: TestClient) -> None:
    known = ids(client)
    done = job(client, compare_model_id=known["seed1"], orders=[0], epochs=1)
    assert done["compare_model_ids"] == [known["seed1"]]
    assert done["metrics"]["reliability_estimator"] == "cycle"


@pytest.mark.parametrize(
    "change,status,words",
    [
        ({"compare_model_ids": ["seed1"] * 3}, 422, "compare_model_ids must have at most 2"),
        ({"compare_model_ids": ["seed1"], "compare_model_id": "onnx"}, 400, "only"),
        ({"compare_model_ids": ["seed1", "onnx"]}, 400, "Exemplary model 2 has no layer"),
        ({"compare_model_ids": ["seed1"], "reliability": "magic"}, 422, "reliability must be"),
    ],
)
def test_refusals(client: TestClient, change: dict[str, Any], status: int, words: str) -> None:
    known = ids(client)
    body: dict[str, Any] = {"model_id": known["seed0"], "dataset_id": known["digits"],
                            "layer": "relu2"}  # fmt: skip
    for key, value in change.items():
        if isinstance(value, list):
            value = [known.get(v, v) for v in value]
        body[key] = known.get(value, value) if isinstance(value, str) else value
    response = client.post("/api/components", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"], response.json()["detail"]
