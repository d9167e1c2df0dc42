"""The demo model: data preparation, deterministic training, the files it writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conceptlens.models import DigitCNN, load_digits_16, train_demo_model
from conceptlens.models.demo import DEMO_FILES, TEST_SIZE, split_digits


def test_digits_are_16x16_and_8_bit_exact() -> None:
    images, labels = load_digits_16()
    assert images.shape == (1797, 1, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (1797,) and set(labels.tolist()) == set(range(10))
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(torch.round(images * 255) / 255, images)


def test_split_is_fixed_and_disjoint() -> None:
    images, labels = load_digits_16()
    train_x, _, test_x, test_y = split_digits(images, labels)
    assert len(test_y) == TEST_SIZE and len(train_x) == 1797 - TEST_SIZE
    assert torch.equal(split_digits(images, labels)[2], test_x)


def test_training_is_deterministic_and_restores_torch_state() -> None:
    threads = torch.get_num_threads()
    first, info = train_demo_model(seed=3, epochs=3)
    second, _ = train_demo_model(seed=3, epochs=3)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    assert info["test_accuracy"] >= 0.9
    assert info["n_train"] == 1500 and info["epochs"] == 3 and info["seed"] == 3
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    assert not first.training


def test_training_on_few_samples() -> None:
    _, info = train_demo_model(seed=0, n_train=200, epochs=2)
    assert info["n_train"] == 200


def test_written_model_is_the_retrained_one(
    demo_dir: Path, demo_manifest: dict[str, Any], trained_model: DigitCNN
) -> None:
    from conceptlens.models import load_model

    written = load_model(demo_dir / DEMO_FILES["state_dict"]).module
    assert written is not None
    for name, tensor in trained_model.state_dict().items():
        assert torch.equal(tensor, written.state_dict()[name]), name
    assert demo_manifest["test_accuracy"] >= 0.95


def test_manifest_describes_the_files(demo_dir: Path, demo_manifest: dict[str, Any]) -> None:
    assert demo_manifest["input_shape"] == [1, 16, 16]
    assert demo_manifest["num_classes"] == 10
    assert demo_manifest["labels"] == [str(d) for d in range(10)]
    assert demo_manifest["mean"] is None and demo_manifest["std"] is None
    assert all((demo_dir / name).is_file() for name in demo_manifest["files"].values())
    labels = [sample["label"] for sample in demo_manifest["samples"]]
    assert labels == list(range(8))  # one per class first
    assert all(
        Path(s["file"]).name == f"digit_{k}_label_{s['label']}.png"
        for k, s in enumerate(demo_manifest["samples"])
    )


@pytest.mark.parametrize("k", range(8))
def test_sample_png_round_trip_is_bit_identical(
    k: int, demo_dir: Path, demo_manifest: dict[str, Any], sample_batch: torch.Tensor
) -> None:
    sample = demo_manifest["samples"][k]
    with Image.open(demo_dir / sample["file"]) as image:
        assert (image.mode, image.size) == ("L", (16, 16))
        assert np.asarray(image).dtype == np.uint8
    _, _, test_x, test_y = split_digits(*load_digits_16())
    assert int(test_y[sample["test_index"]]) == sample["label"]
    assert torch.equal(sample_batch[k], test_x[sample["test_index"]])
