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
from conceptlens.pairs import all_pairs as all_pairs
from conceptlens.pairs import local_pairs as local_pairs  # re-exported: its old home
from conceptlens.transforms import n_players_of


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

    The masks split into high bits (``H = n − L`` players ``L … n−1``, table rows) and low
    bits (``L = ⌊n/2⌋`` players ``0 … L−1``, columns of the zero-copy view ``[2^H, 2^L]``),
    and ``|T| = |hi| + |lo|``. Per popcount ``c`` of the rows, two BLAS products over those
    rows give everything that needs the whole table: ``[1; bits_hi]ᵀ · rows`` (sums over the
    rows, and over the rows holding each high player) and ``rows · onehot(|lo|)`` (sums by
    the columns' popcount). Cross pairs (high × low), low pairs and high pairs then come from
    products of size ``O(n²·2^{n/2})``. In all about ``(n + 2)·2^n`` multiply-adds instead of
    ``n²·2^n``, no ``bits × table`` temporaries; extra memory one block of rows (≤ 2 MiB)
    and ``(H+1)²·2^L`` sums (2.4 MB at n = 22), in ``O(n)`` NumPy calls.
    """
    table = np.asarray(interactions, dtype=np.float64)
    if table.ndim != 1:
        raise ValueError("multi-order interactions take a 1-D Harsanyi table [2**n]")
    n = n_players_of(table)
    if n < 2:
        return np.zeros((0, n, n))  # no pairs
    n_lo = n // 2
    n_hi = n - n_lo
    view = table.reshape(1 << n_hi, 1 << n_lo)
    bits_hi, by_count_hi = _bits_by_count(n_hi)
    bits_lo, by_count_lo = _bits_by_count(n_lo)
    onehot_lo = np.zeros((1 << n_lo, n_lo + 1))
    for c_lo, cols in enumerate(by_count_lo):
        onehot_lo[cols, c_lo] = 1.0
    lo, hi = slice(0, n_lo), slice(n_lo, n)
    acc = np.zeros((n + 1, n, n))  # acc[|T|, i, j]
    # z[c, 0, lo] = Σ_{|hi|=c} I(hi, lo); z[c, 1 + i, lo]: the same over rows holding i
    z = np.zeros((n_hi + 1, 1 + n_hi, 1 << n_lo))
    block = max(1, _BLOCK_VALUES >> n_lo)
    for c_hi, rows_c in enumerate(by_count_hi):
        for start in range(0, len(rows_c), block):
            rows = rows_c[start : start + block]
            values = view[rows]
            weights = np.empty((len(rows), 1 + n_hi))
            weights[:, 0] = 1.0
            weights[:, 1:] = bits_hi[rows]
            z[c_hi] += weights.T @ values
            b_hi = weights[:, 1:]
            pairs_hi = (b_hi[:, :, None] * b_hi[:, None, :]).reshape(len(rows), -1)
            high = (values @ onehot_lo).T @ pairs_hi  # [|lo|, i·j], high pairs
            acc[c_hi : c_hi + n_lo + 1, hi, hi] += high.reshape(n_lo + 1, n_hi, n_hi)
    for c_lo, cols in enumerate(by_count_lo):
        b_lo = bits_lo[cols]
        zc = z[:, :, cols]  # [|hi|, 1 + H, columns with |lo| = c_lo]
        acc[c_lo : c_lo + n_hi + 1, hi, lo] += zc[:, 1:, :] @ b_lo  # cross pairs
        pairs_lo = (b_lo[:, :, None] * b_lo[:, None, :]).reshape(len(cols), -1)
        low = zc[:, 0, :] @ pairs_lo  # [|hi|, i·j], low pairs
        acc[c_lo : c_lo + n_hi + 1, lo, lo] += low.reshape(n_hi + 1, n_lo, n_lo)
    acc[:, lo, hi] = acc[:, hi, lo].transpose(0, 2, 1)
    out = acc[2:].copy()
    idx = np.arange(n)
    out[:, idx, idx] = 0.0
    return out


_BLOCK_VALUES = 1 << 18
"""Table values gathered per block of rows in :func:`pair_dividend_sums` (2 MiB; 8 MiB took
the same time at n = 16–22 and 12 MiB more memory at n = 24)."""


@functools.lru_cache(maxsize=8)
def _bits_by_count(n: int) -> tuple[FloatArray, list[IntArray]]:
    """Bits ``[2^n, n]`` (float64) of every mask, and the masks of each popcount 0 … n."""
    masks = np.arange(1 << n, dtype=np.int64)
    bits: FloatArray = ((masks[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(np.float64)
    count = bits.sum(axis=1).astype(np.int64)
    by_count: list[IntArray] = [np.flatnonzero(count == c) for c in range(n + 1)]
    bits.flags.writeable = False
    return bits, by_count


def multi_order(interactions: SubsetTable) -> FloatArray:
    """Exact ``I^(m)(i, j)`` for all orders and pairs from a Harsanyi table ``[2**n]``.

    Returns ``[n−1, n, n]``: ``out[m, i, j] = Σ_{T⊇{i,j}} w(m, |T|−2) I(T)``.
    Cost about (n + 2)·2^n multiply-adds (:func:`pair_dividend_sums`); no forward passes.

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
