"""Organising runs (issue 13 §2): name, note and tags of analyses and component analyses,
the lists' filters, and delete (a running analysis is cancelled first, nothing is left)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.db.models import Analysis, AnalysisItem, Chunk, ShareLink
from backend.db.session import get_sessionmaker
from tests.backend.conftest import sample_image_id, wait_for


@pytest.fixture
def demo(service: dict[str, Any]) -> str:
    return str(service["demo_model_id"])


@pytest.fixture
def digits(client: TestClient) -> str:
    return str(next(d["id"] for d in client.get("/api/datasets").json()["data"] if d["builtin"]))


@pytest.fixture
def db() -> Iterator[Any]:
    with get_sessionmaker()() as session:
        yield session


def ended(a: dict[str, Any]) -> bool:
    return a["status"] in ("done", "failed", "cancelled")


def run(client: TestClient, **body: Any) -> dict[str, Any]:
    created = client.post("/api/analyses", json=body)
    assert created.status_code == 201, created.text
    return wait_for(client, f"/api/analyses/{created.json()['id']}", ended)


def ids(client: TestClient, path: str, **params: Any) -> set[str]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return {row["id"] for row in response.json()["data"]}


def test_name_note_tags_and_filters(client: TestClient, demo: str, digits: str) -> None:
    one = run(client, model_id=demo, image_ids=[sample_image_id(client, "1")], grid="2x2")
    two = run(client, model_id=demo, dataset_id=digits, dataset_k=2, grid="2x2")
    assert one["name"] is None and one["tags"] == [] and one["dataset_id"] is None
    assert two["dataset_id"] == digits and two["dataset_name"]

    path = f"/api/analyses/{one['id']}"
    body = {"name": "  zero baseline ", "note": "first try", "tags": ["Baseline", "paper", "paper"]}
    labelled = client.patch(path, json=body).json()
    assert (labelled["name"], labelled["note"]) == ("zero baseline", "first try")
    assert labelled["tags"] == ["Baseline", "paper"]
    # a field left out stays; null or blank clears
    assert client.patch(path, json={"note": None}).json()["name"] == "zero baseline"
    assert client.get(path).json()["note"] is None
    assert client.patch(path, json={"name": "  "}).json()["name"] is None

    assert ids(client, "/api/analyses", tag="baseline") == {one["id"]}  # case ignored
    assert ids(client, "/api/analyses", dataset_id=digits) == {two["id"]}
    assert ids(client, "/api/analyses", model_id=demo) == {one["id"], two["id"]}
    assert ids(client, "/api/analyses", mode="exact", tag="paper") == {one["id"]}
    assert ids(client, "/api/analyses", mode="sampled") == set()

    refused = client.patch(path, json={"tags": [""]})
    assert refused.status_code == 422 and "tags[0]" in refused.json()["detail"]
    refused = client.patch(path, json={"tags": ["x" * 41]})
    assert refused.status_code == 422 and "at most 40" in refused.json()["detail"]
    refused = client.patch(path, json={"colour": "red"})
    assert refused.status_code == 422 and "colour" in refused.json()["detail"]
    bad_mode = client.get("/api/analyses", params={"mode": "fast"})
    assert bad_mode.status_code == 422 and "mode" in bad_mode.json()["detail"]


def test_labels_and_filters_stay_in_their_workspace(
    client: TestClient, other_client: TestClient, demo: str
) -> None:
    mine = run(client, model_id=demo, image_ids=[sample_image_id(client, "2")], grid="2x2")
    assert client.patch(f"/api/analyses/{mine['id']}", json={"tags": ["mine"]}).status_code == 200
    stranger = other_client.patch(f"/api/analyses/{mine['id']}", json={"name": "stolen"})
    assert stranger.status_code == 404
    assert ids(other_client, "/api/analyses", tag="mine") == set()
    assert client.get(f"/api/analyses/{mine['id']}").json()["name"] is None


def test_component_analysis_labels_filters_and_delete(
    client: TestClient, other_client: TestClient, digits: str
) -> None:
    models = {m["name"]: m["id"] for m in client.get("/api/models").json()["data"]}
    model = models["Demo digits CNN (PyTorch weights, seed 0)"]
    body = {
        "model_id": model, "dataset_id": digits, "layer": "relu2", "orders": [0, 1],
        "epochs": 1, "width": 8, "max_samples": 40,
    }  # fmt: skip
    job = client.post("/api/components", json=body).json()
    path = f"/api/components/{job['id']}"
    labelled = client.patch(path, json={"name": "relu2 small", "tags": ["components"]})
    assert labelled.status_code == 200, labelled.text
    assert labelled.json()["name"] == "relu2 small" and labelled.json()["tags"] == ["components"]
    assert ids(client, "/api/components", tag="components") == {job["id"]}
    assert ids(client, "/api/components", model_id=model, dataset_id=digits) == {job["id"]}
    assert ids(client, "/api/components", dataset_id="0" * 32) == set()
    assert other_client.patch(path, json={"name": "x"}).status_code == 404
    assert other_client.delete(path).status_code == 404
    client.post(f"{path}/shares")
    # deleted whatever its state (queued, running or done): cancelled first, then gone
    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404
    assert ids(client, "/api/components") == set()


def test_deleting_a_running_analysis_cancels_it_and_leaves_nothing(
    client: TestClient, demo: str, db: Any
) -> None:
    # 20 players: 2^20 passes per image, far longer than the test takes to delete it
    body = {"model_id": demo, "image_ids": [sample_image_id(client, "5")], "grid": "4x5"}
    created = client.post("/api/analyses", json=body).json()
    aid = created["id"]
    client.post(f"/api/analyses/{aid}/shares")
    wait_for(client, f"/api/analyses/{aid}", lambda a: a["status"] == "running" or ended(a))
    assert client.delete(f"/api/analyses/{aid}").status_code == 204
    assert client.get(f"/api/analyses/{aid}").status_code == 404
    assert client.delete(f"/api/analyses/{aid}").status_code == 404
    item_ids = [item["id"] for item in created["items"]]
    count = {
        "analyses": select(func.count()).select_from(Analysis).where(Analysis.id == aid),
        "items": select(func.count())
        .select_from(AnalysisItem)
        .where(AnalysisItem.analysis_id == aid),
        "chunks": select(func.count()).select_from(Chunk).where(Chunk.item_id.in_(item_ids)),
        "shares": select(func.count()).select_from(ShareLink).where(ShareLink.analysis_id == aid),
    }
    assert {name: db.scalar(q) for name, q in count.items()} == dict.fromkeys(count, 0)
