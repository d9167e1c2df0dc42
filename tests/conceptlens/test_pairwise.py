"""Multi-order interactions: SCIENCE.md §4 closed form against the definition."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from conceptlens.pairwise import (
    all_pairs,
    local_pairs,
    multi_order,
    order_weights,
    pair_dividend_sums,
    pair_strength,
    relative_strength,
    shapley_interaction,
    theory_curve,
)
from conceptlens.transforms import harsanyi


def multi_order_by_definition(v: np.ndarray, n: int) -> np.ndarray:
    """``I^(m)(i,j) = E_{S⊆N∖{i,j}, |S|=m} Δv(i,j,S)`` by enumerating every context."""
    out = np.zeros((n - 1, n, n))
    for i, j in combinations(range(n), 2):
        rest = [k for k in range(n) if k not in (i, j)]
        for m in range(n - 1):
            total = 0.0
            for ctx in combinations(rest, m):
                s = sum(1 << k for k in ctx)
                bi, bj = 1 << i, 1 << j
                total += v[s | bi | bj] - v[s | bi] - v[s | bj] + v[s]
            out[m, i, j] = out[m, j, i] = total / math.comb(n - 2, m)
    return out


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_closed_form_matches_definition(n: int) -> None:
    v = np.random.default_rng(n).normal(size=1 << n)
    np.testing.assert_allclose(
        multi_order(harsanyi(v)), multi_order_by_definition(v, n), atol=1e-9, rtol=0
    )


def test_shape_symmetry_and_zero_diagonal() -> None:
    n = 7
    out = multi_order(harsanyi(np.random.default_rng(0).normal(size=1 << n)))
    assert out.shape == (n - 1, n, n)
    np.testing.assert_allclose(out, out.transpose(0, 2, 1))
    assert np.all(out[:, np.arange(n), np.arange(n)] == 0)


def pair_dividend_sums_bit_matrices(interactions: np.ndarray) -> np.ndarray:
    """The implementation before issue 14 (bits × table products per order), the oracle."""
    table = np.asarray(interactions, dtype=np.float64)
    n = int(table.size).bit_length() - 1
    masks = np.arange(1 << n, dtype=np.int64)
    bits = ((masks[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(np.float64)
    size = bits.sum(axis=1).astype(np.int64)
    out = np.zeros((n - 1, n, n))
    for k in range(2, n + 1):
        rows = size == k
        out[k - 2] += (bits[rows] * table[rows, None]).T @ bits[rows]
    out[:, np.arange(n), np.arange(n)] = 0.0
    return out


def pair_dividend_sums_by_definition(interactions: np.ndarray, n: int) -> np.ndarray:
    """``A[l, i, j] = Σ_{T⊇{i,j}, |T|=l+2} I(T)``, literally."""
    out = np.zeros((n - 1, n, n))
    for mask in range(1 << n):
        members = [k for k in range(n) if mask >> k & 1]
        for i, j in combinations(members, 2):
            out[len(members) - 2, i, j] += interactions[mask]
            out[len(members) - 2, j, i] += interactions[mask]
    return out


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_pair_dividend_sums_match_their_definition(n: int) -> None:
    table = np.random.default_rng(n).normal(size=1 << n)
    np.testing.assert_allclose(
        pair_dividend_sums(table), pair_dividend_sums_by_definition(table, n), atol=1e-12
    )


@pytest.mark.parametrize("n", range(2, 15))
def test_pair_dividend_sums_equal_the_bit_matrix_formulation(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    table = rng.normal(size=1 << n) * rng.choice([1e-3, 1.0, 1e3], size=1 << n)
    got = pair_dividend_sums(table)
    want = pair_dividend_sums_bit_matrices(table)
    assert got.shape == want.shape == (n - 1, n, n)
    scale = np.abs(table).sum()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * scale)
    np.testing.assert_array_equal(got, got.transpose(0, 2, 1))
    assert np.all(got[:, np.arange(n), np.arange(n)] == 0)


def test_pair_dividend_sums_in_row_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of rows smaller than a popcount group (several blocks, a partial last one)."""
    from conceptlens import pairwise

    table = np.random.default_rng(9).normal(size=1 << 11)
    want = pair_dividend_sums_bit_matrices(table)
    for values in (1, 100, 1 << 7, 3 << 5):
        monkeypatch.setattr(pairwise, "_BLOCK_VALUES", values)
        np.testing.assert_allclose(pair_dividend_sums(table), want, rtol=0, atol=1e-11)


