"""Salient interactions, sparsity and the monotonicity exponent — SCIENCE.md §3."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conceptlens.sparsity import (
    average_output_by_order,
    monotonicity_exponent,
    normalised_strength,
    salient_counts,
    sorted_strengths,
    top_k,
)
from conceptlens.transforms import harsanyi


def test_normalised_strength_ignores_the_empty_set() -> None:
    strength = normalised_strength(np.array([100.0, -2.0, 1.0, 0.5]))
    np.testing.assert_allclose(strength, [0.0, 1.0, 0.5, 0.25])


def test_salient_counts_by_order_and_sign_at_tau() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=1 << 8)
    counts = salient_counts(table, tau=0.3)
    strength = normalised_strength(table)
    for k in range(9):
        members = [s for s in range(1, 256) if bin(s).count("1") == k]
        assert counts.positive[k] == sum(strength[s] >= 0.3 and table[s] > 0 for s in members)
        assert counts.negative[k] == sum(strength[s] >= 0.3 and table[s] < 0 for s in members)
    assert counts.total == int((strength[1:] >= 0.3).sum())


def test_sorted_strengths_descend_from_one() -> None:
    curve = sorted_strengths(np.random.default_rng(1).normal(size=64))
    assert curve[0] == 1.0 and len(curve) == 63
    assert np.all(np.diff(curve) <= 0)


def test_top_k_orders_by_strength_and_skips_empty_set() -> None:
    table = np.array([50.0, 1.0, -7.0, 3.0, 0.0, -4.0, 2.0, 6.0])
    assert top_k(table, 3).tolist() == [2, 7, 5]
    assert top_k(table, 100).tolist()[:2] == [2, 7] and len(top_k(table, 100)) == 7


def test_average_output_by_order() -> None:
    n = 6
    v = np.array([float(bin(s).count("1") ** 2) for s in range(1 << n)]) + 5.0
    np.testing.assert_allclose(average_output_by_order(v), np.arange(n + 1) ** 2)


@pytest.mark.parametrize("power", [0.5, 1.0, 3.0])
def test_monotonicity_exponent_of_a_power_law(power: float) -> None:
    u = np.arange(12, dtype=np.float64) ** power
    assert monotonicity_exponent(u) == pytest.approx(power)


def test_monotonicity_exponent_zero_when_decreasing_and_nan_when_undefined() -> None:
    assert monotonicity_exponent(np.array([0.0, 5.0, 3.0, 1.0])) == 0.0
    assert np.isnan(monotonicity_exponent(np.array([0.0, -1.0, -2.0])))


def test_salient_polynomial_game() -> None:
    """``v = 3·[p1∧p2] + 2·[p3]`` has exactly two salient sets at any τ ≤ 2/3."""
    n = 4
    v = np.array([3.0 * ((s >> 1) & (s >> 2) & 1) + 2.0 * ((s >> 3) & 1) for s in range(1 << n)])
    counts = salient_counts(harsanyi(v), tau=0.5)
    assert counts.positive.tolist() == [0, 1, 1, 0, 0] and counts.total == 2


# Span by span (issue 14: an analysis's memory is its tables, not temporaries of their size).
# n = 18 spans four of conceptlens.transforms.SPAN entries; each result is checked against
# the whole-table formula it replaced.


def _spanning_table() -> np.ndarray:
    table = np.random.default_rng(18).normal(size=1 << 18)
    table[[5, 70_000, 200_000]] = [9.0, -9.0, 9.0]  # ties across spans
    return table


def test_span_by_span_results_equal_the_whole_table_formulas() -> None:
    table = _spanning_table()
    popcount = np.array([bin(s).count("1") for s in range(table.size)])
    strength = np.abs(table) / np.abs(table[1:]).max()
    strength[0] = 0.0
    counts = salient_counts(table, tau=0.2)
    salient = strength >= 0.2
    assert (
        counts.positive.tolist()
        == np.bincount(popcount[salient & (table > 0)], minlength=19).tolist()
    )
    assert (
        counts.negative.tolist()
        == np.bincount(popcount[salient & (table < 0)], minlength=19).tolist()
    )
    expected_u = np.bincount(popcount, weights=table - table[0]) / np.bincount(popcount)
    np.testing.assert_allclose(average_output_by_order(table), expected_u, rtol=1e-12)
    assert np.array_equal(sorted_strengths(table), -np.sort(-strength[1:]))


def test_top_k_across_spans_breaks_ties_by_the_smaller_mask() -> None:
    table = _spanning_table()
    assert top_k(table, 2).tolist() == [5, 70_000]
    assert top_k(table, 3).tolist() == [5, 70_000, 200_000]
    expected = np.lexsort((np.arange(1, table.size), -np.abs(table[1:])))[:50] + 1
    assert top_k(table, 50).tolist() == expected.tolist()


def test_top_k_larger_than_a_span_never_returns_the_empty_set() -> None:
    table = np.random.default_rng(3).normal(size=1 << 17)
    table[0] = 1e9
    masks = top_k(table, 70_000)
    assert len(masks) == 70_000 and 0 not in set(masks.tolist())


def test_top_k_of_a_sparse_table_keeps_the_smallest_masks_among_zeros() -> None:
    table = np.zeros(1 << 18)
    table[[3, 100_000]] = [2.0, -5.0]
    assert top_k(table, 5).tolist() == [100_000, 3, 1, 2, 4]


def test_top_k_merges_at_most_2k_candidates_per_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """A span of equal strengths (zeros) put all its 65,536 entries into the merge before."""
    sizes: list[int] = []
    lexsort = np.lexsort

    def recording(keys: Any) -> Any:
        sizes.append(len(keys[0]))
        return lexsort(keys)

    monkeypatch.setattr(np, "lexsort", recording)
    table = np.zeros(1 << 18)
    table[3] = 1.0
    assert top_k(table, 5).tolist() == [3, 1, 2, 4, 5]
    assert len(sizes) == 4 and max(sizes) <= 10
