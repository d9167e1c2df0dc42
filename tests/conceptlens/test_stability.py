"""Stability of concepts (SCIENCE.md §6): analytic values for β, κ, α and PGD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conceptlens.stability import (
    adversarial_sensitivity,
    consistency,
    gaussian_noise,
    instability,
    per_order,
    pgd_attack,
)
from conceptlens.transforms import harsanyi, orders


def linear_tables(weights: np.ndarray, bias: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Harsanyi tables ``[X, 2**n]`` of ``v(S) = b + Σ_{i∈S} w_i`` computed by the transform.

    The exact tables are non-zero only at ∅ and order 1; the transform leaves rounding
    noise at higher orders.
    """
    n = weights.shape[1]
    masks = np.arange(1 << n)
    bits = ((masks[:, None] >> np.arange(n)) & 1).astype(np.float64)
    values = bias[:, None] + weights @ bits.T  # [X, 2**n]
    return np.stack([harsanyi(v.astype(dtype)) for v in values])


# ---------------------------------------------------------------- per_order


def test_per_order_means_and_defined_counts() -> None:
    # n = 3: order-1 masks 1, 2, 4; order-2 masks 3, 5, 6; order 3: mask 7
    values = np.array([100.0, 1.0, 3.0, np.nan, 5.0, np.inf, 2.0, np.nan])
    st = per_order(values, 3)
    assert st.orders.tolist() == [1, 2, 3]
    assert st.defined.tolist() == [3, 1, 0]
    assert st.mean[0] == pytest.approx(3.0)
    assert st.sd[0] == pytest.approx(math.sqrt(8 / 3))
    assert (st.mean[1], st.sd[1]) == (2.0, 0.0)  # NaN and inf are left out
    assert np.isnan(st.mean[2]) and np.isnan(st.sd[2])


def test_per_order_rejects_a_table_of_the_wrong_length() -> None:
    with pytest.raises(ValueError):
        per_order(np.zeros(6), 3)


# ---------------------------------------------------------------- consistency


def test_consistency_known_mean_and_sd_per_class() -> None:
    # n = 1: column 0 is ∅, column 1 is {0}
    tables = np.array(
        [
            [0.0, 1.0],  # class 0: 1, 2, 3 → mean 2, sd 1 → β = 2
            [0.0, 2.0],
            [0.0, 3.0],
            [0.0, -4.0],  # class 1: -4, 0 → mean -2, sd 2√2 → β = 1/√2
            [0.0, 0.0],
            [0.0, 9.0],  # class 2: one image, no SD → left out
        ]
    )
    beta, by_class = consistency(tables, [0, 0, 0, 1, 1, 2])
    assert sorted(by_class) == [0, 1]
    assert by_class[0][1] == pytest.approx(2.0)
    assert by_class[1][1] == pytest.approx(1 / math.sqrt(2))
    assert beta[1] == pytest.approx((2.0 + 1 / math.sqrt(2)) / 2)
    # ∅ is zero in every image: no interaction → NaN, not 0/0 garbage
    assert np.isnan(beta[0]) and np.isnan(by_class[0][0])


def test_consistency_of_identical_tables_is_inf_where_nonzero_and_nan_where_zero() -> None:
    row = np.array([0.1, 0.1, 0.0, 0.7, -0.3, 0.0, 0.2, 1e-3])  # 0.1 ×3 has a rounded mean
    tables = np.stack([row] * 3 + [row * 2] * 4)
    beta, by_class = consistency(tables, np.array([5, 5, 5, 7, 7, 7, 7]))
    for b in [beta, by_class[5], by_class[7]]:
        assert np.isnan(b[[2, 5]]).all()
        assert np.isposinf(b[[0, 1, 3, 4, 6, 7]]).all()
    st = per_order(beta, 3)  # inf is undefined for the per-order summary: no crash
    assert st.defined.tolist() == [0, 0, 0]


def test_consistency_averages_only_the_classes_where_it_is_defined() -> None:
    tables = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    beta, by_class = consistency(tables, [0, 0, 1, 1])
    assert np.isnan(by_class[0][1])
    assert beta[1] == pytest.approx(2 / math.sqrt(2))


def test_consistency_without_a_class_of_two_images_is_undefined() -> None:
    beta, by_class = consistency(np.ones((2, 4)), [0, 1])
    assert by_class == {}
    assert np.isnan(beta).all() and beta.shape == (4,)


