"""load_model: every accepted format reproduces the trained model; every refusal explains itself."""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from conceptlens.models import (
    ARCHITECTURES,
    ArchitectureSpec,
    DigitCNN,
    LoadedModel,
    ModelLoadError,
    detect_format,
    load_model,
)
from conceptlens.models.demo import DEMO_FILES, export_onnx

SHAPE = (1, 16, 16)


class Harmless:
    """A plain class whose pickle names a global — what weights_only refuses."""

    def __init__(self) -> None:
        self.value = 1


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _half(path: Path, tmp_path: Path) -> Path:
    data = path.read_bytes()
    return _write(tmp_path, "half_" + path.name, data[: len(data) // 2])


def _torch_save(obj: object, **kwargs: bool) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


# --------------------------------------------------------------------------- accepted formats


@pytest.mark.parametrize("fmt", list(DEMO_FILES))
def test_each_format_reproduces_the_trained_model(
    fmt: str, demo_dir: Path, trained_model: DigitCNN, sample_batch: torch.Tensor
) -> None:
    shape = SHAPE if fmt == "torchscript" else None
    model = load_model(demo_dir / DEMO_FILES[fmt], input_shape=shape)
    with torch.inference_mode():
        expected = trained_model(sample_batch)
    logits = model.predict(sample_batch)
    assert (model.format, model.input_shape, model.num_classes) == (fmt, SHAPE, 10)
    assert logits.dtype == torch.float32 and logits.shape == (8, 10)
    if fmt == "onnx":
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    else:
        assert torch.equal(logits, expected)


@pytest.mark.parametrize(
    ("fmt", "first_layer", "architecture"),
    [
        ("onnx", "/conv1/Conv_output_0", None),
        ("torchscript", "conv1", None),
        ("safetensors", "conv1", "digit_cnn"),
        ("state_dict", "conv1", "digit_cnn"),
    ],
)
def test_layers_and_architecture_are_reported(
    fmt: str, first_layer: str, architecture: str | None, demo_dir: Path
) -> None:
    model = load_model(demo_dir / DEMO_FILES[fmt], input_shape=SHAPE)
    assert model.layers[0] == first_layer
    assert model.architecture == architecture
    assert (model.module is None) == (fmt == "onnx")
    assert (model.onnx_model is None) == (fmt != "onnx")


def test_format_comes_from_bytes_not_extension(demo_dir: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "model.safetensors"
    shutil.copy(demo_dir / DEMO_FILES["onnx"], disguised)
    assert load_model(disguised).format == "onnx"
    for fmt, name in DEMO_FILES.items():
        assert detect_format((demo_dir / name).read_bytes()) == fmt


def test_onnx_with_fixed_batch_of_one_runs_larger_batches(
    tmp_path: Path, trained_model: DigitCNN, sample_batch: torch.Tensor
) -> None:
    path = tmp_path / "fixed.onnx"
    export_onnx(trained_model, path, dynamic_batch=False)
    model = load_model(path)
    with torch.inference_mode():
        expected = trained_model(sample_batch[:5])
    torch.testing.assert_close(model.predict(sample_batch[:5]), expected, rtol=0, atol=1e-5)


def test_bare_state_dict_needs_the_architecture_argument(
    tmp_path: Path, trained_model: DigitCNN
) -> None:
    path = _write(tmp_path, "bare.pt", _torch_save(trained_model.state_dict()))
    with pytest.raises(ModelLoadError, match=r"do not say which architecture.*digit_cnn"):
        load_model(path)
    assert load_model(path, architecture="digit_cnn").num_classes == 10


def test_predict_rejects_a_batch_of_the_wrong_shape(demo_dir: Path) -> None:
    model: LoadedModel = load_model(demo_dir / DEMO_FILES["safetensors"])
    with pytest.raises(ValueError, match=r"\[B, 1, 16, 16\]"):
        model.predict(torch.zeros(2, 3, 16, 16))


# --------------------------------------------------------------------------- refused files


def test_torch_export_archive_is_refused(tmp_path: Path) -> None:
    program = torch.export.export(nn.Linear(3, 2), (torch.zeros(1, 3),))
    path = tmp_path / "tiny.bin"
    torch.export.save(program, path)
    with pytest.raises(ModelLoadError, match=r"torch\.export archive \(\.pt2\).*execute code"):
        load_model(path)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_raw_pickle_is_refused(tmp_path: Path, protocol: int) -> None:
    path = _write(tmp_path, "model.onnx", pickle.dumps({"weights": [1.0, 2.0]}, protocol))
    with pytest.raises(ModelLoadError, match=r"pickle.*can run code.*state_dict"):
        load_model(path)


def test_legacy_torch_save_is_refused(tmp_path: Path) -> None:
    data = _torch_save({"a": 1}, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelLoadError, match=r"legacy .*can run code"):
        load_model(_write(tmp_path, "legacy.pt", data))


def test_pickled_objects_in_a_torch_save_zip_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "object.pt", _torch_save(Harmless()))
    with pytest.raises(ModelLoadError, match=r"other than tensors.*can run code"):
        load_model(path)


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (b"", {}, "empty"),
        (b"\x08" * 2000, {"max_bytes": 1000}, "2.0 KiB, larger than the 1000 bytes limit"),
        (np.random.default_rng(0).bytes(4096), {}, "not in a model format.*ONNX"),
    ],
    ids=["empty", "oversize", "random"],
)
def test_unusable_bytes_are_explained(
    tmp_path: Path, data: bytes, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_model(_write(tmp_path, "model", data), **kwargs)  # type: ignore[arg-type]


def test_missing_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no model file"):
        load_model(tmp_path / "absent.onnx")


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("onnx", "starts like an ONNX model.*truncated"),
        ("torchscript", "zip archive but it is damaged or truncated"),
        ("safetensors", "safetensors file could not be read.*truncated"),
        ("state_dict", "damaged or truncated"),
    ],
)
def test_truncated_files_are_explained(
    fmt: str, message: str, demo_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_model(_half(demo_dir / DEMO_FILES[fmt], tmp_path), input_shape=SHAPE)


def test_wrong_tensor_shape_names_the_tensor(tmp_path: Path, trained_model: DigitCNN) -> None:
    state = dict(trained_model.state_dict())
    state["fc2.weight"] = torch.zeros(5, 64)
    path = tmp_path / "wrong.safetensors"
    safetensors.torch.save_file(state, path, {"conceptlens_architecture": "digit_cnn"})
    with pytest.raises(ModelLoadError, match=r"'fc2\.weight' has shape \(5, 64\).*\(10, 64\)"):
        load_model(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("drop", r"lack tensor 'conv1\.bias' \(shape \(16,\)\)"),
        ("add", r"'extra', which .*does not have"),
    ],
)
def test_missing_and_unexpected_tensors_are_named(
    tmp_path: Path, trained_model: DigitCNN, edit: str, message: str
) -> None:
    state = dict(trained_model.state_dict())
    if edit == "drop":
        del state["conv1.bias"]
    else:
        state["extra"] = torch.zeros(1)
    path = _write(
        tmp_path, "edited.pt", _torch_save({"architecture": "digit_cnn", "state_dict": state})
    )
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_unknown_architecture_lists_the_known_ones(demo_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"Unknown architecture 'resnet9000'.*digit_cnn"):
        load_model(demo_dir / DEMO_FILES["state_dict"], architecture="resnet9000")


