"""The paper's reliability estimator: parallel heads on one trunk, then cycle maps."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from conceptlens.components.features import ComponentsError
from conceptlens.components.reliable import SharedDisentangler, cycle_reliability
from tests.conceptlens.components.conftest import Toy

SETTINGS: dict[str, Any] = {"orders": (0, 1), "width": 8, "epochs": 4, "batch_size": 64, "seed": 0}


def test_exemplars_identical_to_the_target_give_reliability_one(linear_toy: Toy) -> None:
    """Two exemplars that are the target itself: every order is fully reliable."""
    t = linear_toy
    r = cycle_reliability(t.x_train, [t.f_train] * 3, t.x_test, [t.f_test] * 3, **SETTINGS)
    assert r.reliability.cumulative == pytest.approx([1.0, 1.0], abs=1e-3)
    assert r.reliability.component == pytest.approx([1.0, 1.0], abs=1e-3)
    assert all(len(row) == 3 for row in r.head_r2)
    assert min(r.head_r2[-1]) > 0.9  # the trunk mimics the linear feature


def test_an_exemplar_with_an_unrelated_feature_lowers_it(linear_toy: Toy) -> None:
    """One exemplar's feature is random noise, unrelated to the images: nothing of the
    target survives the cycle through it."""
    t = linear_toy
    gen = torch.Generator().manual_seed(4)
    noise_train = torch.randn(t.f_train.shape, generator=gen)
    noise_test = torch.randn(t.f_test.shape, generator=gen)
    same = cycle_reliability(t.x_train, [t.f_train] * 3, t.x_test, [t.f_test] * 3, **SETTINGS)
    mixed = cycle_reliability(
        t.x_train, [t.f_train, t.f_train, noise_train], t.x_test,
        [t.f_test, t.f_test, noise_test], **SETTINGS,
    )  # fmt: skip
    assert mixed.reliability.cumulative[0] < 0.5 * same.reliability.cumulative[0]
    assert mixed.head_r2[-1][2] < 0.1  # the noise head fits nothing held out


def test_it_is_deterministic(linear_toy: Toy) -> None:
    t = linear_toy
    runs = [
        cycle_reliability(t.x_train, [t.f_train] * 2, t.x_test, [t.f_test] * 2, **SETTINGS)
        for _ in range(2)
    ]
    assert runs[0].reliability.cumulative.tolist() == runs[1].reliability.cumulative.tolist()


def test_feature_maps_of_another_size_are_refused() -> None:
    with pytest.raises(ComponentsError, match="same height and width"):
        SharedDisentangler((1, 8, 8), [(2, 8, 8), (2, 4, 4)], order=0, width=4)
    with pytest.raises(ComponentsError, match="exemplar"):
        x = torch.zeros(4, 1, 8, 8)
        cycle_reliability(x, [torch.zeros(4, 2)], x, [torch.zeros(4, 2)], orders=(0,))
