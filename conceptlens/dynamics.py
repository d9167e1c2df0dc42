"""Learning dynamics of interactions over training checkpoints — SCIENCE.md §6.

For checkpoints ``v_t`` (``t = 1…T``, ``v_T`` final) evaluated on the same images, grid and
baseline:

- :func:`similarity_per_order`: the generalised Jaccard similarity of each checkpoint's
  interactions to the final model's, per order and overall. A vector of interactions ``I``
  is split into ``Ĩ = [max(I, 0), max(−I, 0)]`` and
  ``sim = Σ min(Ĩ_t, Ĩ_T) / Σ max(Ĩ_t, Ĩ_T)``, the sums running over the sets (and over
  the images, summed before the ratio). 1 means the same interactions, 0 none in common
  (e.g. every sign flipped).
- :func:`strength_distribution`: ``E_x Σ_{|S|=s} |I_t(S|x)|`` per order, normalised per
  checkpoint.

The empty set (``I(∅) = v(∅)``, not an interaction between players) is left out of the
similarities and of the normalisation.
"""

from __future__ import annotations

import numpy as np

from conceptlens.aliases import FloatArray
from conceptlens.transforms import n_players_of, orders


def similarity_per_order(
    checkpoints: FloatArray, final: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Generalised Jaccard similarity of each checkpoint to the final model, per order.

    ``checkpoints [T, X, 2**n]`` are the tables of ``T`` checkpoints on ``X`` images,
    ``final [X, 2**n]`` the final model's. Returns ``(per_order [T, n], overall [T])``
    (float64): column ``s − 1`` is the similarity over the sets of order ``s``, ``overall``
    the one over all ``S ≠ ∅``. NaN where the denominator is 0 (neither model has any
    interaction there).

    Example:
        >>> final = np.array([[5.0, 1.0, -2.0, 3.0]])
        >>> ckpt = np.array([[[0.0, 1.0, -2.0, 3.0]], [[0.0, -1.0, 2.0, 0.0]]])
        >>> by_order, overall = similarity_per_order(ckpt, final)
        >>> by_order.tolist(), overall.tolist()
        ([[1.0, 1.0], [0.0, 0.0]], [1.0, 0.0])
    """
    checkpoints = np.asarray(checkpoints, dtype=np.float64)
    final = np.asarray(final, dtype=np.float64)
    if checkpoints.ndim != 3 or checkpoints.shape[1:] != final.shape:
        raise ValueError("expected checkpoints [T, X, 2**n] and final [X, 2**n]")
    n = n_players_of(final.T)
    ref = final[None]
    pos_t, neg_t = np.maximum(checkpoints, 0), np.maximum(-checkpoints, 0)
    pos_f, neg_f = np.maximum(ref, 0), np.maximum(-ref, 0)
    low = (np.minimum(pos_t, pos_f) + np.minimum(neg_t, neg_f)).sum(axis=1)  # [T, 2**n]
    high = (np.maximum(pos_t, pos_f) + np.maximum(neg_t, neg_f)).sum(axis=1)
    size = orders(n)
    t = checkpoints.shape[0]
    low_s, high_s = np.zeros((t, n)), np.zeros((t, n))
    for s in range(1, n + 1):
        low_s[:, s - 1] = low[:, size == s].sum(axis=1)
        high_s[:, s - 1] = high[:, size == s].sum(axis=1)
    return _ratio(low_s, high_s), _ratio(low_s.sum(axis=1), high_s.sum(axis=1))


def strength_distribution(tables: FloatArray) -> FloatArray:
    """Strength of interactions per order at each checkpoint, ``[T, n + 1]`` float64.

    ``tables [T, X, 2**n]`` → entry ``[t, s] = E_x Σ_{|S|=s} |I_t(S|x)|`` for ``s = 1…n``,
    each row normalised to sum 1 over ``s = 1…n``; entry ``s = 0`` (the empty set) is 0.
    A checkpoint with no interaction at all (every ``I(S) = 0``, ``S ≠ ∅``) gets NaN at
    ``s = 1…n``.

    Example:
        >>> t = np.array([[[7.0, 1.0, -1.0, 2.0], [7.0, 3.0, -1.0, -2.0]]])
        >>> strength_distribution(t).tolist()     # order 1: (2 + 4)/2 = 3, order 2: 2
        [[0.0, 0.6, 0.4]]
    """
    tables = np.asarray(tables, dtype=np.float64)
    if tables.ndim != 3:
        raise ValueError("expected tables [T, X, 2**n]")
    n = n_players_of(tables.transpose(2, 0, 1))
    strength = np.abs(tables).mean(axis=1)  # [T, 2**n]
    size = orders(n)
    out = np.zeros((tables.shape[0], n + 1))
    for s in range(1, n + 1):
        out[:, s] = strength[:, size == s].sum(axis=1)
    total = out[:, 1:].sum(axis=1, keepdims=True)
    out[:, 1:] = _ratio(out[:, 1:], np.broadcast_to(total, out[:, 1:].shape))
    return out


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    out = np.full(np.shape(num), np.nan)
    ok = den > 0
    out[ok] = np.asarray(num)[ok] / np.asarray(den)[ok]
    return out
