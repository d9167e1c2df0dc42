"""ONNX graphs cut at a node output: the feature, the network's tail, the whole analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from conceptlens.components import (
    ComponentsError,
    OnnxNetwork,
    TrainingPlan,
    analyze_components,
    component_maps,
    extract,
    feature_extractor,
    layer_names,
    layer_shapes,
    module_of,
    tail_runner,
)
from conceptlens.models import DigitCNN, load_model, train_demo_model
from conceptlens.models.demo import export_onnx

from .test_pipeline import QUICK, Digits, finite

TORCH_TO_ONNX = {
    "conv1": "/conv1/Conv_output_0",
    "relu1": "/relu1/Relu_output_0",
    "pool1": "/pool1/MaxPool_output_0",
    "conv2": "/conv2/Conv_output_0",
    "relu2": "/relu2/Relu_output_0",
    "pool2": "/pool2/MaxPool_output_0",
    "flatten": "/flatten/Flatten_output_0",
    "fc1": "/fc1/Gemm_output_0",
    "relu3": "/relu3/Relu_output_0",
    "fc2": "logits",
}
"""The demo's submodules and the node outputs the ONNX exporter names after them."""
RELU2 = TORCH_TO_ONNX["relu2"]
ATOL = 1e-5  # onnxruntime and torch kernels sum in different orders


class Skips(nn.Module):
    """``fc(flatten(c(relu(b(h))) + h + x))`` with ``h = a(x)``: two connections around ``relu``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1)
        self.b = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.c = nn.Conv2d(4, 1, 3, padding=1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(256, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.fc(self.flatten(self.c(self.relu(self.b(h))) + h + x))


def exported(model: nn.Module, folder: Path, *, dynamic_batch: bool = True) -> OnnxNetwork:
    """``model`` (taking ``[B, 1, 16, 16]``) through the demo's exporter and the loader."""
    path = folder / "model.onnx"
    export_onnx(model, path, dynamic_batch=dynamic_batch)
    net = module_of(load_model(path))
    assert isinstance(net, OnnxNetwork)
    return net


def graph_model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
) -> onnx.ModelProto:
    """A hand-made graph (opset 17) for cases the exporter does not write."""
    graph = helper.make_graph(nodes, "hand-made", inputs, outputs)
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def onnx_demo(demo_cnn: DigitCNN, tmp_path_factory: pytest.TempPathFactory) -> OnnxNetwork:
    return exported(demo_cnn, tmp_path_factory.mktemp("onnx_demo"))


@pytest.fixture(scope="module")
def small(digits: Digits) -> Digits:
    """256 training and 64 test images of the demo split: enough for a smoke run."""
    x_train, y_train, x_test, y_test = digits
    return x_train[:256], y_train[:256], x_test[:64], y_test[:64]


def test_layers_are_the_float_node_outputs(onnx_demo: OnnxNetwork) -> None:
    assert onnx_demo.layers() == list(TORCH_TO_ONNX.values())
    assert layer_names(onnx_demo) == onnx_demo.layers()


def test_layer_shapes_are_the_torch_ones(onnx_demo: OnnxNetwork, demo_cnn: DigitCNN) -> None:
    torch_shapes = layer_shapes(demo_cnn, torch.zeros(1, 1, 16, 16))
    assert layer_shapes(onnx_demo, torch.zeros(1, 1, 16, 16)) == {
        TORCH_TO_ONNX[name]: torch_shapes[name] for name in TORCH_TO_ONNX
    }


@pytest.mark.parametrize(("name", "layer"), list(TORCH_TO_ONNX.items()))
def test_feature_is_the_torch_layer_and_the_tail_gives_back_the_logits(
    onnx_demo: OnnxNetwork, demo_cnn: DigitCNN, digits: Digits, name: str, layer: str
) -> None:
    x = digits[2][:9]
    f = feature_extractor(onnx_demo, layer)(x)
    torch.testing.assert_close(f, feature_extractor(demo_cnn, name)(x), rtol=0, atol=ATOL)
    logits = tail_runner(onnx_demo, layer, example=x)(f)
    with torch.inference_mode():
        torch.testing.assert_close(logits, demo_cnn(x), rtol=0, atol=ATOL)
    torch.testing.assert_close(logits, onnx_demo.logits(x), rtol=0, atol=1e-6)


def test_sessions_are_built_once_per_layer(onnx_demo: OnnxNetwork) -> None:
    assert feature_extractor(onnx_demo, RELU2) is feature_extractor(onnx_demo, RELU2)
    assert tail_runner(onnx_demo, RELU2) is tail_runner(onnx_demo, RELU2)


def test_a_graph_with_a_fixed_batch_takes_any_batch(
    demo_cnn: DigitCNN, digits: Digits, tmp_path: Path
) -> None:
    net = exported(demo_cnn, tmp_path, dynamic_batch=False)
    x = digits[2][:5]
    f = extract(feature_extractor(net, RELU2), x, batch_size=3)
    torch.testing.assert_close(f, feature_extractor(demo_cnn, "relu2")(x), rtol=0, atol=ATOL)
    with torch.inference_mode():
        expected = demo_cnn(x)
    torch.testing.assert_close(tail_runner(net, RELU2, example=x)(f), expected, rtol=0, atol=ATOL)


