"""Model files without torch: ONNX models on NumPy arrays, with the loaders' checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conceptlens.models.demo import DEMO_FILES, export_onnx
from conceptlens.models.formats import ModelLoadError, load_onnx
from conceptlens.models.loaders import load_model
from tests.conceptlens.test_cli import heavy_imports

ROOT = Path(__file__).resolve().parents[3]


def test_load_onnx_is_load_model_on_arrays(demo_dir: Path) -> None:
    path = demo_dir / DEMO_FILES["onnx"]
    arrays, tensors = load_onnx(path), load_model(path)
    assert (arrays.input_shape, arrays.num_classes) == (tensors.input_shape, tensors.num_classes)
    assert arrays.format == "onnx" and arrays.device == "cpu"
    batch = np.random.default_rng(0).random((5, 1, 16, 16), dtype=np.float32)
    expected = tensors.predict(torch.from_numpy(batch)).numpy()
    assert np.array_equal(arrays.run(batch), expected)


def test_a_fixed_batch_graph_runs_any_batch_in_padded_chunks(tmp_path: Path) -> None:
    from conceptlens.models.architectures import DigitCNN

    model = DigitCNN().eval()
    path = tmp_path / "fixed.onnx"
    export_onnx(model, path, dynamic_batch=False, batch=2)
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    batch = np.random.default_rng(1).random((3, 1, 16, 16), dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).numpy()
    got = load_onnx(path).run(batch)  # a chunk of 2, then 1 padded to 2
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_a_model_that_is_not_onnx_is_refused_by_name(demo_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="is a safetensors model, not an ONNX model"):
        load_onnx(demo_dir / DEMO_FILES["safetensors"])


def test_the_input_shape_is_checked_and_capped(demo_dir: Path) -> None:
    path = demo_dir / DEMO_FILES["onnx"]
    with pytest.raises(ModelLoadError, match=r"expects inputs of shape 1×16×16.*3×32×32"):
        load_onnx(path, input_shape=(3, 32, 32))
    with pytest.raises(ModelLoadError, match=r"is 256 values .* at most 255"):
        load_onnx(path, max_input_values=255)


@pytest.mark.parametrize("location", ["weights.bin", "/etc/hostname", "../outside.bin"])
def test_weights_in_external_files_are_refused(
    demo_dir: Path, tmp_path: Path, location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ONNX file may name files for its weights (read from the server's disk by
    onnxruntime): refused by both loaders, whatever path it names (before ``onnx.checker``
    sees it, which accepts a relative path to a regular file, here the weights written
    beside it)."""
    monkeypatch.chdir(tmp_path)
    proto = onnx.load(str(demo_dir / DEMO_FILES["onnx"]))
    onnx.save_model(
        proto,
        str(tmp_path / "split.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    split = onnx.load(str(tmp_path / "split.onnx"), load_external_data=False)
    for tensor in split.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    hostile = tmp_path / "hostile.onnx"
    hostile.write_bytes(split.SerializeToString())
    for load in (load_onnx, load_model):
        with pytest.raises(ModelLoadError, match="external data"):
            load(hostile)


def test_external_values_in_a_subgraph_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only the main graph's initialisers: a branch of an If node may keep its own, and
    onnxruntime reads them from the file they name, relative to the working directory for
    a model given as bytes. The first loaders checked the main graph's initialisers only,
    and ``onnx.checker`` accepts a relative path to a file that exists: this model loaded,
    and its logits for a blank input were the file's first 16 bytes as float32."""
    from onnx import TensorProto, helper, numpy_helper

    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    leak = numpy_helper.from_array(np.zeros(4, np.float32), "leak")
    leak.ClearField("raw_data")
    leak.data_location = TensorProto.EXTERNAL
    entry = leak.external_data.add()
    entry.key, entry.value = "location", "secret.bin"
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])
    branch = helper.make_graph(
        [helper.make_node("Identity", ["leak"], ["out"])], "b", [], [out], [leak]
    )
    true = numpy_helper.from_array(np.array(True), "c")
    nodes = [
        helper.make_node("Constant", [], ["c"], value=true),
        helper.make_node("If", ["c"], ["w"], then_branch=branch, else_branch=branch),
        helper.make_node("Flatten", ["x"], ["flat"]),
        helper.make_node("Add", ["flat", "w"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph(nodes, "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    hostile = tmp_path / "leak.onnx"
    hostile.write_bytes(model.SerializeToString())
    for load in (load_onnx, load_model):
        with pytest.raises(ModelLoadError, match="external data"):
            load(hostile)


def test_loading_an_onnx_model_on_arrays_imports_no_torch(demo_dir: Path) -> None:
    path = str(demo_dir / DEMO_FILES["onnx"])
    load = f"from conceptlens.models.formats import load_onnx\nload_onnx({path!r})"
    assert heavy_imports(load) == {"onnxruntime"}


@pytest.mark.parametrize(
    ("device", "first"),
    [("cuda", "CUDAExecutionProvider"), ("cuda:1", "CUDAExecutionProvider"), ("cpu", "CPU")],
)
def test_any_cuda_device_asks_for_the_cuda_provider(
    device: str, first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--device cuda:1`` ran ONNX on the CPU in the first version of this module (it
    compared the device with ``"cuda"``). Here onnxruntime is told it has CUDA and its
    session records what it was asked for."""
    import onnxruntime as ort

    from conceptlens.models.formats import onnx_session

    asked: list[list[str]] = []

    class Session:
        def __init__(self, data: bytes, sess_options: object, providers: list[str]) -> None:
            asked.append(providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", Session)
    onnx_session(b"", device, 1)
    assert asked[0][0].startswith(first)
    assert asked[0][-1] == "CPUExecutionProvider"