def test_consistency_of_a_linear_model_is_undefined_at_orders_two_and_up() -> None:
    rng = np.random.default_rng(0)
    n = 4
    tables = linear_tables(rng.normal(size=(6, n)), rng.normal(size=6))
    beta, _ = consistency(tables, [0, 0, 0, 1, 1, 1])
    size = orders(n)
    assert np.isnan(beta[size >= 2]).all()
    assert np.isfinite(beta[size == 1]).all()


# ---------------------------------------------------------------- instability


def test_instability_hand_computed() -> None:
    clean = np.array([[1.0, 2.0], [1.0, -4.0]])  # X = 2, n = 1
    noisy = np.array(
        [
            [[1.0, 3.0], [1.0, 2.0]],  # |diffs| at {0}: 1, 0
            [[1.0, -4.0], [1.0, -1.0]],  # 0, 3
        ]
    )
    kappa = instability(clean, noisy)
    # ∅: no change → 0;  {0}: E|diff| = 4/4 = 1, E|I| = (2 + 4)/2 = 3
    assert kappa.tolist() == pytest.approx([0.0, 1 / 3])


def test_instability_of_unperturbed_copies_is_zero() -> None:
    rng = np.random.default_rng(1)
    clean = rng.normal(size=(3, 16))
    noisy = np.repeat(clean[:, None], 4, axis=1)
    assert instability(clean, noisy).tolist() == [0.0] * 16


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_instability_of_a_linear_model_is_undefined_at_orders_two_and_up(dtype: type) -> None:
    rng = np.random.default_rng(2)
    n, x, d = 5, 4, 3
    w, b = rng.normal(size=(x, n)), rng.normal(size=x)
    clean = linear_tables(w, b, dtype)
    noisy = np.stack(
        [linear_tables(w + 0.1 * rng.normal(size=w.shape), b, dtype) for _ in range(d)], axis=1
    )
    kappa = instability(clean, noisy)
    size = orders(n)
    assert np.isnan(kappa[size >= 2]).all()
    assert np.isfinite(kappa[size <= 1]).all()
    st = per_order(kappa, n)
    assert st.defined.tolist() == [n, 0, 0, 0, 0]
    assert np.isfinite(st.mean[0]) and np.isnan(st.mean[1:]).all()
    # the exact per-player value: E_x E_ε |Δw_i| / E_x |w_i|
    exact = np.abs(noisy[:, :, 1 << np.arange(n)] - clean[:, None, 1 << np.arange(n)])
    ratio = exact.mean(axis=(0, 1)) / np.abs(w).mean(axis=0)
    assert kappa[1 << np.arange(n)] == pytest.approx(ratio, rel=1e-5)


def test_instability_with_exact_zero_tolerance_keeps_rounding_noise() -> None:
    clean = np.array([[1.0, 0.0, 0.0, 1e-17]])
    noisy = np.array([[[1.0, 0.0, 0.0, 2e-17]]])
    assert np.isnan(instability(clean, noisy)[3])
    assert instability(clean, noisy, rtol=0.0)[3] == pytest.approx(1.0)


def test_adversarial_sensitivity_is_instability_with_one_copy() -> None:
    rng = np.random.default_rng(3)
    clean, attacked = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    alpha = adversarial_sensitivity(clean, attacked)
    expected = np.abs(attacked - clean).mean(axis=0) / np.abs(clean).mean(axis=0)
    assert alpha == pytest.approx(expected)


def test_instability_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        instability(np.zeros((2, 4)), np.zeros((3, 1, 4)))


# ---------------------------------------------------------------- PGD


def _binary_linear(weights: torch.Tensor, bias: torch.Tensor) -> torch.nn.Module:
    linear = torch.nn.Linear(weights.shape[1], 2)
    with torch.no_grad():
        linear.weight.copy_(weights)
        linear.bias.copy_(bias)
    return torch.nn.Sequential(torch.nn.Flatten(), linear)


