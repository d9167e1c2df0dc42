"""Fixtures for the feature-components tests: toy targets with known complexity, the demo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conceptlens.models import DigitCNN, train_demo_model
from conceptlens.models.demo import load_digits_16, split_digits

N_TRAIN, N_TEST = 768, 256


@dataclass
class Toy:
    """Gaussian images ``[N, 1, 8, 8]`` and a target feature computed from them."""

    x_train: torch.Tensor
    f_train: torch.Tensor
    x_test: torch.Tensor
    f_test: torch.Tensor


def gaussian_images(seed: int) -> torch.Tensor:
    return torch.randn(N_TRAIN + N_TEST, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def unit_kernel(seed: int) -> torch.Tensor:
    """A random 3×3 filter of unit norm: ``z = k * x`` is N(0, 1) inside the image."""
    k = torch.randn(1, 1, 3, 3, generator=torch.Generator().manual_seed(seed))
    return k / k.norm()


def hat_net(seed: int, cut: float = 0.8) -> nn.Sequential:
    """A known net with exactly two ReLU layers: ``f = ||z| − cut|`` with ``z = k * x``.

    Layer 1 makes ``ReLU(z), ReLU(−z)`` (their sum is ``|z|``); layer 2 makes
    ``ReLU(|z| − cut), ReLU(cut − |z|)`` and sums them. For Gaussian ``x`` the target is an
    even function of ``z``, so no linear map of ``x`` predicts it (its best linear R² is 0).
    """
    k = unit_kernel(seed)
    first = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    second = nn.Conv2d(2, 2, 1)
    last = nn.Conv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.cat([k, -k]))
        second.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]).view(2, 2, 1, 1))
        assert second.bias is not None
        second.bias.copy_(torch.tensor([-cut, cut]))
        last.weight.fill_(1.0)
    return nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), last).eval()


def toy(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> Toy:
    with torch.no_grad():
        f = fn(x)
    return Toy(x[:N_TRAIN], f[:N_TRAIN], x[N_TRAIN:], f[N_TRAIN:])


@pytest.fixture(scope="session")
def linear_toy() -> Toy:
    """A feature that is exactly linear in the input: a fixed random 3×3 conv, 2 channels."""
    kernel = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    return toy(gaussian_images(0), lambda x: F.conv2d(x, kernel, padding=1))


@pytest.fixture(scope="session")
def hat_toy() -> Toy:
    """The feature of :func:`hat_net` (two ReLU layers)."""
    return toy(gaussian_images(2), hat_net(3))


@pytest.fixture(scope="session")
def demo_cnn() -> DigitCNN:
    """A briefly trained demo model (3 epochs, seed 0)."""
    model, _ = train_demo_model(seed=0, epochs=3)
    return model


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of the demo's fixed split."""
    return split_digits(*load_digits_16())
