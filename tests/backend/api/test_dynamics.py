"""Model series and learning dynamics (SCIENCE.md §6) through the API."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.backend.api.test_analyses import create, run
from tests.backend.conftest import sample_image_id, wait_for


def upload_series(client: TestClient, name: str, blobs: list[bytes], steps: list[int],
                  filename: str = "m.onnx", **form: Any) -> dict[str, Any]:  # fmt: skip
    files = [("files", (filename, data)) for data in blobs]
    data = {"name": name, "steps": ",".join(map(str, steps)), **form}
    response = client.post("/api/model-series", files=files, data=data)
    assert response.status_code == 201, response.text
    series = response.json()
    for model_id in series["model_ids"]:
        model = wait_for(client, f"/api/models/{model_id}",
                         lambda m: m["status"] in ("ready", "failed"))  # fmt: skip
        assert model["status"] == "ready", model["error"]
    return series


def test_a_series_of_the_same_model_is_similar_at_every_order(
    client: TestClient, service: dict[str, Any]
) -> None:
    from tests.backend.conftest import demo_files

    onnx = demo_files(service["data"] / "series-demo")["onnx"].read_bytes()
    series = upload_series(client, "same thrice", [onnx] * 3, [0, 10, 20])
    assert series["steps"] == [0, 10, 20]
    listed = client.get("/api/model-series").json()["data"]
    assert any(s["name"] == "same thrice" and s["statuses"] == ["ready"] * 3 for s in listed)
    images = [sample_image_id(client, "1"), sample_image_id(client, "2")]
    body = {"series": "same thrice", "image_ids": images, "grid": "3x3", "mode": "dynamics"}
    cost = client.post("/api/analyses/estimate", json=body).json()
    assert cost["inputs_per_image"] == 3 and cost["forward_passes"] == 2 * 3 * 512
    analysis = run(client, **body)
    assert analysis["status"] == "done", analysis["error"]
    assert analysis["model_id"] == series["model_ids"][-1] and len(analysis["items"]) == 6
    dyn = analysis["summary"]["dynamics"]
    assert dyn["steps"] == [0, 10, 20] and dyn["images"] == 2
    for row in dyn["similarity"]:
        assert all(v is None or v == pytest.approx(1.0) for v in row)
    assert dyn["overall"] == pytest.approx([1.0, 1.0, 1.0])
    assert all(sum(row[1:]) == pytest.approx(1.0) for row in dyn["strength"])
    # the checkpoints' tables are cached like any model's: a second run costs nothing
    assert create(client, **body).json()["forward_passes"] == 0


def test_checkpoints_of_a_training_run_converge_to_the_final_model(
    client: TestClient,
) -> None:
    from conceptlens.models.demo import safetensors_bytes, train_demo_model

    blobs = [safetensors_bytes(train_demo_model(seed=0, epochs=e)[0]) for e in (1, 4, 12)]
    upload_series(client, "training run", blobs, [1, 4, 12], filename="digits.safetensors")
    body = {"series": "training run", "image_ids": [sample_image_id(client, "3")],
            "grid": "2x3", "mode": "dynamics"}  # fmt: skip
    analysis = run(client, **body)
    assert analysis["status"] == "done", analysis["error"]
    dyn = analysis["summary"]["dynamics"]
    assert dyn["overall"][-1] == pytest.approx(1.0) and 0 <= dyn["overall"][0] < 1


def test_series_refusals(client: TestClient, service: dict[str, Any]) -> None:
    bad = client.post("/api/model-series", files=[("files", ("a.onnx", b"x"))],
                      data={"name": "one", "steps": "0"})  # fmt: skip
    assert bad.status_code == 400 and "2 to 50 checkpoints" in bad.json()["detail"]
    missing = create(client, series="nothing here", image_ids=[sample_image_id(client, "1")],
                     grid="2x2", mode="dynamics")  # fmt: skip
    assert missing.status_code == 404 and "No model series" in missing.json()["detail"]
    nothing = create(client, image_ids=[sample_image_id(client, "1")], grid="2x2")
    assert nothing.status_code == 400 and "Choose a model" in nothing.json()["detail"]


def test_the_built_in_training_series_is_offered(client: TestClient) -> None:
    from worker.builtins import DEMO_SERIES_EPOCHS, DEMO_SERIES_NAME

    listed = {s["name"]: s for s in client.get("/api/model-series").json()["data"]}
    series = listed[DEMO_SERIES_NAME]
    assert series["builtin"] and series["steps"] == list(DEMO_SERIES_EPOCHS)
    assert set(series["statuses"]) == {"ready"}


def test_a_series_larger_than_a_json_request_uploads(client: TestClient) -> None:
    """Eight checkpoints (1.2 MB together) pass: the series upload has its own body cap,
    not the 1 MiB of a JSON request (it answered 413)."""
    from conceptlens.models.demo import safetensors_bytes, train_demo_model

    data = safetensors_bytes(train_demo_model(seed=0, epochs=1)[0])
    assert 8 * len(data) > 2**20
    files = [("files", (f"c{k}.safetensors", data)) for k in range(8)]
    form = {"name": "eight", "steps": ",".join(map(str, range(8)))}
    response = client.post("/api/model-series", files=files, data=form)
    assert response.status_code == 201, response.text
    assert response.json()["steps"] == list(range(8))
