"""Model architectures, safe loading of user models, and the demo model.

Example:
    >>> from conceptlens.models import ARCHITECTURES
    >>> ARCHITECTURES["digit_cnn"].input_shape
    (1, 16, 16)
"""

from .architectures import ARCHITECTURES, ArchitectureSpec, DigitCNN
from .demo import load_digits_16, train_demo_model, write_demo_model
from .loaders import FORMATS, LoadedModel, ModelLoadError, detect_format, load_model

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
