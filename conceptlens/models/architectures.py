"""Model architectures that ConceptLens itself defines.

Weights-only files (safetensors, ``torch.save`` state dicts) carry no code, so they can
only be loaded into an architecture that lives here. Each one is registered in
:data:`ARCHITECTURES` under a stable key that files record as their architecture name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "ArchitectureSpec", "DigitCNN"]


class DigitCNN(nn.Module):
    """A small CNN for 16×16 grayscale digits: ``[B, 1, 16, 16]`` in [0, 1] → ``[B, 10]`` logits.

    Layout (submodule names are stable, later code picks intermediate layers by them)::

        conv1 (1→16, 3×3, pad 1) → relu1 → pool1 (2×2)   # [B, 16, 8, 8]
        conv2 (16→32, 3×3, pad 1) → relu2 → pool2 (2×2)  # [B, 32, 4, 4]
        flatten → fc1 (512→64) → relu3 → fc2 (64→10)      # [B, 10]

    Cost: about 0.37 M multiply-adds per image (conv2 is 80% of them) and 38,282
    parameters; the 2^16 masked inputs of a 16-player Harsanyi game took about 6 s on
    two shared CPU cores.

    Example:
        >>> DigitCNN()(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        return self.fc2(x)


@dataclass(frozen=True)
class ArchitectureSpec:
    """How to build one registered architecture and what it consumes and produces.

    Attributes:
        name: registry key, also stored in weight files (``conceptlens_architecture``).
        build: returns a freshly initialised module (random weights, train mode).
        input_shape: ``(C, H, W)`` of one input image.
        num_classes: number of logits the module returns.
    """

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]
    num_classes: int


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "digit_cnn": ArchitectureSpec(
        name="digit_cnn", build=DigitCNN, input_shape=(1, 16, 16), num_classes=10
    ),
}
"""Registered architectures by name."""