@pytest.mark.parametrize("target", [0, 1])
def test_pgd_on_a_linear_logistic_model_reaches_the_closed_form_corner(target: int) -> None:
    # Cross-entropy of class t for logits z = Wx + b: ∇_x L = Σ_k p_k w_k − w_t
    # = p_o (w_o − w_t) for two classes (o the other one). p_o > 0, so every step moves δ
    # by step_size·sign(w_o − w_t); after 2.5ε of travel from any start in the ball,
    # δ = ε·sign(w_o − w_t) exactly.
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(2, 3 * 4 * 4, generator=g)
    model = _binary_linear(weights, torch.tensor([0.3, -0.2]))
    x = torch.randn(3, 4, 4, generator=g)
    eps = 0.05
    delta = pgd_attack(model, x, target, epsilon=eps, steps=10, seed=4)
    other = 1 - target
    expected = eps * torch.sign(weights[other] - weights[target]).reshape(3, 4, 4)
    assert delta.shape == x.shape
    assert torch.allclose(delta, expected, atol=1e-7)
    assert float(delta.abs().max()) <= eps + 1e-7
    for p in model.parameters():
        assert p.grad is None  # gradients w.r.t. the input only


def test_pgd_increases_the_loss_and_works_under_no_grad() -> None:
    g = torch.Generator().manual_seed(1)
    weights = torch.randn(2, 12, generator=g)
    model = _binary_linear(weights, torch.zeros(2))
    x = torch.randn(3, 2, 2, generator=g)
    with torch.no_grad():
        delta = pgd_attack(model, x, 0, epsilon=0.1, steps=5, seed=0)
        loss = torch.nn.functional.cross_entropy
        before = loss(model(x[None]), torch.tensor([0]))
        after = loss(model((x + delta)[None]), torch.tensor([0]))
    assert float(after) > float(before)


@pytest.mark.parametrize("target", [0, 1])
def test_pgd_with_one_logit_reads_it_as_the_log_odds_of_class_one(target: int) -> None:
    # z = w·x; CE of class 1 is −log σ(z): ∇ = −(1 − σ) w → δ = −ε·sign(w); class 0: +ε·sign(w)
    w = torch.tensor([1.0, -2.0, 0.5, -0.1])

    def model(batch: torch.Tensor) -> torch.Tensor:
        return (batch.flatten(1) @ w)[:, None]

    delta = pgd_attack(model, torch.zeros(1, 2, 2), target, epsilon=0.2, steps=8, seed=9)
    sign = -1.0 if target == 1 else 1.0
    assert torch.allclose(delta.flatten(), sign * 0.2 * torch.sign(w))


def test_pgd_is_reproducible_under_the_seed_and_stays_in_the_ball() -> None:
    g = torch.Generator().manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    )
    x = torch.randn(3, 2, 2, generator=g)
    a = pgd_attack(net, x, 2, epsilon=0.03, steps=3, step_size=0.005, seed=11)
    b = pgd_attack(net, x, 2, epsilon=0.03, steps=3, step_size=0.005, seed=11)
    c = pgd_attack(net, x, 2, epsilon=0.03, steps=3, step_size=0.005, seed=12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(a.abs().max()) <= 0.03 + 1e-7
    start = pgd_attack(net, x, 2, epsilon=0.03, steps=0, seed=11)  # the random start alone
    assert float(start.abs().max()) <= 0.03 and float(start.abs().min()) > 0


def test_pgd_with_zero_budget_is_zero() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    delta = pgd_attack(net, torch.ones(1, 2, 2), 0, epsilon=0.0)
    assert torch.equal(delta, torch.zeros(1, 2, 2))


# ---------------------------------------------------------------- noise


def test_gaussian_noise_is_reproducible_float32_with_sigma() -> None:
    a = gaussian_noise((3, 8, 8), 0.5, 200, seed=5)
    assert a.shape == (200, 3, 8, 8) and a.dtype == np.float32
    assert np.array_equal(a, gaussian_noise((3, 8, 8), 0.5, 200, seed=5))
    assert not np.array_equal(a, gaussian_noise((3, 8, 8), 0.5, 200, seed=6))
    # draw k does not depend on how many draws are asked for
    assert np.array_equal(a[:7], gaussian_noise((3, 8, 8), 0.5, 7, seed=5))
    assert float(a.std()) == pytest.approx(0.5, rel=0.02)  # 38 400 samples: s.e. ≈ 0.4 %
    assert abs(float(a.mean())) < 0.02
    assert not gaussian_noise((2,), 0.0, 3, seed=0).any()
