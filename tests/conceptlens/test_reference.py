"""Null references of the order-strength curve against closed forms (SCIENCE.md §4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conceptlens.pairwise import all_pairs, theory_curve
from conceptlens.reference import (
    exact_curve,
    exact_strength,
    gaussian_expected_curve,
    gaussian_expected_strength,
    gaussian_reference,
    permute_values,
    permuted_reference,
    rank_agreement,
    theory_log10,
    theory_ranks,
)


def test_permutation_keeps_the_multiset_and_both_ends() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=2**10)
    w = permute_values(v, rng)
    assert w[0] == v[0] and w[-1] == v[-1]
    np.testing.assert_array_equal(np.sort(w), np.sort(v))
    assert not np.array_equal(w, v)
    assert v[5] == np.asarray(v)[5]  # the input is not changed in place


def test_permuted_reference_of_an_iid_table_matches_the_gaussian_one() -> None:
    """A permuted i.i.d. Gaussian table is again i.i.d. Gaussian (apart from v(∅), v(N))."""
    n, draws = 9, 150
    rng = np.random.default_rng(1)
    ref = permuted_reference(rng.normal(size=2**n), rng=rng, draws=draws)
    expected = gaussian_expected_curve(n)
    inner = slice(1, n - 2)  # the end orders see the fixed v(∅) or v(N)
    tolerance = 5 * ref.sd / math.sqrt(draws) + 0.01 * expected
    assert np.all(np.abs(ref.mean - expected)[inner] < tolerance[inner])


@pytest.mark.parametrize("n", [6, 9, 12])
def test_gaussian_strength_matches_the_closed_form(n: int) -> None:
    """E|I^(m)(i,j)| = 2σ√(2/π)/√C(n−2, m): the mean over draws within 5 standard errors
    (draws are independent; the SE is their spread / √draws) plus 0.5 % for the mean's
    own small-sample wobble."""
    draws, sigma = 200, 1.7
    rng = np.random.default_rng(n)
    strength = np.stack([exact_strength(rng.normal(3.0, sigma, size=2**n)) for _ in range(draws)])
    expected = gaussian_expected_strength(n, sigma)
    se = strength.std(axis=0, ddof=1) / math.sqrt(draws)
    assert np.all(np.abs(strength.mean(axis=0) - expected) < 5 * se + 0.005 * expected)


def test_gaussian_expected_strength_at_order_zero_is_that_of_one_delta() -> None:
    """m = 0: I = Δv(i,j,∅), a sum of 4 independent N(0, σ²) with signs: N(0, 4σ²)."""
    assert gaussian_expected_strength(10, 2.0)[0] == pytest.approx(2 * 2.0 * math.sqrt(2 / math.pi))
    c = [math.comb(8, m) for m in range(9)]
    np.testing.assert_allclose(
        gaussian_expected_strength(10), 2 * math.sqrt(2 / math.pi) / np.sqrt(c), rtol=1e-12
    )


def test_gaussian_reference_is_symmetric_and_scale_free() -> None:
    n, draws = 10, 120
    expected = gaussian_expected_curve(n)
    np.testing.assert_allclose(expected, expected[::-1], rtol=1e-12)
    assert expected.mean() == pytest.approx(1.0)
    v = np.random.default_rng(2).normal(size=2**n)
    a = gaussian_reference(v, rng=np.random.default_rng(3), draws=draws)
    b = gaussian_reference(10 * v + 4, rng=np.random.default_rng(3), draws=draws)
    np.testing.assert_allclose(a.curves, b.curves, rtol=1e-9)  # J ignores scale and shift
    np.testing.assert_allclose(b.strength, 10 * a.strength, rtol=1e-9)
    # m ↔ n−2−m: the draws' mean is symmetric within its noise
    gap = np.abs(a.mean - a.mean[::-1])
    assert np.all(gap < 5 * np.sqrt(2) * a.sd / math.sqrt(draws))
    assert np.all(a.lo <= a.mean) and np.all(a.mean <= a.hi)
    assert a.curves.shape == (draws, n - 1) and a.orders.tolist() == list(range(n - 1))


def test_exact_curve_over_pairs_and_a_structured_game() -> None:
    """v = [S ⊇ {0, 1}]: only pair (0, 1) interacts, with I^(m) = 1 at every order: J = 1."""
    n = 6
    masks = np.arange(2**n)
    v = ((masks & 0b11) == 0b11).astype(np.float64)
    np.testing.assert_allclose(exact_curve(v), np.ones(n - 1))
    np.testing.assert_allclose(exact_strength(v, np.array([[0, 1]])), np.ones(n - 1))
    np.testing.assert_allclose(exact_strength(v), np.ones(n - 1) / len(all_pairs(n)))


@pytest.mark.parametrize("n", [4, 16, 40])
def test_theory_log10_is_the_log_of_the_theory_curve(n: int) -> None:
    np.testing.assert_allclose(10 ** theory_log10(n), theory_curve(n), rtol=1e-10)


def test_theory_spans_decades_that_j_does_not() -> None:
    assert theory_log10(16).max() - theory_log10(16).min() == pytest.approx(2.07, abs=0.01)
    span_256 = theory_log10(256).max() - theory_log10(256).min()
    assert 37 < span_256 < 39 and np.all(np.isfinite(theory_log10(1024)))


def test_theory_ranks_order_the_theory_curve() -> None:
    for n in (5, 16, 256):
        ranks = theory_ranks(n)
        assert sorted(ranks.tolist()) == list(range(1, n))
        f = theory_log10(n)
        assert np.all(np.diff(f[np.argsort(ranks)]) <= 0)  # rank 1 first, descending


def test_rank_agreement() -> None:
    j = np.array([4.0, 1.0, 0.5, 2.0])
    assert rank_agreement(j, 3 * j + 1) == pytest.approx(1.0)
    assert rank_agreement(j, -j) == pytest.approx(-1.0)
    assert rank_agreement(np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(
        math.sqrt(3) / 2
    )
    assert rank_agreement(gaussian_expected_curve(16), 10 ** theory_log10(16)) > 0.8  # 0.85
    with pytest.raises(ValueError):
        rank_agreement(np.array([1.0]), np.array([1.0]))
