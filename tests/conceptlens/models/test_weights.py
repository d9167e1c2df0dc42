"""Reproducible safetensors bytes for project architectures."""

from __future__ import annotations

import safetensors.torch
import torch

from conceptlens.models.architectures import ARCHITECTURES
from conceptlens.models.weights import canonical_safetensors, weights_bytes


def test_same_weights_give_the_same_bytes() -> None:
    torch.manual_seed(0)
    model = ARCHITECTURES["digit_cnn"].build()
    files = {weights_bytes(model, "digit_cnn") for _ in range(12)}
    # safetensors alone writes its metadata in a changing order (found when a retried
    # training run stored its final model under a second key)
    assert len(files) == 1


def test_the_file_reads_back_as_safetensors_with_its_metadata() -> None:
    torch.manual_seed(1)
    model = ARCHITECTURES["small_vgg"].build()
    data = weights_bytes(model, "small_vgg")
    assert (8 + int.from_bytes(data[:8], "little")) % 8 == 0
    loaded = safetensors.torch.load(data)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded[name], tensor)
    import tempfile
    from pathlib import Path

    from safetensors import safe_open

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        path.write_bytes(data)
        with safe_open(str(path), "pt") as f:
            assert f.metadata() == {
                "conceptlens_architecture": "small_vgg",
                "input_shape": "[3, 32, 32]",
                "num_classes": "10",
            }


def test_canonical_form_is_idempotent() -> None:
    raw = safetensors.torch.save({"b": torch.ones(3), "a": torch.zeros(1)}, {"z": "1", "y": "2"})
    once = canonical_safetensors(raw)
    assert canonical_safetensors(once) == once
    assert safetensors.torch.load(once).keys() == {"a", "b"}
