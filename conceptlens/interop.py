"""Interop with shapiq: ConceptLens's Harsanyi tables ↔ ``shapiq.InteractionValues``.

ConceptLens keeps exact Harsanyi interactions as a float table ``I[2**n]`` indexed by
bitmask (bit ``i`` set ⇔ player ``i`` present), with ``I[0] = I(∅) = v(∅)``
(SCIENCE.md, Conventions and §1). shapiq calls the same numbers the *Möbius* transform
(index ``"Moebius"``) and keys them by tuples of sorted player indices; its empty tuple
``()`` holds ``v(∅)``, which is also its ``baseline_value``. So both directions are exact
(the same float64 numbers, no arithmetic):

- :func:`to_shapiq` — table → ``InteractionValues(index="Moebius", min_order=0,
  max_order=n)``, every one of the ``2**n`` subsets present (zeros included), in shapiq's
  own lookup order (by size, then lexicographic);
- :func:`from_shapiq` — Möbius ``InteractionValues`` → ``(I, n)``; subsets it does not
  hold (e.g. after ``sparsify`` or with ``max_order < n``) are 0, as shapiq's own
  ``iv[S]`` reads them. Any other index is refused: it is not the dividends and no exact
  inverse exists from a truncated index;
- :func:`k_sii` — the k-Shapley interaction index (Bordt & von Luxburg 2023), as shapiq
  defines it, straight from the dividends in O(k·n·2^n) (see its docstring).

shapiq is imported lazily inside the functions: it is a development dependency only, and
importing :mod:`conceptlens` never imports it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache
from itertools import combinations
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from conceptlens.aliases import FloatArray
from conceptlens.transforms import orders, superset_sums

if TYPE_CHECKING:
    from shapiq import InteractionValues

#: shapiq's name for the Harsanyi dividends, and the names accepted for it here.
MOEBIUS = "Moebius"
_MOEBIUS_ALIASES = frozenset({"Moebius", "Möbius", "Harsanyi"})


def _shapiq() -> ModuleType:
    """Import shapiq, or say how to get it."""
    try:
        import shapiq
    except ImportError as exc:
        raise ImportError(
            "conceptlens.interop needs shapiq, which is not a dependency of conceptlens: "
            "pip install shapiq"
        ) from exc
    return shapiq


def _table(interactions: Any, n: int) -> FloatArray:
    """``interactions`` as a float64 ``[2**n]`` NumPy array (NumPy or CPU torch input)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if hasattr(interactions, "detach"):  # a torch tensor
        interactions = interactions.detach().cpu().numpy()
    table = np.asarray(interactions, dtype=np.float64)
    if table.shape != (1 << int(n),):
        raise ValueError(
            f"interactions must be a 1-D table of length 2**n = {1 << int(n)}, got shape "
            f"{table.shape} (convert one output column at a time)"
        )
    return table


def _subsets(n: int, max_order: int) -> list[tuple[tuple[int, ...], int]]:
    """``(players, bitmask)`` of every subset with ``|S| ≤ max_order``, in shapiq's order."""
    return [
        (players, sum(1 << p for p in players))
        for size in range(max_order + 1)
        for players in combinations(range(n), size)
    ]