def test_conflicting_architecture_is_refused(
    demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = ArchitectureSpec(name="other", build=DigitCNN, input_shape=SHAPE, num_classes=10)
    monkeypatch.setitem(ARCHITECTURES, "other", other)
    with pytest.raises(ModelLoadError, match=r"says its architecture is 'digit_cnn'.*'other'"):
        load_model(demo_dir / DEMO_FILES["safetensors"], architecture="other")


# --------------------------------------------------------------------------- input shapes


def test_torchscript_with_wrong_input_shape_says_what_the_model_takes(demo_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"test input of shape 3×32×32.*takes 1 input channel"):
        load_model(demo_dir / DEMO_FILES["torchscript"], input_shape=(3, 32, 32))


def test_torchscript_without_input_shape_asks_for_it(demo_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="do not record the input size"):
        load_model(demo_dir / DEMO_FILES["torchscript"])


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_declared_input_shape_wins_over_a_wrong_one(fmt: str, demo_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"expects inputs of shape 1×16×16.*3×32×32"):
        load_model(demo_dir / DEMO_FILES[fmt], input_shape=(3, 32, 32))


class _NotAClassifier(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten()


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_output_that_is_not_logits_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flat.pt"
    torch.jit.save(torch.jit.script(_NotAClassifier()), str(path))
    with pytest.raises(ModelLoadError, match=r"returned \[256\].*\[1, classes\]"):
        load_model(path, input_shape=SHAPE)


def test_zip_that_is_not_a_model_is_explained(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelLoadError, match="not one written by torch"):
        load_model(_write(tmp_path, "model.pt", buffer.getvalue()))


# --------------------------------------------------------------------------- input size cap


def test_a_huge_given_input_size_is_refused_before_the_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"3×100000×100000 \(C×H×W\) is 30,000,000,000"):
        load_model(tmp_path / "never-read.pt", input_shape=(3, 100_000, 100_000))


@pytest.mark.parametrize("fmt", ["onnx", "safetensors", "state_dict", "torchscript"])
def test_declared_input_size_is_capped_before_the_test_pass(fmt: str, demo_dir: Path) -> None:
    shape = SHAPE if fmt == "torchscript" else None
    with pytest.raises(ModelLoadError, match=r"1×16×16 \(C×H×W\) is 256 values .* at most 255"):
        load_model(demo_dir / DEMO_FILES[fmt], input_shape=shape, max_input_values=255)
    assert load_model(demo_dir / DEMO_FILES[fmt], input_shape=shape, max_input_values=256)
