"""AND-OR interactions: SCIENCE.md §2 faithfulness, the learned split, its LP and bound."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from conceptlens.and_or import (
    LOW_BITS,
    _Butterfly,
    and_or_interactions,
    and_or_lp,
    and_or_residual,
    and_or_salient,
    and_or_tables,
)
from conceptlens.game import value_table
from conceptlens.sparsity import salient_counts
from conceptlens.transforms import harsanyi, harsanyi_adjoint, superset_sums, zeta

METHODS = ["pdhg", "adam"]


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


@pytest.mark.parametrize("n", [1, LOW_BITS - 1, LOW_BITS, LOW_BITS + 2, 9])
@pytest.mark.parametrize(
    ("superset", "sign", "reference"),
    [
        (True, 1.0, superset_sums),
        (False, 1.0, zeta),
        (False, -1.0, harsanyi),
        (True, -1.0, harsanyi_adjoint),
    ],
)
def test_butterfly_matches_the_transforms(
    n: int, superset: bool, sign: float, reference: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    """The optimiser's buffered butterflies (a small dense block for the low bits) are exact."""
    x = torch.as_tensor(np.random.default_rng(n).normal(size=1 << n))
    out = _Butterfly(torch.empty_like(x), superset=superset, sign=sign)(x)
    torch.testing.assert_close(out, reference(x), atol=1e-12, rtol=0)


def or_and_game(c: np.ndarray) -> np.ndarray:
    """An OR of players 0–3 (worth 2), an AND of 5 and 6 (worth 3), an AND of 7–9 (−1)."""
    return 2.0 * c[:, :4].any(1) + 3.0 * (c[:, 5] & c[:, 6]) - 1.0 * c[:, 7:10].all(1)


@pytest.mark.parametrize("method", METHODS)
def test_learns_the_sparse_or_structure(method: str) -> None:
    v = value_table(or_and_game, 10)
    result = and_or_interactions(v, steps=3000, method=method, polish=False)  # type: ignore[arg-type]
    assert result.residual < 1e-9
    # AND-only needs 15 dividends of size 2 for the OR; the sparse split has Σ|I| = 6
    assert result.loss_and_only == pytest.approx(34.0)
    assert result.loss < 8.0
    assert abs(result.i_or[0b1111]) > 1.5  # the OR of players 0–3 carries most of its weight
    assert result.i_and[0b1100000] == pytest.approx(3.0, abs=0.3)


def test_the_lp_finds_the_known_optimum_of_the_or_and_game() -> None:
    """Σ|I| = 6 is reached (OR 2, AND 3, AND −1) and certified by the LP's dual bound."""
    result = and_or_interactions(value_table(or_and_game, 10))  # polish: auto at n = 10
    assert result.polished and result.converged
    assert result.loss == pytest.approx(6.0, abs=1e-9)
    assert result.bound == pytest.approx(6.0, abs=1e-6)
    assert result.i_or[0b1111] == pytest.approx(2.0, abs=1e-9)
    assert result.i_and[0b1100000] == pytest.approx(3.0, abs=1e-9)
    assert result.i_and[0b1110000000] == pytest.approx(-1.0, abs=1e-9)
    assert result.residual < 1e-9


@pytest.mark.parametrize("method", METHODS)
def test_pure_or_game_has_optimum_one(method: str) -> None:
    """``v(T) = [T ∩ A ≠ ∅]``: every split has ``Σ_{S≠∅}(I_and + I_or) = v(N) − v(∅) = 1``,
    so ``Σ|I| ≥ 1``, and ``I_or(A) = 1`` reaches it."""
    a = [1, 2, 4]
    v = value_table(lambda c: c[:, a].any(1).astype(float), 6)
    exact = and_or_lp(v)
    assert exact.loss == pytest.approx(1.0, abs=1e-9)
    assert exact.i_or[0b10110] == pytest.approx(1.0, abs=1e-9)
    learned = and_or_interactions(v, method=method, polish=False)  # type: ignore[arg-type]
    assert learned.bound <= 1.0 + 1e-9
    assert learned.loss == pytest.approx(1.0, abs=0.05)
    assert learned.loss_and_only == pytest.approx(7.0)  # 2^3 − 1 dividends of size 1


@pytest.mark.parametrize("noise", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1])
def test_bound_lp_and_learned_loss_are_ordered(method: str, noise: bool, seed: int) -> None:
    """Weak duality: bound ≤ LP optimum ≤ learned loss ≤ AND-only, on dense random games."""
    n = 4 + 2 * seed
    v = np.random.default_rng(seed).normal(size=1 << n)
    exact = and_or_lp(v, noise=noise)
    learned = and_or_interactions(
        v,
        method=method,  # type: ignore[arg-type]
        steps=2000,
        noise=noise,
        polish=False,
    )
    assert not learned.polished
    assert learned.bound <= exact.loss + 1e-7
    assert exact.loss <= learned.loss + 1e-7
    assert learned.loss <= learned.loss_and_only + 1e-9
    assert exact.gap == pytest.approx(0.0, abs=1e-6)  # HiGHS's duals certify its optimum
    assert exact.residual < 1e-9 and learned.residual < 1e-9
    assert learned.gap == pytest.approx((learned.loss - learned.bound) / learned.loss)
    if noise:
        assert exact.q_max <= exact.q_bound + 1e-12
        assert learned.q_max <= learned.q_bound + 1e-12


