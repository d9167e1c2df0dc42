"""The registered architectures: shapes, sizes, stable names, TorchScript, per-image outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conceptlens.models.architectures import ARCHITECTURES, SmallResNet, SmallVGG
from conceptlens.models.demo import _quiet_deprecations

SIZES = {"digit_cnn": 38_282, "small_vgg": 101_402, "small_resnet": 78_042}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_registered_shapes_and_sizes(name: str) -> None:
    spec = ARCHITECTURES[name]
    assert spec.name == name
    model = spec.build()
    assert sum(p.numel() for p in model.parameters()) == SIZES[name]
    out = model(torch.zeros(2, *spec.input_shape))
    assert out.shape == (2, spec.num_classes)


def test_colour_architectures_take_32x32_rgb() -> None:
    for name in ("small_vgg", "small_resnet"):
        assert ARCHITECTURES[name].input_shape == (3, 32, 32)
        assert ARCHITECTURES[name].num_classes == 10


def test_submodule_names_are_stable() -> None:
    vgg = {n for n, _ in SmallVGG().named_modules()}
    assert {"conv1", "conv5", "pool3", "fc1", "fc2"} <= vgg
    resnet = {n for n, _ in SmallResNet().named_modules()}
    assert {"conv1", "layer1.conv2", "layer2.shortcut.conv", "layer3.shortcut.norm", "fc"} <= resnet
    state = SmallResNet().state_dict()
    assert "layer2.shortcut.conv.weight" in state and "layer1.norm1.bias" in state


@pytest.mark.parametrize("cls", [SmallVGG, SmallResNet])
def test_scriptable_and_each_image_is_processed_alone(cls: type[torch.nn.Module]) -> None:
    torch.manual_seed(0)
    model = cls()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with _quiet_deprecations():
        scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x))
    for mode in (True, False):  # no batch statistics: train and eval agree, batch-free
        model.train(mode)
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")  # GroupNorm's check
@pytest.mark.parametrize("name", ["small_vgg", "small_resnet"])
def test_weights_and_onnx_load_back(name: str, tmp_path: Path) -> None:
    import safetensors.torch

    from conceptlens.models.loaders import load_model

    torch.manual_seed(1)
    model = ARCHITECTURES[name].build().eval()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "weights.safetensors"
    path.write_bytes(safetensors.torch.save(state, {"conceptlens_architecture": name}))
    loaded = load_model(path)
    assert (loaded.architecture, loaded.input_shape, loaded.num_classes) == (name, (3, 32, 32), 10)
    torch.testing.assert_close(loaded.predict(x), model(x).detach())
    onnx_path = tmp_path / "model.onnx"
    with _quiet_deprecations():
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 32, 32),),
            str(onnx_path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    from_onnx = load_model(onnx_path)
    torch.testing.assert_close(from_onnx.predict(x), model(x).detach(), rtol=1e-4, atol=1e-4)
