"""Reading images into the model's input space: scale to [0, 1], resize, normalise.

Pillow decodes; the pixel cap guards against decompression bombs. Nothing here runs code
from the file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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
    """An image file → float32 ``[C, H, W]``: pixels / 255, resized (bilinear) to ``size``
    (H, W) if given, converted to ``channels`` (1 = grayscale, 3 = RGB; default: the
    file's own, grayscale or RGB), then ``(x − mean) / std`` per channel if given.
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
    x = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
    return normalise(x, mean, std)


def normalise(
    x: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> torch.Tensor:
    """``(x − mean) / std`` per channel; a single value applies to every channel."""
    c = x.shape[0]
    m = _per_channel(mean, c, 0.0, "mean")
    s = _per_channel(std, c, 1.0, "std")
    if (s <= 0).any():
        raise ImageError("std must be positive")
    return (x - m) / s


def _per_channel(values: Sequence[float] | None, c: int, default: float, name: str) -> torch.Tensor:
    vals = [default] if values is None else [float(v) for v in values]
    if len(vals) == 1:
        vals = vals * c
    if len(vals) != c:
        raise ImageError(f"{name} has {len(vals)} values but the image has {c} channels")
    return torch.tensor(vals, dtype=torch.float32).view(c, 1, 1)
