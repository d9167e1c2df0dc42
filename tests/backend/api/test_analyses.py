"""Analyses through the API on the embedded default: run, results, cache, fan-out, cancel."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import sample_image_id, wait_for


def create(client: TestClient, **body: Any) -> Any:
    return client.post("/api/analyses", json=body)


def finished(a: dict[str, Any]) -> bool:
    return a["status"] in ("done", "failed", "cancelled")


@pytest.fixture
def demo(service: dict[str, Any]) -> str:
    return str(service["demo_model_id"])


def run(client: TestClient, **body: Any) -> dict[str, Any]:
    response = create(client, **body)
    assert response.status_code == 201, response.text
    return wait_for(client, f"/api/analyses/{response.json()['id']}", finished)


def test_run_and_read_results(client: TestClient, demo: str) -> None:
    image = sample_image_id(client, "3")
    created = create(client, model_id=demo, image_ids=[image], grid="3x3", baseline="zero").json()
    assert created["status"] == "queued" and created["progress_total"] == 512
    analysis = wait_for(client, f"/api/analyses/{created['id']}", finished)
    assert analysis["status"] == "done", analysis["error"]
    assert analysis["progress_done"] == analysis["progress_total"] == 512
    item = analysis["items"][0]
    summary = item["summary"]
    assert summary["prediction"] == 3 and summary["residual"] < 1e-9
    assert len(summary["J"]) == 8 and analysis["summary"]["J"] == pytest.approx(summary["J"])
    base = f"/api/analyses/{analysis['id']}/items/{item['id']}"

    top = client.get(f"{base}/interactions", params={"top_k": 5, "contains": "4"}).json()
    assert len(top["data"]) == 5 and all(4 in row["players"] for row in top["data"])
    strengths = [row["strength"] for row in top["data"]]
    assert strengths == sorted(strengths, reverse=True)
    order2 = client.get(f"{base}/interactions", params={"order": 2, "top_k": 100}).json()
    assert order2["total"] == 36 and all(len(r["players"]) == 2 for r in order2["data"])

    pair = client.get(f"{base}/pair", params={"i": 0, "j": 4}).json()
    assert len(pair["values"]) == 8 and pair["figure"]["data"]
    assert pair["shapley_interaction"] == pytest.approx(np.mean(pair["values"]))
    assert client.get(f"{base}/pair", params={"i": 0, "j": 0}).status_code == 400

    low = client.get(f"{base}/sparsity", params={"tau": 0.01}).json()
    high = client.get(f"{base}/sparsity", params={"tau": 0.5}).json()
    assert low["total"] >= high["total"] >= 1 and low["of"] == 511

    figures = client.get(f"{base}/figures").json()
    assert set(figures) == {"curve", "salient", "sparsity", "average_output"}
    strict = client.get(f"{base}/figures", params={"tau": 0.5}).json()
    assert "0.5" in strict["salient"]["layout"]["title"]["text"]
    heat = client.get(f"{base}/figures/shapley", params={"i": 4}).json()
    z = heat["data"][0]["z"]
    assert len(z) == 3 and len(z[0]) == 3 and z[1][1] is None  # the selected patch is blank
    row = client.get(f"{base}/shapley", params={"i": 4}).json()["values"]
    assert z[0][0] == pytest.approx(row[0])
    png = client.get(f"{base}/image", params={"scale": 4})
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    assert analysis["model_name"] == "Demo digits CNN" and analysis["labels"][3] == "3"
    assert client.get(f"/api/analyses/{analysis['id']}/figures/curve").json()["data"]

    npz = np.load(io.BytesIO(client.get(f"{base}/export.npz").content))
    assert npz["interactions"].shape == (512,) and npz["multi_order"].shape == (8, 9, 9)
    as_json = client.get(f"{base}/export.json").json()
    assert as_json["arrays"]["J"] == pytest.approx(summary["J"])
    csv_lines = client.get(f"{base}/export.csv").text.strip().splitlines()
    assert csv_lines[0] == "mask,players,order,v,interaction" and len(csv_lines) == 513
    assert client.get(f"{base}/export.xml").status_code == 404


def test_identical_requests_reuse_the_logit_table(client: TestClient, demo: str) -> None:
    image = sample_image_id(client, "5")
    body = {"model_id": demo, "image_ids": [image], "grid": "2x4"}
    first = run(client, **body)
    assert first["items"][0]["cached"] is False
    again = create(client, **body).json()
    assert again["forward_passes"] == 0  # the cost says so before it runs
    second = wait_for(client, f"/api/analyses/{again['id']}", finished)
    assert second["items"][0]["cached"] is True
    other_target = run(client, **body, target=1, output="prob")
    assert other_target["items"][0]["cached"] is True
    assert other_target["items"][0]["summary"]["target"] == 1
    assert other_target["items"][0]["summary"]["v_full"] != first["items"][0]["summary"]["v_full"]


def test_big_image_fans_out_into_chunks_and_matches_the_engine(
    client: TestClient, demo: str, service: dict[str, Any], tmp_path: Path
) -> None:
    from backend.db.models import AnalysisItem, ImageRecord, ModelRecord
    from backend.db.session import get_sessionmaker
    from conceptlens.analysis import interactions_from_logits
    from conceptlens.game import MaskedModelGame, logit_table
    from conceptlens.images import load_image
    from conceptlens.models.loaders import load_model
    from conceptlens.players import PatchGrid, Players, make_baseline
    from worker.jobs import blobs

    image = sample_image_id(client, "7")
    analysis = run(client, model_id=demo, image_ids=[image], grid="4x4", baseline="blur")
    assert analysis["status"] == "done", analysis["error"]
    item_id = analysis["items"][0]["id"]
    with get_sessionmaker()() as s:
        item = s.get_one(AnalysisItem, item_id)
        assert item.chunks_total == 16 == item.chunks_done
        model_row = s.get_one(ModelRecord, demo)
        model_file = tmp_path / "model"
        model_file.write_bytes(blobs().get(model_row.blob_key))
        model = load_model(model_file)  # the demo ONNX file records its shape
        x = load_image(
            blobs().get(s.get_one(ImageRecord, image).blob_key), channels=1, size=(16, 16)
        )
    game = MaskedModelGame(
        model.predict, x, Players(PatchGrid(4, 4, 16, 16)), make_baseline(x, "blur")
    )
    direct = interactions_from_logits(logit_table(game))
    base = f"/api/analyses/{analysis['id']}/items/{item_id}"
    stored = np.load(io.BytesIO(client.get(f"{base}/export.npz").content))
    np.testing.assert_allclose(stored["interactions"], direct.interactions, atol=1e-6)


def test_cancel_stops_a_running_analysis(
    client: TestClient, demo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.config import get_settings

    monkeypatch.setattr(get_settings(), "batch_size", 4)
    image = sample_image_id(client, "2")
    created = create(
        client, model_id=demo, image_ids=[image], grid="4x4", baseline="zero", others_present=False
    ).json()
    wait_for(
        client, f"/api/analyses/{created['id']}", lambda a: a["progress_done"] > 0 or finished(a)
    )
    response = client.post(f"/api/analyses/{created['id']}/cancel")
    assert response.status_code == 200
    ended = wait_for(client, f"/api/analyses/{created['id']}", finished)
    assert ended["status"] == "cancelled"
    assert ended["progress_done"] < ended["progress_total"]
    assert client.post(f"/api/analyses/{created['id']}/cancel").status_code == 409
    monkeypatch.setattr(get_settings(), "batch_size", 1024)
    retried = client.post(f"/api/analyses/{created['id']}/retry").json()
    assert retried["status"] == "queued"
    assert wait_for(client, f"/api/analyses/{created['id']}", finished)["status"] == "done"


@pytest.mark.parametrize(
    "change,status,words",
    [
        ({"grid": "17x2"}, 400, "does not fit"),
        ({"grid": "5x5"}, 400, "limit is 20 players"),
        ({"grid": "2x2", "players": [0, 9]}, 400, "[9]"),
        ({"grid": "2x2", "players": [1]}, 400, "at least 2"),
        ({"target": 10}, 400, "10 classes"),
        ({"grid": "four"}, 422, "4x4"),
        ({"tau": 0}, 422, "tau"),
        ({"image_ids": ["nope"]}, 404, "No such image"),
        ({"model_id": "nope"}, 404, "No such model"),
    ],
)
def test_bad_requests_are_clear(
    client: TestClient, demo: str, change: dict[str, Any], status: int, words: str
) -> None:
    body = {"model_id": demo, "image_ids": [sample_image_id(client)], "grid": "2x2", **change}
    before = len(client.get("/api/analyses").json()["data"])
    response = create(client, **body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert len(client.get("/api/analyses").json()["data"]) == before


def test_workspaces_and_share_links(
    client: TestClient, other_client: TestClient, app: Any, demo: str
) -> None:
    analysis = run(client, model_id=demo, image_ids=[sample_image_id(client, "1")], grid="2x3")
    aid, item = analysis["id"], analysis["items"][0]["id"]
    assert other_client.get(f"/api/analyses/{aid}").status_code == 404
    assert other_client.get(f"/api/analyses/{aid}/items/{item}/interactions").status_code == 404
    assert other_client.post(f"/api/analyses/{aid}/shares").status_code == 404
    assert aid not in [a["id"] for a in other_client.get("/api/analyses").json()["data"]]

    share = client.post(f"/api/analyses/{aid}/shares").json()
    assert len(share["token"]) >= 43  # 256 bits, URL-safe base64
    anonymous = TestClient(app)  # no cookie, no header
    assert anonymous.get(f"/api/shared/{share['token']}").json()["id"] == aid
    assert (
        anonymous.get(f"/api/shared/{share['token']}/items/{item}/interactions").status_code == 200
    )
    page = anonymous.get(share["url"].replace("http://testserver", ""))
    assert page.status_code == 200 and "shared result" in page.text
    assert anonymous.get(f"/api/analyses/{aid}").status_code == 401
    assert [s["id"] for s in client.get(f"/api/analyses/{aid}/shares").json()["data"]] == [
        share["id"]
    ]
    assert other_client.delete(f"/api/shares/{share['id']}").status_code == 404
    assert client.delete(f"/api/shares/{share['id']}").status_code == 204
    assert anonymous.get(f"/api/shared/{share['token']}").status_code == 404
    assert client.delete(f"/api/analyses/{aid}").status_code == 204
    assert client.get(f"/api/analyses/{aid}").status_code == 404
