"""Multi-order pairwise interactions and the order-strength curve — SCIENCE.md §4 (seed 000).

``I^(m)(i,j) = E_{S⊆N∖{i,j}, |S|=m} Δv(i,j,S)`` with
``Δv(i,j,S) = v(S∪{i,j}) − v(S∪{i}) − v(S∪{j}) + v(S)``, for ``m = 0 … n−2``.

From a Harsanyi table no new forward pass is needed:
``I^(m)(i,j) = Σ_{T⊇{i,j}} w(m, |T|−2) · I(T)``, ``w(m,l) = C(n−2−l, m−l) / C(n−2, m)``
(the probability that a random ``m``-context contains a given ``l``-set).

Arrays of multi-order interactions have shape ``[n−1, n, n]`` (order, i, j): symmetric in
``i, j``, with a zero diagonal (a pair needs two players).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from conceptlens.aliases import FloatArray, IntArray, SubsetTable
from conceptlens.transforms import n_players_of, orders

_CHUNK = 1 << 16


def order_weights(n: int) -> FloatArray:
    """``W[m, l] = w(m, l) = C(n−2−l, m−l) / C(n−2, m)`` for ``l ≤ m``, else 0; ``[n−1, n−1]``.

    Example:
        >>> order_weights(4).tolist()
        [[1.0, 0.0, 0.0], [1.0, 0.5, 0.0], [1.0, 1.0, 1.0]]
    """
    if n < 2:
        raise ValueError("pairwise interactions need at least 2 players")
    w = np.zeros((n - 1, n - 1))
    for m in range(n - 1):
        total = math.comb(n - 2, m)
        for ell in range(m + 1):
            w[m, ell] = math.comb(n - 2 - ell, m - ell) / total
    return w


def pair_dividend_sums(interactions: SubsetTable) -> FloatArray:
    """``A[l, i, j] = Σ_{T⊇{i,j}, |T|=l+2} I(T)``, shape ``[n−1, n, n]``, zero diagonal.

    The table is walked once, grouped by order (masks sorted by popcount, cached per n):
    O(n²·2^n) multiply-adds in BLAS, O(n·2^16) extra memory.
    """
    table = np.asarray(interactions, dtype=np.float64)
    if table.ndim != 1:
        raise ValueError("multi-order interactions take a 1-D Harsanyi table [2**n]")
    n = n_players_of(table)
    by_order, offsets = _masks_by_order(n)
    out = np.zeros((n - 1, n, n))
    shifts = np.arange(n, dtype=np.int64)
    for k in range(2, n + 1):
        for start in range(offsets[k], offsets[k + 1], _CHUNK):
            masks = by_order[start : min(start + _CHUNK, offsets[k + 1])]
            bits = ((masks[:, None] >> shifts) & 1).astype(np.float64)
            out[k - 2] += (bits * table[masks, None]).T @ bits
    idx = np.arange(n)
    out[:, idx, idx] = 0.0
    return out


@functools.lru_cache(maxsize=4)
def _masks_by_order(n: int) -> tuple[IntArray, list[int]]:
    """All masks sorted by popcount, and where each order starts (``offsets[k]``)."""
    order = orders(n)
    by_order = np.argsort(order, kind="stable").astype(np.int64)
    counts = np.bincount(order, minlength=n + 1)
    offsets = [0, *np.cumsum(counts).tolist()]
    return by_order, offsets


def multi_order(interactions: SubsetTable) -> FloatArray:
    """Exact ``I^(m)(i, j)`` for all orders and pairs from a Harsanyi table ``[2**n]``.

    Returns ``[n−1, n, n]``: ``out[m, i, j] = Σ_{T⊇{i,j}} w(m, |T|−2) I(T)``.
    Cost O(n²·2^n) (about 0.1 s at n = 16); no forward passes.

    Example (``v = 3·[p0∧p1]``: every context sees the full interaction):
        >>> import numpy as np
        >>> I = np.zeros(8); I[0b011] = 3.0
        >>> multi_order(I)[:, 0, 1]
        array([3., 3.])
    """
    sums = pair_dividend_sums(interactions)
    n = sums.shape[1]
    return np.einsum("ml,lij->mij", order_weights(n), sums)


def shapley_interaction(multi: FloatArray) -> FloatArray:
    """Shapley interaction index ``(1/(n−1)) Σ_m I^(m)(i,j)``, shape ``[n, n]``."""
    return np.asarray(multi).mean(axis=0)


def all_pairs(n: int) -> IntArray:
    """Every pair ``i < j`` of ``n`` players, shape ``[n(n−1)/2, 2]``."""
    i, j = np.triu_indices(n, k=1)
    return np.stack([i, j], axis=1)


def local_pairs(rows: int, cols: int, radius: int = 2) -> IntArray:
    """Pairs ``i < j`` of a rows×cols grid within ``radius`` patches (Chebyshev distance).

    The paper's choice for n = 256 (seed 000): ``j`` within 2 patches of ``i``.

    Example:
        >>> local_pairs(1, 3, radius=1).tolist()
        [[0, 1], [1, 2]]
    """
    pairs = all_pairs(rows * cols)
    r, c = np.divmod(pairs, cols)
    near = np.maximum(np.abs(r[:, 0] - r[:, 1]), np.abs(c[:, 0] - c[:, 1])) <= radius
    return pairs[near]


def pair_strength(multi: FloatArray, pairs: IntArray | None = None) -> FloatArray:
    """``E_{i,j} |I^(m)(i,j)|`` per order over ``pairs`` (default: all ``i < j``); ``[n−1]``."""
    multi = np.asarray(multi)
    use = all_pairs(multi.shape[1]) if pairs is None else np.asarray(pairs)
    return np.abs(multi[:, use[:, 0], use[:, 1]]).mean(axis=1)


def relative_strength(strengths: FloatArray | Sequence[FloatArray]) -> FloatArray:
    """``J^(m)``: per-order strength averaged over samples, divided by its mean over orders.

    ``strengths`` is ``[n−1]`` for one sample or ``[samples, n−1]`` (each row the
    ``E_{i,j}|I^(m)(i,j|x)|`` of one input ``x``), as :func:`pair_strength` returns.
    """
    per_order = np.atleast_2d(np.asarray(strengths, dtype=np.float64)).mean(axis=0)
    scale = per_order.mean()
    if scale <= 0:
        return np.zeros_like(per_order)
    return per_order / scale


def theory_curve(n: int) -> FloatArray:
    """Theory overlay ``F^(m) = (n−m−1)/(n(n−1)) / sqrt(C(n−2, m))``, divided by its mean.

    Computed in log space so that n = 256 (``C(254, 127) ≈ 10^75``) is exact to rounding.
    """
    m = np.arange(n - 1, dtype=np.float64)
    log_comb = np.array([_log_comb(n - 2, int(k)) for k in m])
    log_f = np.log(n - m - 1) - math.log(n * (n - 1)) - 0.5 * log_comb
    f = np.exp(log_f - log_f.max())
    return f / f.mean()


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)