def to_shapiq(
    interactions: Any,
    n: int,
    *,
    baseline_value: float | None = None,
    index: str = MOEBIUS,
    estimated: bool = False,
    estimation_budget: int | None = None,
) -> InteractionValues:
    """ConceptLens Harsanyi interactions ``I[2**n]`` → ``shapiq.InteractionValues``.

    Args:
        interactions: the dividends, indexed by bitmask, ``I[0] = v(∅)``; a NumPy array, a
            CPU torch tensor or a sequence, float64 after conversion.
        n: number of players (``len(interactions) == 2**n``).
        baseline_value: ``v(∅)``; defaults to ``I[0]``. shapiq stores the Möbius value of
            ``()`` *as* the baseline (it overwrites one with the other), so a value that
            differs from ``I[0]`` is refused rather than silently changing ``I(∅)``.
        index: ``"Moebius"`` (aliases ``"Möbius"``, ``"Harsanyi"``); the result's index is
            always shapiq's ``"Moebius"``. Other indices are not what the table holds: use
            :func:`k_sii`, or shapiq's ``MoebiusConverter`` on this function's result.
        estimated: stored on the result; ConceptLens's exact tables are not estimates.
        estimation_budget: stored on the result (e.g. the forward passes spent).

    Returns:
        ``InteractionValues(index="Moebius", n_players=n, min_order=0, max_order=n,
        baseline_value=v(∅))`` holding all ``2**n`` values in shapiq's lookup order
        (tuples of sorted player indices). Cost O(n·2^n) Python work: fine to n ≈ 20.

    Example:
        >>> import numpy as np
        >>> iv = to_shapiq(np.array([1.0, 1.0, 4.0, 5.0]), 2)  # doctest: +SKIP
        >>> iv.dict_values  # doctest: +SKIP
        {(): 1.0, (0,): 1.0, (1,): 4.0, (0, 1): 5.0}
    """
    if index not in _MOEBIUS_ALIASES:
        raise ValueError(
            f"to_shapiq: index {index!r} is not what a ConceptLens Harsanyi table holds; only "
            f"'Moebius' (Harsanyi dividends) converts exactly — use k_sii() for k-SII"
        )
    table = _table(interactions, n)
    n = int(n)
    empty = float(table[0])
    if baseline_value is not None and not math.isclose(
        float(baseline_value), empty, rel_tol=1e-12, abs_tol=1e-12
    ):
        raise ValueError(
            f"baseline_value {baseline_value!r} differs from I[0] = v(∅) = {empty!r}; shapiq "
            f"stores the Möbius value of () as the baseline, so they must agree"
        )
    shapiq = _shapiq()
    values = {players: float(table[mask]) for players, mask in _subsets(n, n)}
    return shapiq.InteractionValues(
        values=values,
        index=MOEBIUS,
        max_order=n,
        min_order=0,
        n_players=n,
        estimated=estimated,
        estimation_budget=estimation_budget,
        baseline_value=empty,
    )


def from_shapiq(iv: InteractionValues) -> tuple[FloatArray, int]:
    """``shapiq.InteractionValues`` with index ``"Moebius"`` → ``(I[2**n], n)``.

    ``I[0]`` is the value of ``()`` when ``iv`` holds it, else ``iv.baseline_value`` (for
    Möbius values both are ``v(∅)``). Subsets ``iv`` does not hold are 0 (shapiq reads them
    so too). Round trip with :func:`to_shapiq` is exact in both directions.

    Raises:
        ValueError: ``iv`` holds another index (k-SII, SV, STII, …): those are not the
            Harsanyi dividends and do not convert back exactly; or a key names a player
            outside ``0 … n−1``.
    """
    index = str(iv.index)
    if index not in _MOEBIUS_ALIASES:
        raise ValueError(
            f"from_shapiq: got index {index!r}; only Möbius (Harsanyi) values convert exactly "
            f"to ConceptLens interactions"
        )
    n = int(iv.n_players)
    table = np.zeros(1 << n, dtype=np.float64)
    table[0] = float(iv.baseline_value)
    for players, value in iv.dict_values.items():
        if any(not 0 <= int(p) < n for p in players):
            raise ValueError(f"from_shapiq: interaction {players} names a player outside 0…{n - 1}")
        if len(set(players)) != len(players):
            raise ValueError(f"from_shapiq: interaction {players} repeats a player")
        table[sum(1 << int(p) for p in players)] = float(value)
    return table, n


@cache
def _bernoulli(m: int) -> tuple[Fraction, ...]:
    """Bernoulli numbers ``B_0 … B_m`` with ``B_1 = −1/2`` (scipy's, hence shapiq's)."""
    b = [Fraction(1)]
    for i in range(1, m + 1):
        b.append(-sum((math.comb(i + 1, j) * b[j] for j in range(i)), Fraction(0)) / (i + 1))
    return tuple(b)


