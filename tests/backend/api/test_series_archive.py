"""A model series uploaded as one zip on POST /api/model-series."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from fastapi.testclient import TestClient

from tests.backend.conftest import demo_files, wait_for


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def post(client: TestClient, name: str, archive: bytes, **extra: Any) -> Any:
    files = [("archive", ("run.zip", archive)), *extra.pop("files", [])]
    return client.post("/api/model-series", files=files, data={"name": name, **extra})


def test_a_zip_of_checkpoints_becomes_a_series(client: TestClient, service: dict[str, Any]) -> None:
    onnx = demo_files(service["data"] / "series-zip")["onnx"].read_bytes()
    response = post(client, "zipped run", zipped({"run/step_5.onnx": onnx,
                                                  "run/step_0.onnx": onnx}))  # fmt: skip
    assert response.status_code == 201, response.text
    series = response.json()
    assert series["steps"] == [0, 5]
    for model_id in series["model_ids"]:
        model = wait_for(client, f"/api/models/{model_id}",
                         lambda m: m["status"] in ("ready", "failed"))  # fmt: skip
        assert model["status"] == "ready", model["error"]
        assert model["series"] == "zipped run"
    listed = {s["name"]: s for s in client.get("/api/model-series").json()["data"]}
    assert listed["zipped run"]["steps"] == [0, 5]


def test_each_checkpoint_is_checked_like_a_model(client: TestClient) -> None:
    before = len(client.get("/api/models").json()["data"])
    response = post(client, "bad run", zipped({"step_0.onnx": b"junk", "step_1.onnx": b"junk"}))
    assert response.status_code in (400, 415), response.text
    assert response.json()["detail"].startswith("step_0.onnx (step 0): ")
    assert len(client.get("/api/models").json()["data"]) == before  # nothing of it is kept


def test_hostile_or_ambiguous_uploads_are_refused(client: TestClient) -> None:
    trick = post(client, "trick", zipped({"../step_0.onnx": b"a", "step_1.onnx": b"b"}))
    assert trick.status_code == 400 and "outside it" in trick.json()["detail"]
    many = post(client, "many", zipped({f"step_{k}.onnx": b"a" for k in range(51)}))
    assert many.status_code == 400 and "2 to 50 checkpoints" in many.json()["detail"]
    not_zip = post(client, "not zip", b"plain bytes")
    assert not_zip.status_code == 415 and "not a .zip" in not_zip.json()["detail"]
    both = post(client, "both", zipped({"s1.onnx": b"a"}), files=[("files", ("a.onnx", b"a"))])
    assert both.status_code == 400 and "either as files" in both.json()["detail"]
    neither = client.post("/api/model-series", data={"name": "neither"})
    assert neither.status_code == 400 and "either as files" in neither.json()["detail"]
    two = [("files", ("a.onnx", b"a")), ("files", ("b.onnx", b"b"))]
    no_steps = client.post("/api/model-series", data={"name": "no steps"}, files=two)
    assert no_steps.status_code == 400 and "training step" in no_steps.json()["detail"]
