"""Component analysis jobs through the API on the embedded default (SCIENCE.md §7)."""

from __future__ import annotations

from typing import Any

import numpy as np
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


def small_job(known: dict[str, str]) -> dict[str, Any]:
    """A two-order, two-epoch job of the seed-0 demo CNN against seed 1 (seconds to train)."""
    return {
        "model_id": known["seed0"], "compare_model_id": known["seed1"],
        "dataset_id": known["digits"], "layer": "relu2", "orders": [0, 1], "epochs": 2,
        "width": 8, "max_samples": 120,
    }  # fmt: skip


def test_job_runs_and_reports_every_metric(client: TestClient, other_client: TestClient) -> None:
    known = ids(client)
    body = small_job(known)
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
    assert maps["channel"] == maps["most_activated"] and maps["channels"] == 32  # relu2: 32×8×8
    rebuilt = np.sum(maps["components"], axis=0) + np.array(maps["residual"])
    assert np.allclose(rebuilt, maps["feature"], atol=1e-4)  # f = Σ_l c^(l) + Δf
    picked = client.get(
        f"/api/components/{job['id']}/maps", params={"index": 1, "channel": 5}
    ).json()
    assert picked["channel"] == 5 and picked["feature"] != maps["feature"]
    wrong = client.get(f"/api/components/{job['id']}/maps", params={"index": 1, "channel": 32})
    assert wrong.status_code == 400 and "channels are 0–31" in wrong.json()["detail"]
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


def test_share_links_open_a_component_analysis_read_only(
    client: TestClient, other_client: TestClient, app: Any
) -> None:
    job = client.post("/api/components", json=small_job(ids(client))).json()
    done = wait_for(client, f"/api/components/{job['id']}", ended, timeout=300)
    assert done["status"] == "done", done["error"]
    assert done["model_name"] == "Demo digits CNN (PyTorch weights, seed 0)"
    assert other_client.post(f"/api/components/{job['id']}/shares").status_code == 404

    share = client.post(f"/api/components/{job['id']}/shares").json()
    assert share["component_job_id"] == job["id"] and share["analysis_id"] is None
    assert "/s/c/" in share["url"] and len(share["token"]) >= 43
    anonymous = TestClient(app)  # no cookie, no header
    base = f"/api/shared-components/{share['token']}"
    opened = anonymous.get(base).json()
    assert opened["id"] == job["id"] and opened["metrics"] == done["metrics"]
    assert anonymous.get(f"{base}/figures").json().keys() == {
        "significance",
        "reliability",
        "effects",
    }
    assert len(anonymous.get(f"{base}/maps", params={"index": 2}).json()["components"]) == 2
    page = anonymous.get(share["url"].replace("http://testserver", ""))
    assert page.status_code == 200 and "shared" in page.text
    # the token opens this job only: not the owner's routes, not the analysis routes
    assert anonymous.get(f"/api/components/{job['id']}").status_code == 401
    assert anonymous.post(f"{base}/cancel").status_code in (404, 405)
    assert "component analysis" in anonymous.get(f"/api/shared/{share['token']}").json()["detail"]
    analysis_link = client.post(f"/api/analyses/{analysis_id(client)}/shares").json()
    wrong_kind = anonymous.get(f"/api/shared-components/{analysis_link['token']}")
    assert wrong_kind.status_code == 404 and "not a component" in wrong_kind.json()["detail"]
    listed = client.get(f"/api/components/{job['id']}/shares").json()["data"]
    assert [s["id"] for s in listed] == [share["id"]]

    assert other_client.delete(f"/api/shares/{share['id']}").status_code == 404
    assert client.delete(f"/api/shares/{share['id']}").status_code == 204
    assert anonymous.get(base).status_code == 404
    assert anonymous.get(f"{base}/figures").status_code == 404
    assert client.get(f"/api/components/{job['id']}/shares").json()["data"][0]["revoked"]

    live = client.post(f"/api/components/{job['id']}/shares").json()
    assert anonymous.get(f"/api/shared-components/{live['token']}").status_code == 200
    assert client.delete(f"/api/components/{job['id']}").status_code == 204
    assert anonymous.get(f"/api/shared-components/{live['token']}").status_code == 404


