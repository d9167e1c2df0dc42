"""AND-OR interactions: SCIENCE.md §2 faithfulness and the learned sparse split."""

from __future__ import annotations

import numpy as np
import pytest

from conceptlens.and_or import and_or_interactions, and_or_residual, and_or_tables
from conceptlens.game import value_table
from conceptlens.transforms import harsanyi


@pytest.mark.parametrize("n", [1, 4, 8, 12])
def test_faithfulness_for_any_split(n: int) -> None:
    rng = np.random.default_rng(n)
    v, gamma = rng.normal(size=1 << n), rng.normal(size=1 << n)
    i_and, i_or = and_or_tables(v, gamma)
    assert and_or_residual(v, i_and, i_or) < 1e-9
    assert i_or[0] == 0.0 and i_and[0] == v[0]


def test_faithfulness_by_explicit_sums() -> None:
    """``v(T) = v(∅) + Σ_{∅≠S⊆T} I_and(S) + Σ_{S∩T≠∅} I_or(S)``, summed literally."""
    n = 5
    rng = np.random.default_rng(7)
    v, gamma = rng.normal(size=1 << n), rng.normal(size=1 << n)
    i_and, i_or = and_or_tables(v, gamma)
    for t in range(1 << n):
        rebuilt = v[0]
        rebuilt += sum(i_and[s] for s in range(1, 1 << n) if s & t == s)
        rebuilt += sum(i_or[s] for s in range(1, 1 << n) if s & t)
        assert rebuilt == pytest.approx(v[t], abs=1e-10)


def test_all_and_split_is_harsanyi() -> None:
    v = np.random.default_rng(1).normal(size=1 << 6)
    i_and, i_or = and_or_tables(v, 0.5 * v)
    np.testing.assert_allclose(i_and, harsanyi(v), atol=1e-12)
    np.testing.assert_allclose(i_or, 0.0, atol=1e-12)


def or_and_game(c: np.ndarray) -> np.ndarray:
    """An OR of players 0–3 (worth 2), an AND of 5 and 6 (worth 3), an AND of 7–9 (−1)."""
    return 2.0 * c[:, :4].any(1) + 3.0 * (c[:, 5] & c[:, 6]) - 1.0 * c[:, 7:10].all(1)


def test_learns_the_sparse_or_structure() -> None:
    v = value_table(or_and_game, 10)
    result = and_or_interactions(v, steps=3000)
    assert result.residual < 1e-9
    # AND-only needs 15 dividends of size 2 for the OR; the sparse split has Σ|I| = 6
    assert result.loss_and_only == pytest.approx(34.0)
    assert result.loss < 8.0
    assert abs(result.i_or[0b1111]) > 1.5  # the OR of players 0–3 carries most of its weight
    assert result.i_and[0b1100000] == pytest.approx(3.0, abs=0.3)


def test_noise_term_is_bounded_and_reported() -> None:
    rng = np.random.default_rng(0)
    v = value_table(or_and_game, 8) + 0.01 * rng.normal(size=1 << 8)
    result = and_or_interactions(v, steps=2000, noise=True)
    assert result.q_bound == pytest.approx(0.04 * abs(v[-1] - v[0]))
    assert 0 < result.q_max <= result.q_bound + 1e-12
    assert result.residual < 1e-9  # faithful to v − q
    without = and_or_interactions(v, steps=2000)
    assert result.loss < without.loss


def test_zero_steps_returns_plain_harsanyi() -> None:
    v = np.random.default_rng(3).normal(size=1 << 5)
    result = and_or_interactions(v, steps=0)
    np.testing.assert_allclose(result.i_and[1:], harsanyi(v)[1:], atol=1e-12)
    assert result.loss == pytest.approx(result.loss_and_only)


def test_progress_is_reported() -> None:
    calls: list[tuple[int, int]] = []
    and_or_interactions(
        np.arange(16.0), steps=20, progress=lambda d, t: calls.append((d, t)), progress_every=10
    )
    assert calls == [(10, 20), (20, 20)]
