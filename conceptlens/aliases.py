"""Named array aliases so that signatures read like the math (SCIENCE.md, Conventions).

A subset ``S ⊆ N`` of ``n`` players is an integer *bitmask* (bit ``i`` set ⇔ player ``i``
present) when it indexes a table over all ``2**n`` subsets, and a boolean row of length
``n`` (a *coalition*) when it is handed to a game.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.floating]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
IntArray: TypeAlias = npt.NDArray[np.integer]

#: A table indexed by bitmask: shape ``[2**n]`` or ``[2**n, k]``.
SubsetTable: TypeAlias = FloatArray
#: Coalitions as boolean rows: shape ``[batch, n]``.
Coalitions: TypeAlias = BoolArray
#: Progress callback: ``(done, total)`` in forward passes.
ProgressFn: TypeAlias = Callable[[int, int], None]


class Game(Protocol):
    """Anything that maps a batch of coalitions to values is a game.

    ``game(coalitions)`` takes a boolean array ``[batch, n_players]`` and returns float64
    values ``[batch]``. A masked model, a tabular function or an analytic test game all
    satisfy this contract.
    """

    n_players: int

    def __call__(self, coalitions: Coalitions, /) -> FloatArray: ...
