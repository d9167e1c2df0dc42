"""Model uploads: validation in the worker, refusals at the door, workspace isolation."""

from __future__ import annotations

import io
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


# --------------------------------------------------------------------------- input size cap


def onnx_bytes(dims: list[int | str]) -> bytes:
    """A valid ONNX classifier whose image input has ``dims`` (a str is a dynamic dim)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["logits"]),
        ],
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [dims[0], dims[1]])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_a_huge_declared_input_size_is_refused_and_leaves_nothing(
    client: TestClient, service: dict[str, Any], files: dict[str, Path]
) -> None:
    before = count_rows_and_blobs(client, service)
    data = files["torchscript"].read_bytes()
    response = upload(client, "ts.pt", data, input_size="100000x100000", channels="3")
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert "3×100000×100000" in detail and "at most 3,145,728" in detail
    assert count_rows_and_blobs(client, service) == before


@pytest.mark.parametrize(
    ("dims", "form"),
    [
        ([1, 3, 100000, 100000], {}),  # the file fixes it
        (["batch", 3, "height", 100_000_000], {}),  # the fixed dims alone are too many
        (["batch", 3, "height", "width"], {"input_size": "100000x100000", "channels": "3"}),
    ],
    ids=["static", "partly-dynamic", "dynamic-given"],
)
def test_onnx_declaring_a_huge_input_is_refused_at_upload(
    client: TestClient, service: dict[str, Any], dims: list[int | str], form: dict[str, str]
) -> None:
    before = count_rows_and_blobs(client, service)
    response = upload(client, "big.onnx", onnx_bytes(dims), **form)
    assert response.status_code == 413, response.text
    assert "at most 3,145,728" in response.json()["detail"]
    assert count_rows_and_blobs(client, service) == before


def test_onnx_with_dynamic_image_size_and_a_fair_given_size_is_accepted(
    client: TestClient,
) -> None:
    data = onnx_bytes(["batch", 3, "height", "width"])
    response = upload(client, "dyn.onnx", data, input_size="1024x1024", channels="3")
    assert response.status_code == 201, response.text


def test_the_input_cap_is_a_setting(
    client: TestClient, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.config import get_settings

    monkeypatch.setattr(get_settings(), "max_input_values", 255)  # the demo takes 1×16×16
    response = upload(client, "m.onnx", files["onnx"].read_bytes())
    assert response.status_code == 413 and "1×16×16" in response.json()["detail"]


# --------------------------------------------------------------------------- pickles in zips


class SystemPayload:
    """Pickles as a call of os.system; building the bytes runs nothing."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (f"touch {self.marker}",))


def torch_save_bytes(obj: object) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_a_torch_zip_with_a_planted_payload_is_refused_and_leaves_nothing(
    client: TestClient, service: dict[str, Any], tmp_path: Path
) -> None:
    import torch

    marker = tmp_path / "pwned"
    state = {"conv1.weight": torch.zeros(16, 1, 3, 3), "evil": SystemPayload(marker)}
    data = torch_save_bytes({"architecture": "digit_cnn", "state_dict": state})
    before = count_rows_and_blobs(client, service)
    response = upload(client, "weights.pt", data, architecture="digit_cnn")
    assert response.status_code == 415, response.text
    detail = response.json()["detail"]
    assert "data.pkl refers to posix.system" in detail and "only accepts tensors" in detail
    assert count_rows_and_blobs(client, service) == before
    assert not marker.exists()


def test_a_whole_pickled_module_is_refused_naming_its_class(
    client: TestClient, service: dict[str, Any]
) -> None:
    from conceptlens.models import DigitCNN

    before = count_rows_and_blobs(client, service)
    response = upload(client, "model.pt", torch_save_bytes(DigitCNN()))
    assert response.status_code == 415
    assert "conceptlens.models.architectures.DigitCNN" in response.json()["detail"]
    assert count_rows_and_blobs(client, service) == before


def test_torchscript_archive_with_a_payload_in_its_pickle_is_refused(
    client: TestClient, service: dict[str, Any], files: dict[str, Path]
) -> None:
    """TorchScript archives carry data.pkl too; a planted global is refused there as well."""
    import io

    source = zipfile.ZipFile(files["torchscript"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info in source.infolist():
            content = source.read(info)
            if info.filename.endswith("/constants.pkl"):
                content = b"\x80\x02cbuiltins\neval\nX\x03\x00\x00\x001+1\x85R."
            archive.writestr(info, content)
    before = count_rows_and_blobs(client, service)
    response = upload(client, "ts.pt", buffer.getvalue(), input_size="16x16", channels="1")
    assert response.status_code == 415, response.text
    assert "constants.pkl refers to builtins.eval" in response.json()["detail"]
    assert count_rows_and_blobs(client, service) == before


@pytest.mark.parametrize(
    ("method", "body", "status", "words"),
    [
        # bzip2: zipfile would unpack a whole compressed chunk at once, past any cap
        (zipfile.ZIP_BZIP2, b"\0" * 1000, 415, "only stored or deflated"),
        # deflate: bounded memory, but the checksum test would unpack 100 MB for 100 KB
        (zipfile.ZIP_DEFLATED, b"\0" * 100_000_000, 413, "does not compress like that"),
    ],
)
def test_model_zips_that_would_unpack_too_much_are_refused_unread(
    client: TestClient, service: dict[str, Any], method: int, body: bytes, status: int,
    words: str,
) -> None:  # fmt: skip
    """Found in review: a torch-style zip (archive/data.pkl) compressed as a bomb."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as archive:
        archive.writestr("archive/data.pkl", body)
        archive.writestr("archive/version", b"3\n")
    before = count_rows_and_blobs(client, service)
    response = upload(client, "weights.pt", buf.getvalue(), architecture="digit_cnn")
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert count_rows_and_blobs(client, service) == before