def test_pair_dividend_sums_of_a_single_player_are_empty() -> None:
    assert pair_dividend_sums(np.ones(2)).shape == (0, 1, 1)
    with pytest.raises(ValueError, match="1-D"):
        pair_dividend_sums(np.ones((4, 1)))


def shapley_interaction_by_definition(v: np.ndarray, n: int, i: int, j: int) -> float:
    """Grabisch's Shapley interaction index of the pair ``{i, j}``."""
    rest = [k for k in range(n) if k not in (i, j)]
    total = 0.0
    for m in range(n - 1):
        weight = math.factorial(m) * math.factorial(n - m - 2) / math.factorial(n - 1)
        for ctx in combinations(rest, m):
            s = sum(1 << k for k in ctx)
            bi, bj = 1 << i, 1 << j
            total += weight * (v[s | bi | bj] - v[s | bi] - v[s | bj] + v[s])
    return total


def test_shapley_interaction_index() -> None:
    n = 6
    v = np.random.default_rng(5).normal(size=1 << n)
    index = shapley_interaction(multi_order(harsanyi(v)))
    for i, j in [(0, 1), (2, 5), (3, 4)]:
        assert index[i, j] == pytest.approx(
            shapley_interaction_by_definition(v, n, i, j), abs=1e-10
        )


def test_weights_are_probabilities_of_containing_a_set() -> None:
    w = order_weights(10)
    assert np.all(w[:, 0] == 1.0)  # the empty set is in every context
    assert np.allclose(np.diag(w), [1 / math.comb(8, m) for m in range(9)])
    assert np.all(np.triu(w, k=1) == 0)


def test_relative_strength_averages_samples_then_normalises() -> None:
    strengths = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    np.testing.assert_allclose(relative_strength(strengths), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(relative_strength(np.array([1.0, 3.0])), [0.5, 1.5])
    assert relative_strength(np.array([2.0, 4.0, 6.0])).mean() == pytest.approx(1.0)


def test_theory_curve_formula_and_scale() -> None:
    n = 9
    raw = np.array(
        [(n - m - 1) / (n * (n - 1)) / math.sqrt(math.comb(n - 2, m)) for m in range(n - 1)]
    )
    np.testing.assert_allclose(theory_curve(n), raw / raw.mean(), rtol=1e-12)
    big = theory_curve(256)
    assert big.shape == (255,) and np.all(np.isfinite(big)) and big.mean() == pytest.approx(1.0)


def test_pair_strength_uses_requested_pairs() -> None:
    multi = np.zeros((2, 4, 4))
    multi[:, 0, 1] = multi[:, 1, 0] = [2.0, -4.0]
    np.testing.assert_allclose(pair_strength(multi, np.array([[0, 1]])), [2.0, 4.0])
    np.testing.assert_allclose(pair_strength(multi), [2.0 / 6, 4.0 / 6])


def test_pairs() -> None:
    assert len(all_pairs(6)) == 15
    pairs = local_pairs(16, 16, radius=2)
    r, c = np.divmod(pairs, 16)
    assert np.all(np.maximum(abs(r[:, 0] - r[:, 1]), abs(c[:, 0] - c[:, 1])) <= 2)
    assert np.all(pairs[:, 0] < pairs[:, 1])
    # interior patch: 24 neighbours within radius 2, each pair counted once
    assert len(pairs) == sum(
        1
        for i in range(256)
        for j in range(i + 1, 256)
        if max(abs(i // 16 - j // 16), abs(i % 16 - j % 16)) <= 2
    )
