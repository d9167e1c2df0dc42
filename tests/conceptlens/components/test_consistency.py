"""Knowledge consistency (SCIENCE.md §8): what the estimator guarantees, checked analytically."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conceptlens.components import ComponentsError
from conceptlens.components.consistency import (
    ConsistencyPlan,
    Direction,
    fit_consistency,
    knowledge_consistency,
)

PLAN = ConsistencyPlan(width=8, epochs=4, seed=0)


def _maps(seed: int, n: int = 240, channels: int = 4, side: int = 6) -> torch.Tensor:
    return torch.randn(n, channels, side, side, generator=torch.Generator().manual_seed(seed))


def _split(f: torch.Tensor, cut: int = 180) -> tuple[torch.Tensor, torch.Tensor]:
    return f[:cut], f[cut:]


def _fit(fb: torch.Tensor, fa: torch.Tensor, plan: ConsistencyPlan = PLAN) -> Direction:
    """``fa`` reconstructed from ``fb``, fitted on the first 180 images."""
    (b_train, b_test), (a_train, a_test) = _split(fb), _split(fa)
    return fit_consistency(b_train, a_train, b_test, a_test, plan=plan)


def test_a_linear_function_of_the_other_feature_is_consistent_at_order_0() -> None:
    """``f_A = conv3×3(f_B) + b``: affine inside the 5×5 window, so ``x^(0) = f_A`` up to
    rounding; the k = 1, 2 parts and ε are bounded by what order 0 left: ≈ 0."""
    fb = _maps(0)
    kernel = torch.randn(3, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    fa = F.conv2d(fb, kernel, padding=1) + 0.5
    (b_train, b_test), (a_train, a_test) = _split(fb), _split(fa)
    d = fit_consistency(b_train, a_train, b_test, a_test, plan=PLAN)
    for split in ("train", "test"):
        v = d.variances(split)
        assert v["consistent"][0] == pytest.approx(v["feature"], rel=1e-6)
        assert v["consistent"][1] < 1e-9 * v["feature"]
        assert v["consistent"][2] < 1e-9 * v["feature"]
        assert v["inconsistent"] < 1e-9 * v["feature"]
        assert v["cumulative_r2"][0] > 1 - 1e-9
    # the parts add up to the feature, exactly
    assert torch.allclose(d.parts_test.sum(0), a_test, atol=1e-5)


def test_a_flat_linear_feature_is_consistent_at_order_0() -> None:
    fb = _maps(2)
    mix = torch.randn(4 * 36, 5, generator=torch.Generator().manual_seed(3))
    fa = fb.flatten(1) @ mix
    (b_train, b_test), (a_train, a_test) = _split(fb), _split(fa)
    v = fit_consistency(b_train, a_train, b_test, a_test, plan=PLAN).variances("test")
    assert v["consistent"][0] == pytest.approx(v["feature"], rel=1e-6)
    assert max([*v["consistent"][1:], v["inconsistent"]]) < 1e-9 * v["feature"]


def test_a_feature_independent_of_the_other_is_mostly_inconsistent() -> None:
    """Independent noise: order 0 fits only noise on the fitting images (≈ Din/rows) and
    nothing on held-out images, where ε keeps ≥ 90 % of the variance."""
    fb, fa = _maps(4), _maps(5, channels=3)
    (b_train, b_test), (a_train, a_test) = _split(fb), _split(fa)
    d = fit_consistency(b_train, a_train, b_test, a_test, plan=PLAN)
    test = d.variances("test")
    assert test["inconsistent"] > 0.9 * test["feature"]
    assert test["cumulative_r2"][-1] < 0.05
    assert sum(test["consistent"]) < 0.1 * test["feature"]


def test_higher_orders_take_what_is_non_linear() -> None:
    """``f_A = |f_B|`` (even, so no linear part): order 0 explains little of it and the
    non-linear orders explain much of the rest."""
    fb = _maps(6, n=600, channels=2)
    fa = fb.abs()
    (b_train, b_test), (a_train, a_test) = _split(fb, 480), _split(fa, 480)
    plan = ConsistencyPlan(width=8, epochs=40, lr=1e-2, seed=0)
    v = fit_consistency(b_train, a_train, b_test, a_test, plan=plan).variances("test")
    assert v["cumulative_r2"][0] < 0.1
    assert v["cumulative_r2"][-1] > 0.6
    assert v["inconsistent"] < 0.4 * v["feature"]


def test_training_residual_never_grows_with_order() -> None:
    fb, fa = _maps(7), _maps(8, channels=2)
    d = _fit(fb, fa)
    r2 = d.variances("train")["cumulative_r2"]
    assert r2 == sorted(r2)


def test_deterministic_under_a_seed() -> None:
    fb, fa = _maps(9), _maps(10, channels=2).abs()
    one = _fit(fb, fa)
    two = _fit(fb, fa)
    assert torch.equal(one.parts_test, two.parts_test)


def test_both_directions_between_two_models() -> None:
    """B is A followed by a fixed 1×1 conv: A from B is not guaranteed, but B from A is
    linear and so fully consistent at order 0."""
    torch.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU()).eval()
    b = nn.Sequential(a, nn.Conv2d(3, 2, 1)).eval()
    x = torch.randn(200, 1, 6, 6, generator=torch.Generator().manual_seed(11))
    result = knowledge_consistency(a, "1", b, "1", x[:150], x[150:], plan=PLAN)
    out = result.to_dict()
    b_from_a = out["b_from_a"]["test"]
    assert b_from_a["consistent"][0] == pytest.approx(b_from_a["feature"], rel=1e-5)
    assert out["orders"] == [0, 1, 2]
    assert out["a_from_b"]["feature_shape"] == [3, 6, 6]


def test_refuses_orders_not_starting_at_zero() -> None:
    fb = _maps(0, n=20)
    with pytest.raises(ComponentsError, match="start at 0"):
        fit_consistency(fb[:10], fb[:10], fb[10:], fb[10:], plan=ConsistencyPlan(orders=(1, 2)))
