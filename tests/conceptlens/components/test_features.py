"""The target feature at a layer, and the network's tail after it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conceptlens.components import (
    ComponentsError,
    extract,
    feature_extractor,
    layer_names,
    layer_shapes,
    module_of,
    tail_runner,
)
from conceptlens.models import DigitCNN

TOP_LEVEL = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3"]


class Skip(nn.Module):
    """A module whose forward is not the chain of its children (a skip connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + x


@pytest.fixture()
def net() -> DigitCNN:
    torch.manual_seed(0)
    return DigitCNN().eval()


def test_extractor_returns_the_layer_output(net: DigitCNN) -> None:
    x = torch.rand(5, 1, 16, 16)
    expected = net.relu2(net.conv2(net.pool1(net.relu1(net.conv1(x)))))
    got = feature_extractor(net, "relu2")(x)
    assert got.shape == (5, 32, 8, 8)
    assert torch.equal(got, expected.detach())
    assert extract(feature_extractor(net, "fc1"), x, batch_size=2).shape == (5, 64)


@pytest.mark.parametrize("layer", TOP_LEVEL)
def test_tail_of_the_feature_gives_back_the_logits(net: DigitCNN, layer: str) -> None:
    x = torch.rand(6, 1, 16, 16)
    f = feature_extractor(net, layer)(x)
    logits = tail_runner(net, layer)(f)
    assert torch.allclose(logits, net(x), atol=1e-6)


def test_tail_leaves_its_input_alone(net: DigitCNN) -> None:
    f = torch.randn(3, 32, 8, 8)
    kept = f.clone()
    tail_runner(nn.Sequential(nn.ReLU(inplace=True), nn.Flatten()), "0")(f)
    tail_runner(net, "conv2")(f)
    assert torch.equal(f, kept)


def test_unknown_layer_is_named_with_the_known_ones(net: DigitCNN) -> None:
    with pytest.raises(ComponentsError, match=r"unknown layer 'conv9'.*conv1, relu1"):
        feature_extractor(net, "conv9")
    with pytest.raises(ComponentsError, match="unknown layer ''"):
        tail_runner(net, "")
    assert layer_names(net)[:2] == ["conv1", "relu1"]


def test_no_tail_for_a_module_that_is_not_a_chain() -> None:
    skip = Skip()
    with pytest.raises(ComponentsError, match="not available for this model because"):
        tail_runner(skip, "a")
    with pytest.raises(ComponentsError, match="not its top-level layers run in order"):
        tail_runner(skip, "a", example=torch.rand(3, 4))
    nested = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))
    with pytest.raises(ComponentsError, match=r"'1\.0' sits inside '1'"):
        tail_runner(nested, "1.0")
    assert feature_extractor(skip, "a")(torch.rand(3, 4)).shape == (3, 4)  # hooks still work


def test_torchscript_uses_its_children_in_order(net: DigitCNN) -> None:
    scripted = torch.jit.script(net)
    x = torch.rand(4, 1, 16, 16)
    f = feature_extractor(scripted, "pool2")(x)
    assert torch.equal(f, feature_extractor(net, "pool2")(x))
    with pytest.raises(ComponentsError, match="TorchScript program"):
        tail_runner(scripted, "pool2")
    logits = tail_runner(scripted, "pool2", example=x)(f)
    assert torch.allclose(logits, net(x), atol=1e-6)


def test_layer_shapes_are_what_each_layer_returns(net: DigitCNN) -> None:
    x = torch.zeros(1, 1, 16, 16)
    shapes = layer_shapes(net, x)
    assert list(shapes) == [*TOP_LEVEL, "fc2"]
    for name in TOP_LEVEL:
        assert shapes[name] == list(feature_extractor(net, name)(x).shape[1:]), name
    assert shapes["relu2"] == [32, 8, 8] and shapes["fc2"] == [10]
    assert layer_shapes(torch.jit.script(net), x) == shapes  # children run in order
    assert layer_shapes(torch.jit.script(Skip()), torch.zeros(1, 4)) == {"a": [4], "b": [4]}


def test_torchscript_that_is_not_a_chain_is_refused() -> None:
    scripted = torch.jit.script(Skip())
    with pytest.raises(ComponentsError, match="cannot be read"):
        feature_extractor(scripted, "a")(torch.rand(3, 4))


def test_training_flags_are_restored(net: DigitCNN) -> None:
    net.train()
    feature_extractor(net, "relu2")(torch.rand(2, 1, 16, 16))
    tail_runner(net, "relu2")(torch.rand(2, 32, 8, 8))
    assert all(m.training for m in net.modules())


def test_a_model_without_module_or_graph_is_refused_with_a_reason() -> None:
    class FakeLoaded:
        format = "onnx"
        module = None
        onnx_model = None

    with pytest.raises(ComponentsError, match=r"this model \(onnx\) has neither"):
        module_of(FakeLoaded())
