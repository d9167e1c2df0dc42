"""Shared fixtures: the demo model, written once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conceptlens.models import DigitCNN, train_demo_model
from conceptlens.models.demo import pixels_to_float


@pytest.fixture(scope="session")
def trained_model() -> DigitCNN:
    """The demo model trained again in this process (same seed as ``demo_dir``'s)."""
    model, _ = train_demo_model(seed=0)
    return model


@pytest.fixture(scope="session")
def sample_batch(demo_dir: Path, demo_manifest: dict[str, Any]) -> torch.Tensor:
    """The sample PNGs read back as a float batch ``[8, 1, 16, 16]``."""
    pixels = [np.asarray(Image.open(demo_dir / s["file"])) for s in demo_manifest["samples"]]
    return pixels_to_float(np.stack(pixels)).unsqueeze(1)
