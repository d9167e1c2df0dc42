"""Null references for the order-strength curve ``J^(m)`` — SCIENCE.md §4 (seed 000).

A U-shaped ``J^(m)`` is not by itself evidence of a representation bottleneck: averaging
``Δv(i,j,S)`` over the ``C(n−2, m)`` contexts of order ``m`` makes a U out of pure noise.
For a game whose values ``v(S)`` are i.i.d. with variance ``σ²`` (every entry of the table,
``v(∅)`` and ``v(N)`` included), the four coalitions ``S, S∪{i}, S∪{j}, S∪{i,j}`` of a
pair's contexts are disjoint for different ``S`` (``S = T∖{i,j}`` for every coalition ``T``
used), so the ``C(n−2, m)`` terms ``Δv(i,j,S)`` are independent, each of variance ``4σ²``:

    ``Var I^(m)(i,j) = 4σ² / C(n−2, m)``; for Gaussian ``v``, ``I^(m)(i,j) ~ N(0, 4σ²/C(n−2, m))``
    and ``E|I^(m)(i,j)| = 2σ·√(2/π) / √C(n−2, m)`` exactly (:func:`gaussian_expected_strength`).

So the i.i.d. game's expected curve is ``C(n−2, m)^(−½)`` divided by its mean over orders
(:func:`gaussian_expected_curve`; ``J`` does not depend on ``σ``): symmetric under
``m ↔ n−2−m``, 4.98 at the ends and 0.085 in the middle at n = 16 — more U-shaped than a
trained CNN's curve (1.66 … 0.83 … 1.28 on the demo). The theory overlay
``F^(m) ∝ (n−m−1) / √C(n−2, m)`` (:func:`~conceptlens.pairwise.theory_curve`) is this
same combinatorial factor times a linear one; it predicts which orders are weak, not how
weak (normalised to mean 1 it spans 10² at n = 16 and 10³⁸ at n = 256, against 2–4× for
``J`` of a network): show it as ranks (:func:`theory_ranks`) or on a log axis
(:func:`theory_log10`), and compare orderings (:func:`rank_agreement`), not values.

References for a model's own table ``v`` (exact ``J``, no sampling):

- :func:`permuted_reference`: ``v`` with its non-empty, non-full entries permuted at random
  (``v(∅)`` and ``v(N)`` kept): the same values, hence the same marginal distribution, with
  all structure over subsets destroyed;
- :func:`gaussian_reference`: i.i.d. ``N(μ, σ²)`` tables with ``v``'s mean and variance.

A curve means something beyond combinatorics where it leaves the band of its reference.
Cost: per draw one Harsanyi transform and one :func:`~conceptlens.pairwise.multi_order`,
about ``(2n + 2)·2^n`` operations (milliseconds at n = 16, ~0.1 s at n = 20).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from conceptlens.aliases import FloatArray, IntArray, SubsetTable
from conceptlens.pairwise import multi_order, pair_strength, relative_strength
from conceptlens.transforms import harsanyi, n_players_of

#: Central share of the draws that :class:`ReferenceCurve`'s band holds.
BAND = 0.9


@dataclass(frozen=True)
class ReferenceCurve:
    """``J^(m)`` of ``draws`` random tables, ``m = 0 … n−2``.

    ``curves [draws, n−1]`` are the draws; ``mean``/``sd`` over them; ``lo``/``hi`` the
    central :data:`BAND` (90 %) of the draws per order; ``strength [draws, n−1]`` the
    un-normalised ``E_{i,j}|I^(m)(i,j)|`` of each draw.
    """

    curves: FloatArray
    strength: FloatArray

    @property
    def orders(self) -> IntArray:
        return np.arange(self.curves.shape[1])

    @property
    def mean(self) -> FloatArray:
        return np.asarray(self.curves.mean(axis=0))

    @property
    def sd(self) -> FloatArray:
        ddof = 1 if len(self.curves) > 1 else 0
        return np.asarray(self.curves.std(axis=0, ddof=ddof))

    @property
    def lo(self) -> FloatArray:
        return np.asarray(np.quantile(self.curves, (1 - BAND) / 2, axis=0))

    @property
    def hi(self) -> FloatArray:
        return np.asarray(np.quantile(self.curves, (1 + BAND) / 2, axis=0))


def exact_strength(v: SubsetTable, pairs: IntArray | None = None) -> FloatArray:
    """``E_{i,j}|I^(m)(i,j)|`` per order ``m = 0 … n−2`` of a value table ``v [2**n]``, over
    ``pairs`` (default all ``i < j``), exactly (Harsanyi, then SCIENCE.md §4's closed form)."""
    table = np.asarray(v, dtype=np.float64)
    return pair_strength(multi_order(harsanyi(table)), pairs)


def exact_curve(v: SubsetTable, pairs: IntArray | None = None) -> FloatArray:
    """``J^(m)`` of a value table ``v [2**n]``: :func:`exact_strength` divided by its mean.

    Example (an i.i.d. game: a U, symmetric in expectation):
        >>> v = np.random.default_rng(0).normal(size=2**8)
        >>> j = exact_curve(v)
        >>> j.shape, bool(j[0] > 3 * j[3] and j[6] > 3 * j[3])
        ((7,), True)
    """
    return relative_strength(exact_strength(v, pairs))


def permute_values(v: SubsetTable, rng: np.random.Generator) -> FloatArray:
    """``v`` with its entries ``1 … 2**n − 2`` (non-empty, non-full sets) randomly permuted.

    Example:
        >>> v = np.arange(8.0)
        >>> w = permute_values(v, np.random.default_rng(1))
        >>> float(w[0]), float(w[7]), sorted(w.tolist()) == v.tolist()
        (0.0, 7.0, True)
    """
    table = np.array(v, dtype=np.float64)
    n_players_of(table)
    table[1:-1] = rng.permutation(table[1:-1])
    return table


def permuted_reference(
    v: SubsetTable,
    *,
    rng: np.random.Generator,
    draws: int = 16,
    pairs: IntArray | None = None,
) -> ReferenceCurve:
    """``J^(m)`` of ``draws`` tables :func:`permute_values` makes from ``v``.

    Keeps ``v``'s multiset of values, ``v(∅)`` and ``v(N)``; destroys which subset has which
    value. Same ``pairs`` as the curve it is compared with.
    """
    return _reference([permute_values(v, rng) for _ in range(draws)], pairs)


def gaussian_reference(
    v: SubsetTable,
    *,
    rng: np.random.Generator,
    draws: int = 16,
    pairs: IntArray | None = None,
) -> ReferenceCurve:
    """``J^(m)`` of ``draws`` i.i.d. ``N(μ, σ²)`` tables, ``μ``, ``σ²`` the mean and variance
    of ``v`` (``J`` does not depend on them; :attr:`ReferenceCurve.strength` scales with
    ``σ``). In expectation the strength is :func:`gaussian_expected_strength`.
    """
    table = np.asarray(v, dtype=np.float64)
    n_players_of(table)
    mu, sigma = float(table.mean()), float(table.std())
    return _reference([rng.normal(mu, sigma, size=table.shape) for _ in range(draws)], pairs)


def _reference(tables: list[FloatArray], pairs: IntArray | None) -> ReferenceCurve:
    if not tables:
        raise ValueError("a reference needs at least one draw")
    strength = np.stack([exact_strength(t, pairs) for t in tables])
    curves = strength / strength.mean(axis=1, keepdims=True)
    return ReferenceCurve(curves=curves, strength=strength)


def gaussian_expected_strength(n: int, sigma: float = 1.0) -> FloatArray:
    """``E|I^(m)(i,j)| = 2σ·√(2/π) / √C(n−2, m)`` for i.i.d. ``N(·, σ²)`` values, ``m = 0 … n−2``.

    Exact for every pair (see the module docstring); computed in log space.

    Example:
        >>> gaussian_expected_strength(4).round(4)      # C(2, m) = 1, 2, 1
        array([1.5958, 1.1284, 1.5958])
    """
    if n < 2:
        raise ValueError("pairwise interactions need at least 2 players")
    log_comb = np.array([_log_comb(n - 2, m) for m in range(n - 1)])
    return np.asarray(2 * sigma * math.sqrt(2 / math.pi) * np.exp(-0.5 * log_comb))


def gaussian_expected_curve(n: int) -> FloatArray:
    """The i.i.d. game's ``J^(m)`` in expectation: ``C(n−2, m)^(−½)`` divided by its mean
    over ``m = 0 … n−2`` (the ratio of expected strengths; the ratio's own bias is of the
    order of ``1/C(n, 2)``, the pairs being many).

    Example:
        >>> j = gaussian_expected_curve(16)
        >>> round(float(j[0]), 2), round(float(j[7]), 3), bool(np.allclose(j, j[::-1]))
        (4.98, 0.085, True)
    """
    s = gaussian_expected_strength(n)
    return s / s.mean()


def theory_log10(n: int) -> FloatArray:
    """``log10`` of the theory overlay ``F^(m)`` normalised to mean 1 over ``m = 0 … n−2``.

    ``F^(m) = (n−m−1)/(n(n−1)) / √C(n−2, m)`` (SCIENCE.md §4), computed in log space (a
    log-sum-exp for the mean), so no order underflows even where
    :func:`~conceptlens.pairwise.theory_curve` would. For a log axis.

    Example:
        >>> f = theory_log10(256)
        >>> round(float(f.max() - f.min()))      # decades spanned
        38
    """
    m = np.arange(n - 1, dtype=np.float64)
    log_f = np.log(n - m - 1) - math.log(n * (n - 1))
    log_f -= 0.5 * np.array([_log_comb(n - 2, int(k)) for k in m])
    top = log_f.max()
    log_mean = top + math.log(np.exp(log_f - top).mean())
    return np.asarray((log_f - log_mean) / math.log(10))


def theory_ranks(n: int) -> IntArray:
    """Rank of ``F^(m)`` among the orders ``m = 0 … n−2``: 1 = strongest, ``n−1`` = weakest.

    ``F`` predicts an ordering of the orders, not values: compare it with ``J``'s ranks.

    Example:
        >>> theory_ranks(16).tolist()      # both ends strong, m = 0 the strongest
        [1, 2, 3, 5, 7, 9, 11, 13, 15, 14, 12, 10, 8, 6, 4]
    """
    order = np.argsort(-theory_log10(n), kind="stable")
    ranks = np.empty(n - 1, dtype=np.int64)
    ranks[order] = np.arange(1, n)
    return ranks


def rank_agreement(j: FloatArray, theory: FloatArray) -> float:
    """Spearman's rank correlation of two curves at the same orders (ties get mean ranks).

    1: ``J`` orders the orders as the theory does; 0: no relation. Use it for
    ``J`` against ``F^(m)`` (or against a reference), never a distance between values.

    Example:
        >>> rank_agreement(np.array([3.0, 1.0, 2.0]), np.array([30.0, 10.0, 20.0]))
        1.0
    """
    a, b = _mean_ranks(np.asarray(j, np.float64)), _mean_ranks(np.asarray(theory, np.float64))
    if a.shape != b.shape or a.size < 2:
        raise ValueError("two curves of the same length ≥ 2 are needed")
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denom if denom > 0 else math.nan


def _mean_ranks(x: FloatArray) -> FloatArray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)
