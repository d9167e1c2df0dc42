"""Which pairs of players a pairwise analysis looks at (torch-free: the API uses it too)."""

from __future__ import annotations

import numpy as np

from conceptlens.aliases import IntArray

#: Seed-sequence tag of random pair choices.
_PAIRS_STREAM = 0x9A17


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


def choose_pairs(
    rows: int, cols: int, *, radius: int | None, random_pairs: int | None, seed: int
) -> IntArray:
    """The pairs of a rows×cols grid that a sampled analysis uses: all pairs within
    ``radius`` patches (all pairs if ``None``), then, if ``random_pairs`` is given and
    smaller, that many of them drawn at random under ``seed`` (sorted).

    Example:
        >>> choose_pairs(1, 4, radius=1, random_pairs=None, seed=0).tolist()
        [[0, 1], [1, 2], [2, 3]]
        >>> len(choose_pairs(4, 4, radius=None, random_pairs=5, seed=0))
        5
    """
    pairs = all_pairs(rows * cols) if radius is None else local_pairs(rows, cols, radius)
    if random_pairs is not None and random_pairs < len(pairs):
        rng = np.random.default_rng([_PAIRS_STREAM, seed])
        pairs = pairs[np.sort(rng.choice(len(pairs), size=random_pairs, replace=False))]
    return pairs