def test_skip_connections_leave_features_but_no_tail(digits: Digits, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Skips().eval()
    net = exported(model, tmp_path)
    x = digits[2][:4]
    relu = "/relu/Relu_output_0"
    with pytest.raises(
        ComponentsError,
        match=r"not available for this model because .* needs 'input', '/a/Conv_output_0', "
        "computed before the layer",
    ):
        tail_runner(net, relu, example=x)
    with pytest.raises(ComponentsError, match=r"after '/a/Conv_output_0' also needs 'input',"):
        tail_runner(net, "/a/Conv_output_0")
    with torch.inference_mode():
        expected_f = model.relu(model.b(model.a(x)))
        expected = model(x)
    torch.testing.assert_close(feature_extractor(net, relu)(x), expected_f, rtol=0, atol=ATOL)
    merged = net.layers()[-3]  # the second Add, after both connections joined
    f = feature_extractor(net, merged)(x)
    torch.testing.assert_close(tail_runner(net, merged, example=x)(f), expected, rtol=0, atol=ATOL)


def test_unknown_and_unusable_layers_are_named() -> None:
    """A hand-made graph: an integer shape, and a second output the logits do not use."""
    model = graph_model(
        [
            helper.make_node("Relu", ["x"], ["h"]),
            helper.make_node("Shape", ["h"], ["shape"]),
            helper.make_node("Flatten", ["x"], ["y"]),
            helper.make_node("Sigmoid", ["h"], ["z"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 1, 2, 2])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", 1, 2, 2]),
        ],
    )
    net = OnnxNetwork(model)
    assert net.layers() == ["h", "y", "z"]
    with pytest.raises(ComponentsError, match=r"unknown layer 'conv9'; .* are: h, y, z"):
        feature_extractor(net, "conv9")
    with pytest.raises(ComponentsError, match="unknown layer 'x'"):
        tail_runner(net, "x")
    with pytest.raises(ComponentsError, match="'shape' is not a float feature"):
        feature_extractor(net, "shape")
    with pytest.raises(ComponentsError, match="its output 'y' does not depend on 'h'"):
        tail_runner(net, "h")
    x = torch.tensor([[[[-1.0, 2.0], [3.0, -4.0]]]])
    assert feature_extractor(net, "h")(x).tolist() == [[[[0.0, 2.0], [3.0, 0.0]]]]
    assert torch.equal(tail_runner(net, "y")(x.flatten(1)), x.flatten(1))


def test_a_graph_without_one_image_input_is_refused() -> None:
    model = graph_model(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    with pytest.raises(ComponentsError, match=r"one image input .* 2 input\(s\)"):
        OnnxNetwork(model)


def test_analysis_of_an_onnx_layer_end_to_end(
    onnx_demo: OnnxNetwork, demo_cnn: DigitCNN, small: Digits, tmp_path: Path
) -> None:
    other = exported(train_demo_model(seed=1, epochs=1)[0], tmp_path)
    result = analyze_components(onnx_demo, RELU2, small, plan=QUICK, exemplars=[other])
    e, r = result.effects, result.reliability
    assert result.feature_shape == (32, 8, 8) and e is not None and r is not None
    for values in (e.shapley_train, e.shapley_test, e.shapley_gap, e.effectiveness):
        assert finite(values) and values.shape == (4,)
    assert abs(e.shapley_train.sum() - (e.values_train[-1] - e.values_train[0])) < 1e-9
    assert abs(e.shapley_test.sum() - (e.values_test[-1] - e.values_test[0])) < 1e-9
    assert e.values_train[-1] < e.values_train[0]  # the real feature beats its mean
    assert finite(r.cumulative) and finite(result.significance.component)
    image = small[2][0]
    maps = component_maps(result.trained, image, feature_extractor(onnx_demo, RELU2)(image[None]))
    assert maps.components.shape == (3, 8, 8)
    # the same layer of the same weights in torch: the same numbers, up to float noise
    torch_result = analyze_components(demo_cnn, "relu2", small, plan=QUICK, with_effects=False)
    np.testing.assert_allclose(
        result.significance.cumulative, torch_result.significance.cumulative, atol=1e-3
    )


def test_a_layer_without_tail_fails_before_any_training(small: Digits, tmp_path: Path) -> None:
    net = exported(Skips().eval(), tmp_path)
    calls: list[int] = []
    with pytest.raises(ComponentsError, match="not available for this model because"):
        analyze_components(
            net, "/relu/Relu_output_0", small, plan=QUICK, progress=lambda d, t: calls.append(d)
        )
    assert calls == []
    plan = TrainingPlan(orders=(0,), width=4, epochs=1)
    result = analyze_components(net, "/relu/Relu_output_0", small, plan=plan, with_effects=False)
    assert result.effects is None and result.feature_shape == (4, 16, 16)


def test_the_given_graph_is_left_as_it_was() -> None:
    model = graph_model(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Flatten", ["h"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 6])],
    )
    before = model.SerializeToString()
    net = OnnxNetwork(model)
    net.tail_runner("h", example=torch.rand(2, 2, 3))
    assert model.SerializeToString() == before
