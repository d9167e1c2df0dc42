"""Images as a model sees them (channels and size), as PNG — no torch, just Pillow."""

from __future__ import annotations

import io

from PIL import Image


def preview_png(data: bytes, input_shape: list[int] | None, scale: int = 1) -> bytes:
    """Convert to the model's channels, resize to its input (bilinear, as the engine does),
    then enlarge by ``scale`` with crisp pixels."""
    with Image.open(io.BytesIO(data)) as img:
        out = img.convert("RGB")
        if input_shape:
            c, h, w = input_shape
            out = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
    if scale > 1:
        out = out.resize((out.width * scale, out.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()
