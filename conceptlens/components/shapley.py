"""Exact Shapley values of a small game, from its table over all subsets — SCIENCE.md §7.

``φ_i = Σ_{S ⊆ N∖{i}} |S|!(n−|S|−1)!/n! · (v(S ∪ {i}) − v(S))``, computed through the
Harsanyi dividends (:func:`conceptlens.transforms.harsanyi`) as ``φ_i = Σ_{S ∋ i} I(S)/|S|``:
``O(n·2^n)``. Efficiency ``Σ_i φ_i = v(N) − v(∅)`` holds to float rounding, since
``Σ_{S≠∅} I(S) = v(N) − v(∅)``.
"""

from __future__ import annotations

import numpy as np

from conceptlens.aliases import FloatArray, Game, SubsetTable
from conceptlens.game import value_table
from conceptlens.transforms import harsanyi, n_players_of, orders

__all__ = ["MAX_PLAYERS", "shapley_from_table", "shapley_values"]

MAX_PLAYERS = 10
"""Exact enumeration evaluates ``2**n`` coalitions; feature components have ``n ≤ 6`` or so."""


def shapley_from_table(v: SubsetTable) -> FloatArray:
    """Shapley values ``[n]`` of a game table ``v`` ``[2**n]`` (row index = bitmask), float64.

    Example:
        >>> v = np.array([0.0, 1.0, 2.0, 6.0])    # v(∅), v({0}), v({1}), v({0,1})
        >>> shapley_from_table(v)                 # the pair's surplus 3 is split evenly
        array([2.5, 3.5])
    """
    table = np.asarray(v, dtype=np.float64)
    n = n_players_of(table)
    dividends = harsanyi(table)
    sizes = orders(n).astype(np.float64)
    share = np.divide(dividends, sizes, out=np.zeros_like(dividends), where=sizes > 0)
    masks = np.arange(1 << n)
    return np.array([share[(masks >> i) & 1 == 1].sum() for i in range(n)])


def shapley_values(game: Game) -> tuple[FloatArray, FloatArray]:
    """``(φ [n], v [2**n])`` of a game by exact enumeration of its ``2**n`` coalitions.

    Cost: ``2**n`` game evaluations (one batch) plus ``O(n·2^n)``; refuses ``n`` above
    :data:`MAX_PLAYERS`.
    """
    n = game.n_players
    if not 0 < n <= MAX_PLAYERS:
        raise ValueError(f"exact Shapley values take 1 to {MAX_PLAYERS} players, got {n}")
    table = value_table(game, n)
    return shapley_from_table(table), table
