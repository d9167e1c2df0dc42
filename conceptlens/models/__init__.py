"""Model architectures, safe loading of user models, and the demo model.

Example:
    >>> from conceptlens.models import ARCHITECTURES
    >>> ARCHITECTURES["digit_cnn"].input_shape
    (1, 16, 16)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .architectures import ARCHITECTURES, ArchitectureSpec, DigitCNN
from .loaders import FORMATS, LoadedModel, ModelLoadError, detect_format, load_model

if TYPE_CHECKING:
    from .demo import load_digits_16, train_demo_model, write_demo_model

_DEMO = ("load_digits_16", "train_demo_model", "write_demo_model")


def __getattr__(name: str) -> Any:
    """The demo model's functions, imported on first use (the demo pulls in scikit-learn)."""
    if name in _DEMO:
        from . import demo

        return getattr(demo, name)
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
