"""Model uploads: validation in the worker, refusals at the door, workspace isolation."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import demo_files, wait_for


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return demo_files(tmp_path_factory.mktemp("models"))


def upload(client: TestClient, filename: str, data: bytes, **form: Any) -> Any:
    return client.post("/api/models", files={"file": (filename, data)}, data=form)


def count_rows_and_blobs(client: TestClient, service: dict[str, Any]) -> tuple[int, int]:
    blobs = sum(1 for p in Path(service["data"], "blobs").rglob("*") if p.is_file())
    return len(client.get("/api/models").json()["data"]), blobs


def test_demo_model_is_listed_and_ready(client: TestClient) -> None:
    models = client.get("/api/models").json()["data"]
    demo = next(m for m in models if m["builtin"])
    assert demo["status"] == "ready" and demo["format"] == "onnx"
    assert demo["input_shape"] == [1, 16, 16] and demo["num_classes"] == 10
    assert 0 < demo["seconds_per_pass"] < 0.1  # measured by the worker at validation


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors", "state_dict"])
def test_upload_validates_in_the_worker(
    client: TestClient, files: dict[str, Path], fmt: str
) -> None:
    form = {"input_size": "16x16", "channels": "1"} if fmt == "torchscript" else {}
    labels = ",".join(str(d) for d in range(10))
    response = upload(
        client, files[fmt].name, files[fmt].read_bytes(), name=f"mine {fmt}", labels=labels, **form
    )
    assert response.status_code == 201, response.text
    model = response.json()
    done = wait_for(
        client, f"/api/models/{model['id']}", lambda m: m["status"] in ("ready", "failed")
    )
    assert done["status"] == "ready", done["error"]
    assert (
        done["format"] == fmt and done["num_classes"] == 10 and done["input_shape"] == [1, 16, 16]
    )
    assert done["labels"][3] == "3"


def test_mismatching_input_shape_fails_validation_with_a_message(
    client: TestClient, files: dict[str, Path]
) -> None:
    data = files["torchscript"].read_bytes()
    model = upload(client, "ts.pt", data, input_size="32x32", channels="3").json()
    done = wait_for(
        client, f"/api/models/{model['id']}", lambda m: m["status"] in ("ready", "failed")
    )
    assert done["status"] == "failed" and "shape" in done["error"].lower()


class Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this would run on unpickling",))


def pt2_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("model/archive_format", "pt2")
        archive.writestr("model/models/model.json", "{}")
    return buf.getvalue()


@pytest.mark.parametrize(
    "data,status,words",
    [
        (b"", 400, "empty"),
        (pickle.dumps(Payload()), 415, "pickle"),
        (pickle.dumps({"weights": [1, 2]}, protocol=0), 415, "pickle"),
        (pt2_bytes(), 415, "torch.export"),
        (b"GIF89a not a model", 415, "not a model format"),
        (b"\x08\x07" + b"\xff" * 50, 400, "ONNX"),
        (b"PK\x03\x04 truncated zip", 400, "damaged"),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(
    client: TestClient, service: dict[str, Any], data: bytes, status: int, words: str
) -> None:
    before = count_rows_and_blobs(client, service)
    response = upload(client, "model.bin", data)
    assert response.status_code == status
    assert words.lower() in response.json()["detail"].lower()
    assert count_rows_and_blobs(client, service) == before


def test_truncated_onnx_is_refused(client: TestClient, files: dict[str, Path]) -> None:
    data = files["onnx"].read_bytes()
    response = upload(client, "cut.onnx", data[: len(data) // 2])
    assert response.status_code == 400 and "ONNX" in response.json()["detail"]


def test_oversized_upload_is_413(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.config import get_settings

    monkeypatch.setattr(get_settings(), "max_model_bytes", 1000)
    response = upload(client, "big.onnx", b"\x08" * 5000)
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_form_errors_are_readable(client: TestClient, files: dict[str, Path]) -> None:
    data = files["onnx"].read_bytes()
    assert "both" in upload(client, "m.onnx", data, channels="1").json()["detail"]
    assert "positive" in upload(client, "m.onnx", data, std="0.5,0").json()["detail"]


def test_other_workspaces_cannot_see_or_delete(
    client: TestClient, other_client: TestClient, files: dict[str, Path]
) -> None:
    model = upload(client, "m.onnx", files["onnx"].read_bytes()).json()
    assert other_client.get(f"/api/models/{model['id']}").status_code == 404
    assert other_client.delete(f"/api/models/{model['id']}").status_code == 404
    assert model["id"] not in [m["id"] for m in other_client.get("/api/models").json()["data"]]
    assert client.delete(f"/api/models/{model['id']}").status_code == 204
    assert client.get(f"/api/models/{model['id']}").status_code == 404


def test_builtin_cannot_be_deleted(client: TestClient, service: dict[str, Any]) -> None:
    assert client.delete(f"/api/models/{service['demo_model_id']}").status_code == 403


def test_no_workspace_is_401_with_instructions(app: Any) -> None:
    bare = TestClient(app)
    response = bare.get("/api/models")
    assert response.status_code == 401 and "Authorization: Bearer" in response.json()["detail"]
    created = bare.post("/api/workspace").json()
    script = TestClient(app)
    headers = {"Authorization": f"Bearer {created['secret']}"}
    assert script.get("/api/models", headers=headers).status_code == 200
    assert script.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_models_recorded_before_layer_shapes_are_validated_again(
    client: TestClient, service: dict[str, Any]
) -> None:
    from backend.db.models import ModelRecord
    from backend.db.session import session_scope
    from worker.builtins import revalidate_stale_models

    demo = service["demo_model_id"]
    before = client.get(f"/api/models/{demo}").json()
    with session_scope() as s:  # as a model validated by an older version left it
        row = s.get_one(ModelRecord, demo)
        row.layers, row.layer_shapes = ["input_shape_constant", *before["layers"]], None
    assert revalidate_stale_models() == [demo]
    after = client.get(f"/api/models/{demo}").json()
    assert after["status"] == "ready"
    assert after["layers"] == before["layers"] and after["layer_shapes"] == before["layer_shapes"]
    assert revalidate_stale_models() == []  # once only
