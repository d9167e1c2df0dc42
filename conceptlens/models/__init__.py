"""Model architectures, safe loading of user models, and the demo model.

Example:
    >>> from conceptlens.models import ARCHITECTURES
    >>> ARCHITECTURES["digit_cnn"].input_shape
    (1, 16, 16)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .formats import FORMATS, ModelLoadError, detect_format

if TYPE_CHECKING:
    from .architectures import ARCHITECTURES, ArchitectureSpec, DigitCNN
    from .demo import load_digits_16, train_demo_model, write_demo_model
    from .loaders import LoadedModel, load_model

_LAZY = {
    "ARCHITECTURES": "architectures",
    "ArchitectureSpec": "architectures",
    "DigitCNN": "architectures",
    "LoadedModel": "loaders",
    "load_model": "loaders",
    "load_digits_16": "demo",
    "train_demo_model": "demo",
    "write_demo_model": "demo",
}
"""Names imported on first use: the architectures and loaders import torch (which an ONNX
analysis never needs, :mod:`.formats`), the demo scikit-learn."""


def __getattr__(name: str) -> Any:
    """The names of :data:`_LAZY`, imported on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ARCHITECTURES",
    "FORMATS",
    "ArchitectureSpec",
    "DigitCNN",
    "LoadedModel",
    "ModelLoadError",
    "detect_format",
    "load_digits_16",
    "load_model",
    "train_demo_model",
    "write_demo_model",
]