def analysis_id(client: TestClient) -> str:
    """A small finished analysis of the demo ONNX model (2×2 grid) in the client's workspace."""
    known = ids(client)
    image = next(i["id"] for i in client.get("/api/images").json()["data"] if i["builtin"])
    body = {"model_id": known["onnx"], "image_ids": [image], "grid": "2x2"}
    created = client.post("/api/analyses", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_cancel_stops_between_epochs_and_retry_runs_again(client: TestClient) -> None:
    known = ids(client)
    body = {
        "model_id": known["seed0"], "dataset_id": known["digits"], "layer": "conv1",
        "orders": [0], "epochs": 400, "width": 4, "max_samples": 60, "seed": 7,
    }  # fmt: skip
    job = client.post("/api/components", json=body).json()
    url = f"/api/components/{job['id']}"
    running = wait_for(client, url, lambda j: j["progress_done"] > 0 or ended(j), timeout=120)
    assert running["status"] == "running" and running["eta_seconds"] >= 0
    assert client.post(f"{url}/cancel").status_code == 200
    stopped = wait_for(client, url, ended)
    assert stopped["status"] == "cancelled", stopped["error"]
    assert 0 < stopped["progress_done"] < 400 and stopped["metrics"] is None
    assert client.post(f"{url}/cancel").status_code == 409  # already ended
    assert client.get(f"{url}/figures").status_code == 409

    assert client.post(f"{url}/retry").json()["status"] == "queued"
    again = wait_for(client, url, ended, timeout=300)
    assert again["status"] == "done" and again["progress_done"] == 400
    assert client.post(f"{url}/retry").status_code == 409  # only failed or cancelled


def test_a_flat_layer_has_metrics_but_no_maps(client: TestClient) -> None:
    body = {**small_job(ids(client)), "layer": "fc1", "compare_model_id": None}
    job = client.post("/api/components", json=body).json()
    done = wait_for(client, f"/api/components/{job['id']}", ended, timeout=300)
    assert done["status"] == "done", done["error"]
    assert "flat" in done["metrics"]["notes"]["maps"] and done["metrics"]["effects"] is not None
    maps = client.get(f"/api/components/{job['id']}/maps")
    assert maps.status_code == 400 and "no spatial maps" in maps.json()["detail"]


def test_a_large_layer_keeps_one_channel_per_image(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import worker.components_job

    monkeypatch.setattr(worker.components_job, "MAX_MAP_VALUES", 1)
    body = {**small_job(ids(client)), "compare_model_id": None, "seed": 11}
    job = client.post("/api/components", json=body).json()
    done = wait_for(client, f"/api/components/{job['id']}", ended, timeout=300)
    assert done["status"] == "done", done["error"]
    url = f"/api/components/{job['id']}/maps"
    maps = client.get(url, params={"index": 3}).json()
    assert maps["channels"] == 1 and maps["channel"] == maps["most_activated"]
    rebuilt = np.sum(maps["components"], axis=0) + np.array(maps["residual"])
    assert np.allclose(rebuilt, maps["feature"], atol=1e-4)
    other = (maps["channel"] + 1) % 32
    refused = client.get(url, params={"index": 3, "channel": other})
    assert refused.status_code == 400 and "only its most activated" in refused.json()["detail"]


def test_an_onnx_model_is_cut_at_a_node_output(client: TestClient) -> None:
    known = ids(client)
    onnx = client.get(f"/api/models/{known['onnx']}").json()
    layer = "/relu2/Relu_output_0"
    assert layer in onnx["layers"] and "relu2" not in onnx["layers"]
    assert onnx["layer_shapes"][layer] == [32, 8, 8]
    seed0 = client.get(f"/api/models/{known['seed0']}").json()
    assert seed0["layer_shapes"]["relu2"] == [32, 8, 8] and seed0["layer_shapes"]["fc2"] == [10]
    body = {**small_job(known), "model_id": known["onnx"], "compare_model_id": None}
    job = client.post("/api/components", json={**body, "layer": layer}).json()
    done = wait_for(client, f"/api/components/{job['id']}", ended, timeout=300)
    assert done["status"] == "done", done["error"]
    effects = done["metrics"]["effects"]  # the graph after the node runs as the tail
    assert effects is not None and len(effects["shapley_train"]) == 3  # l=0, l=1, residual
    maps = client.get(f"/api/components/{job['id']}/maps").json()
    assert maps["channels"] == 32


@pytest.mark.parametrize(
    "change,status,words",
    [
        ({"layer": "nope"}, 400, "no layer"),
        ({"compare_model_id": "onnx"}, 400, "has no layer 'relu2'"),  # ONNX names its tensors
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


def test_over_fitting_is_measured_on_the_models_own_training_images(client: TestClient) -> None:
    """The 200-sample demo records its training images: a job with room for 500 "training"
    images uses those 200 (it used to fill up with 300 the model never saw), and says so."""
    models = {m["name"]: m for m in client.get("/api/models").json()["data"]}
    small = models["Demo digits CNN (PyTorch weights, 200 training samples)"]
    assert small["train_samples"] == 200
    body = {**small_job(ids(client)), "model_id": small["id"], "compare_model_id": None,
            "max_samples": 600, "orders": [0], "epochs": 1}  # fmt: skip
    created = client.post("/api/components", json=body)
    assert created.status_code == 201, created.text
    job = wait_for(client, f"/api/components/{created.json()['id']}", ended, timeout=240)
    assert job["status"] == "done", job["error"]
    assert job["metrics"]["train_split"] == "the first 200 of the model's own 200 training images"
    assert job["metrics"]["n_train"] == 200  # the images themselves, not only the sentence
    seed0 = ids(client)["seed0"]
    other = client.post("/api/components", json={**body, "model_id": seed0}).json()
    done = wait_for(client, f"/api/components/{other['id']}", ended, timeout=240)
    assert done["metrics"]["train_split"].startswith("the first 500 of the model's own 1500")
    assert done["metrics"]["n_train"] == 500
