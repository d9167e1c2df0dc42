"""Images as a model sees them (channels and size), as PNG — no torch, just Pillow."""

from __future__ import annotations

import io
import math

from PIL import Image


def preview_png(
    data: bytes, input_shape: list[int] | None, scale: int = 1, max_pixels: int = 4_000_000
) -> bytes:
    """Convert to the model's channels, resize to its input (bilinear, as the engine does),
    then enlarge by ``scale`` with crisp pixels. The PNG never holds more than
    ``max_pixels``: the scale is lowered to fit, and a larger image is shrunk to fit."""
    with Image.open(io.BytesIO(data)) as img:
        if input_shape:
            c, h, w = input_shape
            out = _fit(img.convert("L" if c == 1 else "RGB"), (w, h), max_pixels)
        else:
            img.draft("RGB", _within(img.size, max_pixels))  # JPEG decodes smaller at once
            out = _fit(img.convert("RGB"), img.size, max_pixels)
    scale = max(1, min(scale, math.isqrt(max_pixels // (out.width * out.height))))
    if scale > 1:
        out = out.resize((out.width * scale, out.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def _within(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """``size`` shrunk (aspect kept) to at most ``max_pixels``."""
    w, h = size
    if w * h <= max_pixels:
        return w, h
    shrink = math.sqrt(max_pixels / (w * h))
    return max(1, math.floor(w * shrink)), max(1, math.floor(h * shrink))


def _fit(img: Image.Image, size: tuple[int, int], max_pixels: int) -> Image.Image:
    target = _within(size, max_pixels)
    return img if img.size == target else img.resize(target, Image.Resampling.BILINEAR)
