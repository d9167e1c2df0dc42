"""Reading images into the model's input space: scale to [0, 1], resize, normalise.

Pillow decodes; the pixel cap guards against decompression bombs. Nothing here runs code
from the file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image

if TYPE_CHECKING:
    import torch

#: An image as a NumPy array or a torch tensor; :func:`normalise` returns the same kind.
Img = TypeVar("Img", npt.NDArray[np.float32], "torch.Tensor")

MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """An image that cannot be read or does not fit the model; the message says why."""


def load_image(
    path: str | Path | bytes,
    *,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """An image file → float32 tensor ``[C, H, W]``: :func:`read_image` as a tensor."""
    import torch

    return torch.from_numpy(read_image(path, channels=channels, size=size, mean=mean, std=std))


def read_image(
    path: str | Path | bytes,
    *,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> npt.NDArray[np.float32]:
    """An image file → float32 array ``[C, H, W]``: pixels / 255, resized (bilinear) to
    ``size`` (H, W) if given, converted to ``channels`` (1 = grayscale, 3 = RGB; default:
    the file's own, grayscale or RGB), then ``(x − mean) / std`` per channel if given.
    NumPy only, so that an ONNX analysis never imports torch.
    """
    if channels is not None and channels not in (1, 3):
        raise ImageError(f"images can have 1 or 3 channels, not {channels}")
    try:
        source = io.BytesIO(path) if isinstance(path, bytes) else path
        with Image.open(source) as opened:  # reads the header only
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"the image is {width}x{height} pixels; at most {MAX_PIXELS:,} are accepted"
                )
            mode = {1: "L", 3: "RGB"}.get(channels or 0) or (
                "L" if opened.mode in ("L", "1", "I;16", "I") else "RGB"
            )
            img = opened.convert(mode)
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"cannot read the image: {exc}") from None
    x = arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
    return normalise(x, mean, std)


def normalise(x: Img, mean: Sequence[float] | None, std: Sequence[float] | None) -> Img:
    """``(x − mean) / std`` per channel of a ``[C, H, W]`` array or tensor (mean and std
    in float32; a float32 image stays float32); a single value applies to every channel."""
    c = x.shape[0]
    m = _per_channel(mean, c, 0.0, "mean")
    s = _per_channel(std, c, 1.0, "std")
    if (s <= 0).any():
        raise ImageError("std must be positive")
    if isinstance(x, np.ndarray):
        return (x - m) / s
    import torch

    return (x - torch.from_numpy(m).to(x.device)) / torch.from_numpy(s).to(x.device)


def _per_channel(
    values: Sequence[float] | None, c: int, default: float, name: str
) -> npt.NDArray[np.float32]:
    vals = [default] if values is None else [float(v) for v in values]
    if len(vals) == 1:
        vals = vals * c
    if len(vals) != c:
        raise ImageError(f"{name} has {len(vals)} values but the image has {c} channels")
    return np.array(vals, dtype=np.float32).reshape(c, 1, 1)