def test_pdhg_gets_close_on_a_dense_game() -> None:
    """Adam stops far from the optimum on dense games (≈2× at n = 8); PDHG's gap shrinks."""
    v = np.random.default_rng(0).normal(size=1 << 8)
    exact = and_or_lp(v)
    result = and_or_interactions(v, polish=False, tol=0)
    assert result.loss <= 1.01 * exact.loss
    assert result.gap < 0.02


def test_polish_replaces_the_learned_split_by_the_lp_vertex() -> None:
    v = np.random.default_rng(4).normal(size=1 << 6)
    result = and_or_interactions(v, steps=200, polish=True)
    assert result.polished
    assert result.loss <= result.loss_learned
    assert result.loss == pytest.approx(and_or_lp(v).loss)
    # a vertex of the LP: at most one non-zero term per equality row (2^n − 1 rows)
    nonzero = np.count_nonzero(np.abs(result.i_and[1:]) > 1e-9)
    nonzero += np.count_nonzero(np.abs(result.i_or[1:]) > 1e-9)
    assert nonzero <= (1 << 6) - 1


@pytest.mark.parametrize("method", METHODS)
def test_loss_never_above_and_only(method: str) -> None:
    for seed in range(3):
        v = np.random.default_rng(seed).normal(size=1 << 7) ** 3
        result = and_or_interactions(v, steps=300, method=method, polish=False)  # type: ignore[arg-type]
        assert result.loss <= result.loss_and_only + 1e-9


def test_stopping_rule_stops_early_on_an_easy_game() -> None:
    v = value_table(or_and_game, 10)
    early = and_or_interactions(v, steps=20_000, polish=False)
    assert early.converged and early.steps_used < early.steps == 20_000
    assert early.loss == pytest.approx(6.0, rel=0.01)
    full = and_or_interactions(v, steps=500, tol=0, polish=False)
    assert full.steps_used == full.steps == 500 and not full.converged


def test_noise_term_is_bounded_and_reported() -> None:
    rng = np.random.default_rng(0)
    v = value_table(or_and_game, 8) + 0.01 * rng.normal(size=1 << 8)
    result = and_or_interactions(v, steps=2000, noise=True)
    assert result.q_bound == pytest.approx(0.04 * abs(v[-1] - v[0]))
    assert 0 < result.q_max <= result.q_bound + 1e-12
    assert result.residual < 1e-9  # faithful to v − q
    without = and_or_interactions(v, steps=2000)
    assert result.loss < without.loss


@pytest.mark.parametrize("method", METHODS)
def test_zero_steps_returns_plain_harsanyi(method: str) -> None:
    v = np.random.default_rng(3).normal(size=1 << 5)
    result = and_or_interactions(v, steps=0, method=method, polish=False)  # type: ignore[arg-type]
    np.testing.assert_allclose(result.i_and[1:], harsanyi(v)[1:], atol=1e-12)
    assert result.loss == pytest.approx(result.loss_and_only)
    assert result.steps_used == 0


@pytest.mark.parametrize("polish", [False, True])
@pytest.mark.parametrize("v", [np.array([1.5]), np.full(16, 2.0)], ids=["no players", "flat"])
def test_games_without_interactions(v: np.ndarray, polish: bool) -> None:
    result = and_or_interactions(v, polish=polish, noise=True)
    assert result.loss == 0.0 and result.gap == 0.0 and result.converged
    assert result.i_and[0] == pytest.approx(v[0]) and result.residual < 1e-12
    if not polish:
        assert result.steps_used == 0


def test_threads_are_restored() -> None:
    before = torch.get_num_threads()
    and_or_interactions(np.arange(64.0), steps=10, polish=False)
    assert torch.get_num_threads() == before


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method"):
        and_or_interactions(np.arange(4.0), method="sgd")  # type: ignore[arg-type]


def test_progress_is_reported() -> None:
    calls: list[tuple[int, int]] = []
    and_or_interactions(
        np.arange(16.0),
        steps=20,
        tol=0,
        progress=lambda d, t: calls.append((d, t)),
        progress_every=10,
    )
    assert calls == [(10, 20), (20, 20)]


def test_salience_uses_one_normaliser_for_and_and_or() -> None:
    """τ is relative to the largest |I| among all non-empty AND and OR terms together."""
    n = 3
    i_and, i_or = np.zeros(1 << n), np.zeros(1 << n)
    i_and[0] = 100.0  # ∅: never salient, not part of the normaliser
    i_and[0b001], i_and[0b011], i_and[0b111] = 2.0, -0.5, 0.3
    i_or[0b110], i_or[0b101] = -10.0, 0.4
    s = and_or_salient((i_and, i_or), tau=0.05)  # threshold 0.05 · 10 = 0.5
    assert s.top == 10.0
    assert s.and_mask.tolist() == [False, True, False, True, False, False, False, False]
    assert s.or_mask.tolist() == [False, False, False, False, False, False, True, False]
    assert s.and_positive.tolist() == [0, 1, 0, 0]
    assert s.and_negative.tolist() == [0, 0, 1, 0]
    assert s.or_negative.tolist() == [0, 0, 1, 0]
    assert s.or_positive.tolist() == [0, 0, 0, 0]
    assert s.total == 3


def test_salience_without_or_part_is_the_and_only_rule() -> None:
    v = np.random.default_rng(2).normal(size=1 << 6)
    i_and, i_or = and_or_tables(v, 0.5 * v)  # the all-AND split: no OR part
    s = and_or_salient((i_and, i_or), tau=0.1)
    plain = salient_counts(harsanyi(v), tau=0.1)
    assert s.and_positive.tolist() == plain.positive.tolist()
    assert s.and_negative.tolist() == plain.negative.tolist()
    assert s.or_mask.sum() == 0
