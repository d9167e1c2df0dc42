"""Salient interactions, sparsity and the monotonicity check — SCIENCE.md §3 (seed 002).

Strength ``|I(S)|``, normalised by ``max_{S≠∅} |I(S)|``; salient ⇔ normalised strength
``≥ τ``. ``R^(k)``: the number of salient interactions of order ``k``, split by sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from conceptlens.aliases import FloatArray, IntArray, SubsetTable
from conceptlens.transforms import SPAN, n_players_of, order_spans

DEFAULT_TAU = 0.05


def normalised_strength(interactions: SubsetTable) -> FloatArray:
    """``|I(S)| / max_{S≠∅}|I(S)|`` for every ``S`` (the ∅ entry is set to 0)."""
    table = np.asarray(interactions, dtype=np.float64)
    strength = _normalise(np.abs(table), max_strength(table))
    strength[0] = 0.0
    return strength


def _normalise(strength: FloatArray, top: float) -> FloatArray:
    """``strength / top`` in place (unchanged when ``top`` is 0): the one formula of the
    normalised strength, for a whole table or a span of it."""
    if top > 0:
        strength /= top
    return strength


def sorted_strengths(interactions: SubsetTable) -> FloatArray:
    """Normalised strengths of all ``S ≠ ∅``, descending (the sparsity curve).

    Sorted in place in the one table it returns (no other full-size temporary); dividing
    after sorting gives the same values as sorting the divided ones (``top > 0``).

    Example:
        >>> sorted_strengths(np.array([5.0, -1.0, 4.0, 0.5])).tolist()
        [1.0, 0.25, 0.125]
    """
    out = np.abs(np.asarray(interactions, dtype=np.float64)[1:])
    top = float(out.max()) if out.size else 0.0
    np.negative(out, out=out)
    out.sort()
    np.negative(out, out=out)
    return _normalise(out, top)


def max_strength(interactions: SubsetTable) -> float:
    """``max_{S≠∅} |I(S)|`` without a full-size temporary (0 for a one-entry table)."""
    rest = np.asarray(interactions)[1:]
    return float(max(rest.max(), -rest.min())) if rest.size else 0.0


@dataclass(frozen=True)
class SalientCounts:
    """``R^(k)`` per order ``k = 0 … n``, split by sign, at threshold ``tau``."""

    tau: float
    positive: IntArray
    negative: IntArray

    @property
    def total(self) -> int:
        return int(self.positive.sum() + self.negative.sum())


def salient_counts(interactions: SubsetTable, tau: float = DEFAULT_TAU) -> SalientCounts:
    """Count salient interactions per order and sign (``S ≠ ∅``). O(2^n).

    Example:
        >>> import numpy as np
        >>> I = np.zeros(8); I[0b011] = 3.0; I[0b100] = -2.0; I[0b111] = 0.01
        >>> c = salient_counts(I, tau=0.05)
        >>> c.positive.tolist(), c.negative.tolist()
        ([0, 0, 1, 0], [0, 1, 0, 0])
    """
    table = np.asarray(interactions, dtype=np.float64)
    n = n_players_of(table)
    top = max_strength(table)
    positive = np.zeros(n + 1, dtype=np.int64)
    negative = np.zeros(n + 1, dtype=np.int64)
    for start, stop, order in order_spans(n):  # O(span) temporaries
        chunk = table[start:stop]
        salient = _normalise(np.abs(chunk), top) >= tau
        if start == 0:
            salient[0] = False
        positive += np.bincount(order[salient & (chunk > 0)], minlength=n + 1)
        negative += np.bincount(order[salient & (chunk < 0)], minlength=n + 1)
    return SalientCounts(tau=tau, positive=positive, negative=negative)


def top_k(interactions: SubsetTable, k: int = 20) -> IntArray:
    """Bitmasks of the ``k`` strongest interactions ``S ≠ ∅``, strongest first.

    Equal strengths go by the smaller mask. Span by span: each span's ``k`` strongest (by
    ``partition``; at the span's ``k``-th strength, the smallest masks) join the ``k`` kept
    so far, and the ``k`` first of those by (strength, mask) stay: O(2^n + spans·k log k)
    time, O(span + k) memory.

    Example:
        >>> import numpy as np
        >>> top_k(np.array([9.0, 1.0, -5.0, 2.0]), 2).tolist()
        [2, 3]
    """
    table = np.asarray(interactions, dtype=np.float64)
    k = min(k, table.size - 1)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    kept_masks = np.empty(0, dtype=np.int64)
    kept_strength = np.empty(0, dtype=np.float64)
    for start in range(0, table.size, SPAN):
        strength = np.abs(table[start : start + SPAN])
        if start == 0:
            strength[0] = -np.inf  # ∅ is never a candidate …
        take = min(k, strength.size)
        kth = np.partition(strength, -take)[-take]
        above = np.flatnonzero(strength > kth)  # then the smallest masks at the k-th strength:
        ties = np.flatnonzero(strength == kth)[: take - above.size]  # a span of zeros adds k
        chosen = np.concatenate([above, ties])
        if start == 0:
            chosen = chosen[chosen > 0]  # … even when k covers the whole span
        masks = np.concatenate([kept_masks, chosen + start])
        values = np.concatenate([kept_strength, strength[chosen]])
        best = np.lexsort((masks, -values))[:k]
        kept_masks, kept_strength = masks[best], values[best]
    return kept_masks.astype(np.int64)


def mask_players(mask: int, n: int) -> list[int]:
    """The players of a bitmask, ascending.

    Example:
        >>> mask_players(0b1010, 4)
        [1, 3]
    """
    return [i for i in range(n) if (mask >> i) & 1]


def average_output_by_order(v: SubsetTable) -> FloatArray:
    """``ū(m) = E_{|S|=m}[v(S) − v(∅)]`` for ``m = 0 … n``. O(2^n)."""
    table = np.asarray(v, dtype=np.float64)
    n = n_players_of(table)
    sums = np.zeros(n + 1)
    for start, stop, order in order_spans(n):  # O(span) temporaries
        sums += np.bincount(order, weights=table[start:stop] - table[0], minlength=n + 1)
    return sums / np.array([math.comb(n, m) for m in range(n + 1)])  # sets of each order


def monotonicity_exponent(u_bar: FloatArray) -> float:
    """Smallest ``p ≥ 0`` with ``ū(m') ≥ (m'/m)^p ū(m)`` for all ``1 ≤ m' ≤ m`` where ``ū > 0``.

    Each pair with ``ū(m') < ū(m)`` needs ``p ≥ log(ū(m')/ū(m)) / log(m'/m)``; orders with
    ``ū ≤ 0`` are left out (the assumption is stated for positive outputs). ``m' = 0`` holds
    for any ``p > 0``. Returns 0 when ``ū`` is non-decreasing; ``nan`` with fewer than two
    positive orders.

    Example:
        >>> monotonicity_exponent(np.array([0.0, 1.0, 4.0]))   # ū(m) = m²: p = 2
        2.0
    """
    u = np.asarray(u_bar, dtype=np.float64)
    m = np.arange(u.size, dtype=np.float64)
    ok = (u > 0) & (m >= 1)
    if ok.sum() < 2:
        return float("nan")
    mm, uu = m[ok], u[ok]
    lo, hi = np.triu_indices(mm.size, k=1)  # lo: m', hi: m, m' < m
    need = np.log(uu[lo] / uu[hi]) / np.log(mm[lo] / mm[hi])
    return float(max(0.0, need.max()))
