"""Reading images into the model's input space."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conceptlens.images import ImageError, load_image, normalise, read_image


def write_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_gray_png_scaled_to_unit_range(tmp_path: Path) -> None:
    pixels = np.arange(16, dtype=np.uint8).reshape(4, 4) * 17
    x = load_image(write_png(tmp_path / "g.png", pixels))
    assert x.shape == (1, 4, 4)
    assert torch.allclose(x[0], torch.from_numpy(pixels.astype(np.float32) / 255))


def test_channels_size_and_normalisation(tmp_path: Path) -> None:
    rgb = np.zeros((8, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    path = write_png(tmp_path / "c.png", rgb)
    x = load_image(path, channels=3, size=(4, 3), mean=[0.5, 0.0, 0.0], std=[0.5, 1.0, 1.0])
    assert x.shape == (3, 4, 3)
    assert torch.allclose(x[0], torch.ones(4, 3)) and torch.allclose(x[1:], torch.zeros(2, 4, 3))
    assert load_image(path, channels=1).shape == (1, 8, 6)


def test_bad_images_give_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="cannot read the image"):
        load_image(bad)
    with pytest.raises(ImageError, match="2 values but the image has 3 channels"):
        normalise(torch.zeros(3, 2, 2), [0.1, 0.2], None)
    with pytest.raises(ImageError, match="positive"):
        normalise(torch.zeros(1, 2, 2), None, [0.0])


def test_oversized_image_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conceptlens.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 15)
    path = write_png(tmp_path / "big.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ImageError, match="at most 15"):
        load_image(path)


def test_read_image_is_load_image_as_an_array(tmp_path: Path) -> None:
    """The NumPy reader (ONNX analyses, no torch) and the tensor one give the same values."""
    path = tmp_path / "rgb.png"
    pixels = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    kw: dict[str, Any] = {"size": (12, 10), "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25]}
    array = read_image(path, **kw)
    assert array.dtype == np.float32 and array.shape == (3, 12, 10)
    assert array.flags.c_contiguous
    assert torch.equal(load_image(path, **kw), torch.from_numpy(array))
    plain = read_image(path)
    on_tensor = normalise(torch.from_numpy(plain), kw["mean"], kw["std"])
    assert torch.equal(on_tensor, torch.from_numpy(normalise(plain, kw["mean"], kw["std"])))