@cache
def k_sii_weight(size: int, order: int, k: int) -> float:
    """The share of a dividend ``m(R)`` that k-SII gives each ``S ⊆ R``.

    With ``size = |R|`` and ``order = |S|``:
    ``w = Σ_{j=0}^{min(k,|R|)−|S|} C(|R|−|S|, j) · B_j / (|R|−|S|−j+1)`` (exact rationals,
    then rounded once). Special cases: ``|R| ≤ k`` gives 1 for ``S = R`` and 0 for a proper
    subset (k-SII is the dividends up to order k); ``|S| = k`` gives ``1/(|R|−k+1)``.

    >>> k_sii_weight(3, 2, 2), k_sii_weight(3, 1, 2), k_sii_weight(2, 1, 2)
    (0.5, -0.16666666666666666, 0.0)
    """
    if not 1 <= order <= min(size, k):
        raise ValueError(f"need 1 ≤ |S| ≤ min(|R|, k), got |S|={order}, |R|={size}, k={k}")
    d = size - order
    b = _bernoulli(k)
    w = sum(
        (math.comb(d, j) * b[j] / (d - j + 1) for j in range(min(k, size) - order + 1)),
        Fraction(0),
    )
    return float(w)


def k_sii(interactions: Any, n: int, k: int) -> InteractionValues:
    """k-Shapley interaction index (k-SII) from the Harsanyi dividends, exactly.

    shapiq defines k-SII (Bordt & von Luxburg, AISTATS 2023) by aggregating the Shapley
    interaction index ``SII(T) = Σ_{R⊇T} m(R) / (|R|−|T|+1)``:
    ``k-SII(S) = Σ_{T⊇S, |T|≤k} B_{|T|−|S|} · SII(T)`` for ``1 ≤ |S| ≤ k`` (``B`` the
    Bernoulli numbers, ``B_1 = −1/2``), and ``k-SII(∅) = v(∅)``. Exchanging the sums gives
    the closed form from the dividends ``m = I``:

    ``k-SII(S) = Σ_{R⊇S} w(|R|, |S|, k) · m(R)``, with :func:`k_sii_weight` ``w``;

    for ``|S| = k`` that is ``Σ_{R⊇S} m(R) / (|R|−k+1)``. Each order is one weighted
    superset sum, O(n·2^n), so the whole is O(k·n·2^n) with no game evaluations.
    Efficiency holds: ``Σ_S k-SII(S) = v(N)`` (``()`` included).

    Args:
        interactions: the dividends ``I[2**n]`` by bitmask, ``I[0] = v(∅)``.
        n: number of players.
        k: the explanation order, ``1 ≤ k ≤ n``.

    Returns:
        ``InteractionValues(index="k-SII", min_order=0, max_order=k)`` with every subset of
        size ``≤ k`` (zeros included); ``baseline_value = v(∅)``. As in shapiq, ``k = 1``
        is the Shapley value and the index reads ``"SV"``.
    """
    table = _table(interactions, n)
    n = int(n)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n:
        raise ValueError(f"k must be an int with 1 ≤ k ≤ n = {n}, got {k!r}")
    k = int(k)
    shapiq = _shapiq()
    size = orders(n).astype(np.int64)
    values = np.zeros_like(table)
    values[0] = table[0]
    for s in range(1, k + 1):
        weight = np.array([k_sii_weight(r, s, k) if r >= s else 0.0 for r in range(n + 1)])
        summed = superset_sums(table * weight[size])
        at = size == s
        values[at] = summed[at]
    dict_values = {players: float(values[mask]) for players, mask in _subsets(n, k)}
    return shapiq.InteractionValues(
        values=dict_values,
        index="k-SII",
        max_order=k,
        min_order=0,
        n_players=n,
        estimated=False,
        baseline_value=float(table[0]),
    )
