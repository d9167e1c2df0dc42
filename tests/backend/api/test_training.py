"""Training runs with the order losses (SCIENCE.md §5, seed 000) through the API."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from tests.backend.conftest import wait_for


def digits_id(client: TestClient) -> str:
    sets = client.get("/api/datasets").json()["data"]
    return next(d["id"] for d in sets if d["builtin"] and d["labelled"])


def train(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/training-runs", json={"dataset_id": digits_id(client), **body})
    assert response.status_code == 201, response.text
    return wait_for(
        client, f"/api/training-runs/{response.json()['id']}",
        lambda r: r["status"] in ("done", "failed", "cancelled"), timeout=300,
    )  # fmt: skip


SMALL = {"epochs": 2, "max_train": 96, "batch_size": 32, "grid": "2x2"}


def test_a_run_trains_keeps_checkpoints_and_measures_its_model(client: TestClient) -> None:
    run = train(
        client, name="small high", preset="encourage high", checkpoint_every=1,
        attack={"eps": [0.05, 0.2], "steps": 3}, evaluate={"grid": "2x2", "images": 2},
        **SMALL,
    )  # fmt: skip
    assert run["status"] == "done", run["error"]
    assert [r["epoch"] for r in run["history"]] == [1, 2]
    assert run["progress_done"] == run["progress_total"] == 2 * 3 + 2
    m = run["metrics"]
    # the preset's terms were used, and the order loss cost its forward passes: per batch
    # B + 2·B per active term (the last batch of 96 images in 32s is full)
    terms = [t for t in (m["order_terms"]["plus"], m["order_terms"]["minus"]) if t]
    assert terms and all(h["loss_plus"] is not None for h in run["history"])
    assert m["passes"] == 2 * 96 * (1 + 2 * len(terms))
    adv = m["adversarial"]
    assert set(adv) == {"0.05", "0.2"} and adv["0.2"] <= adv["0.05"] <= m["test_accuracy"] + 1e-9
    # checkpoints: a model series of the run, one model per epoch, validated
    series = next(s for s in client.get("/api/model-series").json()["data"]
                  if s["name"] == run["series"])  # fmt: skip
    assert series["steps"] == [1, 2]
    for model_id in series["model_ids"]:
        model = wait_for(client, f"/api/models/{model_id}", lambda x: x["status"] != "pending"
                         and x["status"] != "validating")  # fmt: skip
        assert model["status"] == "ready", model["error"]
    # the final model is an ordinary ready model with the last checkpoint's weights
    final = client.get(f"/api/models/{run['model_id']}").json()
    assert final["status"] == "ready" and final["architecture"] == "digit_cnn"
    assert final["series"] is None and final["labels"] == [str(d) for d in range(10)]
    # both downloads hold that model: ONNX gives the safetensors weights' logits
    assert "safetensors_key" not in m and "onnx_key" not in m  # no blob keys in the API
    weights = client.get(f"/api/training-runs/{run['id']}/model.safetensors")
    onnx = client.get(f"/api/training-runs/{run['id']}/model.onnx")
    assert weights.status_code == onnx.status_code == 200
    assert "attachment" in onnx.headers["content-disposition"]
    check_downloads(weights.content, onnx.content)
    # and its exact analysis ran on the first test images
    analysis = wait_for(client, f"/api/analyses/{run['evaluation_id']}",
                        lambda a: a["status"] in ("done", "failed"))  # fmt: skip
    assert analysis["status"] == "done", analysis["error"]
    assert analysis["model_id"] == run["model_id"] and len(analysis["items"]) == 2
    assert analysis["n_players"] == 4 and len(analysis["summary"]["J"]) == 3


def check_downloads(weights: bytes, onnx: bytes) -> None:
    import onnxruntime
    import safetensors.torch

    from conceptlens.models.architectures import ARCHITECTURES

    model = ARCHITECTURES["digit_cnn"].build()
    model.load_state_dict(safetensors.torch.load(weights))
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    session = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": x.numpy()})[0]
    assert got == pytest.approx(expected, abs=1e-4)


def test_the_same_seed_gives_the_same_weights(client: TestClient) -> None:
    import safetensors.torch

    from backend.config import get_settings
    from backend.db.models import ModelRecord
    from backend.db.session import session_scope
    from backend.storage import LocalBlobStore

    runs = [train(client, preset="encourage low", evaluate=None, attack={"eps": [0.1]},
                  **SMALL) for _ in range(2)]  # fmt: skip
    assert [r["status"] for r in runs] == ["done", "done"]
    assert runs[0]["history"][-1]["loss"] == runs[1]["history"][-1]["loss"]
    store = LocalBlobStore(get_settings().blobs)
    weights = []
    for r in runs:
        with session_scope() as s:
            key = s.get_one(ModelRecord, r["model_id"]).blob_key
        weights.append(safetensors.torch.load(store.get(key)))
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


def test_an_experiment_runs_one_run_per_preset(client: TestClient) -> None:
    response = client.post(
        "/api/training-runs/experiment",
        json={"dataset_id": digits_id(client), "presets": ["normal", "encourage middle"],
              "evaluate": None, "attack": {"eps": [0.1], "steps": 2}, **SMALL},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    runs = response.json()["data"]
    assert [r["params"]["preset"] for r in runs] == ["normal", "encourage middle"]
    experiment = runs[0]["experiment"]
    assert experiment and all(r["experiment"] == experiment for r in runs)
    for r in runs:
        done = wait_for(client, f"/api/training-runs/{r['id']}",
                        lambda x: x["status"] in ("done", "failed"), timeout=300)  # fmt: skip
        assert done["status"] == "done", done["error"]
    assert [r["name"] for r in runs] == ["normal", "encourage middle"]
    listed = client.get(f"/api/training-runs?experiment={experiment}").json()
    assert listed["count"] == 2
    normal = next(r for r in listed["data"] if r["params"]["preset"] == "normal")
    # a normal run has no order terms and spends one forward pass per image
    assert normal["metrics"]["order_terms"] == {}
    assert normal["metrics"]["passes"] == 2 * 96
    assert all(h["loss_plus"] is None for h in normal["history"])


def test_a_run_with_its_own_terms_is_called_custom(client: TestClient) -> None:
    body = {"dataset_id": digits_id(client), "plus": {"weight": 0.1, "r1": 0.5, "r2": 1},
            "epochs": 1, "max_train": 12, "evaluate": None, "grid": "2x2"}  # fmt: skip
    response = client.post("/api/training-runs", json=body)
    assert response.status_code == 201 and response.json()["name"] == "custom"
    client.post(f"/api/training-runs/{response.json()['id']}/cancel")


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"epochs": 100000}, 422, "epochs must be at most"),
        ({"grid": "40x40"}, 400, "does not fit"),
        ({"plus": {"weight": 1, "r1": 0.6, "r2": 0.2}}, 422, "r2 must be above r1"),
        ({"evaluate": {"grid": "5x5"}}, 400, "at most 20 patches"),
        ({"evaluate": {"grid": "2x2x2"}}, 422, "grid must look like 4x4"),  # was a 500
        ({"dataset_id": "nope"}, 404, "No such image set"),
    ],
)
def test_refusals_say_what_is_wrong(
    client: TestClient, body: dict[str, Any], status: int, words: str
) -> None:
    before = client.get("/api/training-runs").json()["count"]
    response = client.post("/api/training-runs", json={"dataset_id": digits_id(client), **body})
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words in (detail if isinstance(detail, str) else str(detail))
    assert client.get("/api/training-runs").json()["count"] == before  # nothing stored


def test_cancel_stops_a_run_and_retry_trains_it_again(client: TestClient) -> None:
    response = client.post(
        "/api/training-runs",
        json={"dataset_id": digits_id(client), "epochs": 40, "grid": "2x2", "evaluate": None,
              "preset": "encourage middle", "attack": {"eps": [0.1], "steps": 1}},
    )  # fmt: skip
    run_id = response.json()["id"]
    wait_for(client, f"/api/training-runs/{run_id}", lambda r: r["progress_done"] > 0)
    cancelled = client.post(f"/api/training-runs/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/api/training-runs/{run_id}/cancel").status_code == 409
    # the worker stops at its next batch: no final model ever appears
    again = client.post(f"/api/training-runs/{run_id}/retry")
    assert again.status_code == 200 and again.json()["status"] == "queued"
    wait_for(client, f"/api/training-runs/{run_id}", lambda r: r["status"] == "running")
    client.post(f"/api/training-runs/{run_id}/cancel")
    final = client.get(f"/api/training-runs/{run_id}").json()
    assert final["status"] == "cancelled" and final["model_id"] is None
    refused = client.get(f"/api/training-runs/{run_id}/model.onnx")
    assert refused.status_code == 409 and "no trained model" in refused.json()["detail"]
    assert client.delete(f"/api/training-runs/{run_id}").status_code == 204
    assert client.get(f"/api/training-runs/{run_id}").status_code == 404


def test_an_experiment_with_a_long_name_cuts_its_runs_names(client: TestClient) -> None:
    """Found by schemathesis: a 200-character name plus " · normal" broke the name limit;
    and the series, checkpoints and final model add up to 23 characters more (review)."""
    response = client.post(
        "/api/training-runs/experiment",
        json={"dataset_id": digits_id(client), "name": "x" * 200, "epochs": 1, "max_train": 12,
              "evaluate": None, "attack": {"eps": [0.1], "steps": 1}, "grid": "2x2",
              "presets": ["normal", "encourage high"]},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    names = [r["name"] for r in response.json()["data"]]
    assert names == ["x" * 150 + " · normal", "x" * 150 + " · encourage high"]
    for r in response.json()["data"]:
        client.post(f"/api/training-runs/{r['id']}/cancel")


def test_a_resnet_trains_on_an_uploaded_colour_set(client: TestClient) -> None:
    """The 3-channel path: an uploaded labelled zip of RGB images (resized to 32×32), the
    small ResNet-style CNN, the ONNX export, and the split one image in six held out."""
    import io

    from PIL import Image

    from tests.backend.api.test_datasets import make_zip, upload

    rng = torch.Generator().manual_seed(0)
    files = {}
    for k in range(18):
        cls = k % 2  # red-ish against blue-ish squares, 20×20 (resized by the worker)
        pixels = (torch.rand(20, 20, 3, generator=rng) * 80).to(torch.uint8)
        pixels[..., 0 if cls == 0 else 2] += 150
        buf = io.BytesIO()
        Image.fromarray(pixels.numpy()).save(buf, format="PNG")
        files[f"{'red' if cls == 0 else 'blue'}/{k}.png"] = buf.getvalue()
    dataset = upload(client, make_zip(files), name="colours").json()
    response = client.post(
        "/api/training-runs",
        json={"dataset_id": dataset["id"], "architecture": "small_resnet", "epochs": 2,
              "batch_size": 8, "preset": "encourage high", "attack": {"eps": [0.1], "steps": 2},
              "evaluate": {"grid": "2x2", "images": 2}},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert (response.json()["params"]["n_train"], response.json()["params"]["n_test"]) == (15, 3)
    run = wait_for(client, f"/api/training-runs/{response.json()['id']}",
                   lambda r: r["status"] in ("done", "failed"), timeout=300)  # fmt: skip
    assert run["status"] == "done", run["error"]
    final = client.get(f"/api/models/{run['model_id']}").json()
    assert final["architecture"] == "small_resnet" and final["input_shape"] == [3, 32, 32]
    assert final["labels"][:2] == ["blue", "red"] and len(final["labels"]) == 10
    onnx = client.get(f"/api/training-runs/{run['id']}/model.onnx")
    assert onnx.status_code == 200
    analysis = wait_for(client, f"/api/analyses/{run['evaluation_id']}",
                        lambda a: a["status"] in ("done", "failed"))  # fmt: skip
    assert analysis["status"] == "done", analysis["error"]
    # the evaluation's images are the held-out ones: the first 3 in the set's order
    from backend.services.dataset_images import order

    names = list(files)
    held = {f"colours/{names[k]}" for k in order(names)[:3]}
    evaluated = {
        client.get(f"/api/images/{i['image_id']}").json()["name"] for i in analysis["items"]
    }
    assert evaluated <= held, (evaluated, held)
    too_many = client.post(
        "/api/training-runs",
        json={"dataset_id": dataset["id"], "architecture": "small_resnet", "epochs": 1,
              "evaluate": {"grid": "2x2", "images": 4}},
    )  # fmt: skip
    assert too_many.status_code == 400 and "held-out images only" in too_many.json()["detail"]


def test_a_diverging_run_fails_with_a_sentence(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """L+ has no lower bound: with a large λ or learning rate the loss runs to infinity. The
    run fails saying so instead of storing NaN, which made every read of it a 500 (review)."""
    from conceptlens import training
    from conceptlens.models.architectures import ARCHITECTURES
    from worker import training_job

    def diverging(config: Any, *args: Any, on_epoch: Any = None, **kwargs: Any) -> Any:
        model = ARCHITECTURES[config.architecture].build()
        record = training.EpochRecord(
            epoch=1, loss=float("-inf"), loss_cls=2.0, loss_plus=float("-inf"), loss_minus=None,
            train_accuracy=0.1, test_accuracy=0.1, seconds=0.1, passes=10,
        )  # fmt: skip
        on_epoch(record, model)
        return model, [record]

    monkeypatch.setattr(training_job, "train_model", diverging)
    run = train(client, preset="encourage high", evaluate=None, **SMALL)
    assert run["status"] == "failed" and "training diverged at epoch 1" in run["error"]
    assert client.get("/api/training-runs").status_code == 200


def test_a_run_retried_after_it_stored_its_model_keeps_one_model(client: TestClient) -> None:
    """A worker killed after the final model was stored but before the run was marked done:
    the retry finds the same weights and uses that model and its analysis (review)."""
    from sqlalchemy import update

    from backend.db.models import TrainingRun
    from backend.db.session import session_scope

    run = train(client, preset="normal", evaluate={"grid": "2x2", "images": 1}, **SMALL)
    assert run["status"] == "done", run["error"]
    with session_scope() as s:  # as the sweep leaves a run whose worker died at the end
        s.execute(update(TrainingRun).where(TrainingRun.id == run["id"]).values(status="failed"))
    assert client.post(f"/api/training-runs/{run['id']}/retry").status_code == 200
    again = wait_for(client, f"/api/training-runs/{run['id']}",
                     lambda r: r["status"] in ("done", "failed"), timeout=300)  # fmt: skip
    assert again["status"] == "done", again["error"]
    assert (again["model_id"], again["evaluation_id"]) == (run["model_id"], run["evaluation_id"])
    trained = [m for m in client.get("/api/models").json()["data"]
               if m["name"] == f"{run['name']} (trained)"]  # fmt: skip
    assert len(trained) == 1
