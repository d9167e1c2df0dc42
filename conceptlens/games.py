"""Analytic games with known Harsanyi dividends, for tests and benchmarks (SCIENCE.md §1, §4).

A *sum of unanimity models* ``v(S) = c_∅ + Σ_t c_t · [T_t ⊆ S]`` has the Harsanyi dividends
``I(∅) = c_∅`` and ``I(T) = Σ_{t: T_t = T} c_t`` (SCIENCE.md §1), so every quantity of
SCIENCE.md §4 is known in closed form without a dense table:
``I^(m)(i,j) = Σ_{T⊇{i,j}} w(m, |T|−2) · c_T`` (:func:`UnanimityGame.exact_multi_order`).
This is the SOUM game of shapiq's tests, made fast enough to stand in for a network at
``n = 256`` in the sampled-estimator benchmark.

Evaluation: terms whose sets lie inside a small *support* (at most ``lookup_size``
players) are summed through a lookup table over the ``2**|support|`` states of that
support; every larger term is its own support, present iff all its players are. One
float32 matrix product ``coalitions @ W`` ``[batch, n] @ [n, supports]`` gives every
support's state (a bit code, or a count of present players), so the cost is
O(batch · n · supports) multiply-adds, whatever the number of small dividends. Measured
on 2 cores, 65,536 coalitions of 256 players: 0.05 s for 300 random terms, 0.16 s for
``random_bottleneck_game(256)`` (6,341 dividends in 506 supports).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from conceptlens.aliases import BoolArray, Coalitions, FloatArray, IntArray, SubsetTable
from conceptlens.pairwise import order_weights
from conceptlens.transforms import zeta

_DENSE_MAX_PLAYERS = 24
_ROWS_PER_CHUNK = 8192


class UnanimityGame:
    """``v(S) = constant + Σ_t c_t · [T_t ⊆ S]``: a game with known dividends (SCIENCE.md §1).

    Args:
        n_players: number of players ``n``.
        sets: the sets ``T_t`` (player indices; order and repeats inside a set ignored).
        coefficients: ``c_t``, one per set; duplicate sets are summed.
        constant: ``v(∅)``; an empty set in ``sets`` adds its coefficient to it.
        lookup_size: sets of at most this many players are evaluated through lookup
            tables (see the module docstring); larger ones one by one.

    Satisfies the :class:`~conceptlens.aliases.Game` protocol: ``game(coalitions)``
    with ``coalitions`` bool ``[batch, n]`` returns float64 ``[batch]``.

    Example (``v = 3·[p1∧p2] + 2·[p3]`` on 4 players):
        >>> import numpy as np
        >>> game = UnanimityGame(4, [[1, 2], [3]], [3.0, 2.0])
        >>> game(np.array([[0, 1, 1, 0], [1, 1, 0, 1]], dtype=bool))
        array([3., 2.])
        >>> table = game.harsanyi_table()
        >>> table[[0b0110, 0b1000]].tolist(), int(np.count_nonzero(table))
        ([3.0, 2.0], 2)
    """

    def __init__(
        self,
        n_players: int,
        sets: Sequence[Sequence[int]],
        coefficients: Sequence[float] | FloatArray,
        constant: float = 0.0,
        *,
        lookup_size: int = 10,
    ) -> None:
        if n_players < 1:
            raise ValueError("a game needs at least one player")
        if len(sets) != len(coefficients):
            raise ValueError(f"{len(sets)} sets but {len(coefficients)} coefficients")
        self.n_players = int(n_players)
        dividends = _merge_terms(self.n_players, sets, coefficients)
        self.constant = float(constant) + dividends.pop((), 0.0)
        self.sets: tuple[tuple[int, ...], ...] = tuple(dividends)
        self.coefficients: FloatArray = np.array(list(dividends.values()), dtype=np.float64)
        self._tables = _compile(self.n_players, dividends, lookup_size)

    def __call__(self, coalitions: Coalitions, /) -> FloatArray:
        """``v(S)`` for each row of ``coalitions`` (bool ``[batch, n]``); float64 ``[batch]``."""
        rows = np.asarray(coalitions, dtype=bool)
        if rows.ndim != 2 or rows.shape[1] != self.n_players:
            raise ValueError(f"coalitions must be [batch, {self.n_players}], got {rows.shape}")
        out = np.full(rows.shape[0], self.constant)
        for start in range(0, rows.shape[0], _ROWS_PER_CHUNK):
            chunk = rows[start : start + _ROWS_PER_CHUNK]
            out[start : start + len(chunk)] += self._tables.evaluate(chunk)
        return out

    @property
    def orders(self) -> IntArray:
        """``|T_t|`` for each (merged) term."""
        return np.array([len(s) for s in self.sets], dtype=np.int64)

    def harsanyi_table(self) -> SubsetTable:
        """Dense dividends ``I[mask]``, ``[2**n]`` (n ≤ 24).

        ``I(∅) = constant``, ``I(T_t) = c_t`` (duplicates summed), 0 elsewhere.
        """
        n = self.n_players
        if n > _DENSE_MAX_PLAYERS:
            raise ValueError(f"a dense table needs n ≤ {_DENSE_MAX_PLAYERS}, got {n}")
        table = np.zeros(1 << n)
        table[0] = self.constant
        for players, c in zip(self.sets, self.coefficients, strict=True):
            table[sum(1 << p for p in players)] += c
        return table

    def exact_multi_order(self, pairs: IntArray) -> FloatArray:
        """Exact ``I^(m)(i,j)`` for ``m = 0 … n−2`` and the given pairs; ``[n−1, len(pairs)]``.

        SCIENCE.md §4 from the sparse dividends: ``Σ_{T⊇{i,j}} w(m, |T|−2) · c_T``, grouped by
        ``|T|`` as ``W @ A`` with ``A[l, p] = Σ_{|T|=l+2, T⊇pair p} c_T``. Cost
        O(terms · pairs) boolean work plus O(n² · pairs); no dense table, fine at n = 256.

        Example:
            >>> game = UnanimityGame(4, [[0, 1], [0, 1, 2]], [1.0, 2.0])
            >>> game.exact_multi_order(np.array([[0, 1], [1, 2]]))
            array([[1., 0.],
                   [2., 1.],
                   [3., 2.]])
        """
        n = self.n_players
        use = _check_pairs(pairs, n)
        sums = np.zeros((n - 1, len(use)))
        member = self._membership()
        orders = self.orders
        for size in np.unique(orders[orders >= 2]):
            (terms,) = np.nonzero(orders == size)
            for start in range(0, len(terms), 1024):
                block = terms[start : start + 1024]
                inside = member[block][:, use[:, 0]] & member[block][:, use[:, 1]]
                sums[size - 2] += self.coefficients[block] @ inside
        return order_weights(n) @ sums

    def _membership(self) -> BoolArray:
        member = np.zeros((len(self.sets), self.n_players), dtype=bool)
        for t, players in enumerate(self.sets):
            member[t, list(players)] = True
        return member


@dataclass(frozen=True)
class _Tables:
    """Compiled evaluation: support states ``rows @ weights``, then per-support values.

    The first ``len(offsets)`` columns are lookup supports (bit codes, value
    ``table[offset + code]``), the rest single large terms (value ``c·[count = |T|]``).
    """

    weights: FloatArray  # [n, supports] float32: powers of two (lookup) or ones (count)
    offsets: FloatArray  # [lookups] float32 start of each lookup table in ``table``
    table: FloatArray  # concatenated lookup tables (< 2**24 entries)
    sizes: FloatArray  # [large terms] float32 ``|T|``
    coefficients: FloatArray  # [large terms] ``c``

    def evaluate(self, rows: BoolArray) -> FloatArray:
        codes = rows.astype(np.float32) @ self.weights
        lookups = len(self.offsets)
        index = (codes[:, :lookups] + self.offsets).astype(np.int32)  # exact below 2**24
        present = codes[:, lookups:] == self.sizes
        return np.take(self.table, index).sum(axis=1) + present @ self.coefficients


def _merge_terms(
    n: int, sets: Sequence[Sequence[int]], coefficients: Sequence[float] | FloatArray
) -> dict[tuple[int, ...], float]:
    """Canonical sorted sets → summed coefficient (duplicates merged, zero sums kept)."""
    merged: dict[tuple[int, ...], float] = {}
    for players, c in zip(sets, coefficients, strict=True):
        key = tuple(sorted({int(p) for p in players}))
        if key and not 0 <= key[0] <= key[-1] < n:
            raise ValueError(f"set {key} has players outside 0…{n - 1}")
        merged[key] = merged.get(key, 0.0) + float(c)
    return merged


def _compile(n: int, dividends: dict[tuple[int, ...], float], lookup_size: int) -> _Tables:
    """Group small sets into lookup supports, give each large set a count support."""
    small = {t: c for t, c in dividends.items() if 0 < len(t) <= lookup_size}
    large = [(t, c) for t, c in dividends.items() if len(t) > lookup_size]
    columns, tables = [], []
    for support, terms in _group_small(n, small, lookup_size):
        column, values = _lookup_support(n, support, terms)
        columns.append(column)
        tables.append(values)
    for players, _ in large:
        column = np.zeros(n, dtype=np.float32)
        column[list(players)] = 1.0
        columns.append(column)
    sizes = np.array([len(players) for players, _ in large], dtype=np.float32)
    return _stack(n, columns, tables, sizes, np.array([c for _, c in large]))


def _group_small(
    n: int, small: dict[tuple[int, ...], float], lookup_size: int
) -> list[tuple[tuple[int, ...], dict[tuple[int, ...], float]]]:
    """Greedy supports, largest sets first: join the support overlapping a set most whose
    union with it stays within ``lookup_size`` players, else open a new one."""
    covers = np.zeros((0, n), dtype=bool)
    members: list[dict[tuple[int, ...], float]] = []
    for players, c in sorted(small.items(), key=lambda kv: -len(kv[0])):
        overlap = covers[:, list(players)].sum(axis=1)
        fits = covers.sum(axis=1) + len(players) - overlap <= lookup_size
        if fits.any() and overlap[fits].max() > 0:
            best = int(np.flatnonzero(fits)[np.argmax(overlap[fits])])
        else:
            covers = np.vstack([covers, np.zeros((1, n), dtype=bool)])
            members.append({})
            best = len(members) - 1
        covers[best, list(players)] = True
        members[best][players] = c
    return [
        (tuple(np.flatnonzero(row).tolist()), m) for row, m in zip(covers, members, strict=True)
    ]


def _lookup_support(
    n: int, support: tuple[int, ...], terms: dict[tuple[int, ...], float]
) -> tuple[FloatArray, FloatArray]:
    """Bit weights ``2**k`` on the support's players and the table ``Σ_{T⊆code} c_T``."""
    column = np.zeros(n, dtype=np.float32)
    column[list(support)] = 2.0 ** np.arange(len(support))
    position = {p: k for k, p in enumerate(support)}
    dividends = np.zeros(1 << len(support))
    for players, c in terms.items():
        dividends[sum(1 << position[p] for p in players)] += c
    return column, zeta(dividends)


def _stack(
    n: int,
    columns: list[FloatArray],
    tables: list[FloatArray],
    sizes: FloatArray,
    coefficients: FloatArray,
) -> _Tables:
    lengths = [len(t) for t in tables]
    if sum(lengths) >= 1 << 24:
        raise ValueError("lookup tables too large: lower lookup_size")
    weights = np.stack(columns, axis=1) if columns else np.zeros((n, 0))
    return _Tables(
        weights=weights.astype(np.float32),
        offsets=np.cumsum([0, *lengths[:-1]]).astype(np.float32)[: len(tables)],
        table=np.concatenate(tables) if tables else np.zeros(0),
        sizes=sizes,
        coefficients=coefficients.astype(np.float64),
    )


def _check_pairs(pairs: IntArray, n: int) -> IntArray:
    use = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(use) and (use.min() < 0 or use.max() >= n or np.any(use[:, 0] == use[:, 1])):
        raise ValueError(f"pairs must be two distinct players in 0…{n - 1}")
    return use


# --------------------------------------------------------------------------------------
# A random game whose order-strength curve has the representation bottleneck's U shape.


def random_bottleneck_game(
    n: int,
    rng: np.random.Generator,
    *,
    cols: int | None = None,
    clusters: int | None = None,
    local_terms: int | None = None,
    high_terms: int | None = None,
    noise_terms: int | None = None,
    middle_terms: int = 8,
    high_scale: float = 0.4,
    noise_scale: float = 4.0,
) -> UnanimityGame:
    """A sum of unanimity models on a rows×cols grid whose ``J^(m)`` is U-shaped (SCIENCE.md §4).

    Strong low- and high-order interactions and weak middle-order ones, as the
    representation-bottleneck paper (seed 000) finds in trained networks, with context
    noise of a network's size: a sampled ``Δv(i,j,S)`` of a local pair varies several
    times more than ``I^(m)(i,j)`` at middle orders. Each count defaults to ``n``.

    - **saturating local clusters** (``clusters``): 3–6 neighbouring patches ``R`` acting
      as one piece of evidence, ``a·[S ∩ R ≠ ∅]`` (dividends ``a·(−1)^{|T|+1}``,
      ``∅ ≠ T ⊆ R``, ``a ~ N(0,1)``). A pair inside ``R`` has
      ``I^(m)(i,j) = −a·C(n−|R|, m)/C(n−2, m) ≈ −a·(1 − m/n)^{|R|−2}``: the left arm of the U;
    - **local AND terms** (``local_terms``): 2–4 neighbouring patches, ``c ~ N(0, 0.15²)``;
    - **high-order terms** (``high_terms``): ragged regions of ``s`` patches (the ``s``
      nearest a random centre, distances jittered), ``s`` log-uniform in ``[6, n]``,
      ``c ~ N(0, high_scale²·6/s)``. A pair inside gains ``c·w(m, s−2) ≈ c·(m/n)^{s−2}``:
      the right arm of the U;
    - **balanced noise terms** (``noise_terms``): a local core ``R`` (3–5 patches) joined
      once with ``a`` distant players (coefficient ``+c``) and once with ``a`` others
      (``−c``), ``a ∈ {1, 2}``, ``c ~ N(0, noise_scale²)``: zero net ``I^(m)`` for the pairs
      of ``R`` at every order, and no local pair outside ``R`` is touched, but ``Δv``
      flips with the distant players' presence — context noise, which biases
      ``|mean Δv|`` upward, without changing the exact curve over local pairs;
    - ``middle_terms`` random sets of ``n/3 … 2n/3`` players with small coefficients.

    ``cols`` defaults to ``√n`` when ``n`` is a square (else one row of ``n``).
    Evaluation costs O(batch · n · 4n) (about ``4n`` supports, see :class:`UnanimityGame`).

    Example:
        >>> game = random_bottleneck_game(16, np.random.default_rng(0))
        >>> game.n_players, len(game.sets) > 100
        (16, True)
    """
    cols = _grid_cols(n) if cols is None else cols
    if n % cols:
        raise ValueError(f"n = {n} is not a multiple of cols = {cols}")
    terms = _Terms()
    for _ in range(n if clusters is None else clusters):
        terms.add_or_cluster(_local_set(rng, n, cols, int(rng.integers(3, 7))), rng.normal())
    for _ in range(n if local_terms is None else local_terms):
        terms.add(_local_set(rng, n, cols, int(rng.integers(2, 5))), rng.normal(0.0, 0.15))
    for size in _log_uniform_sizes(rng, n if high_terms is None else high_terms, n):
        scale = high_scale * math.sqrt(min(6, n) / size)
        terms.add(_blob(rng, n, cols, size), rng.normal(0.0, scale))
    for _ in range(n if noise_terms is None else noise_terms):
        core = _local_set(rng, n, cols, int(rng.integers(3, 6)))
        terms.add_balanced(core, _other_players(rng, n, cols, core), rng.normal(0.0, noise_scale))
    for _ in range(middle_terms):
        size = int(rng.integers(max(2, n // 3), max(3, 2 * n // 3)))
        terms.add(rng.choice(n, size=size, replace=False).tolist(), rng.normal(0.0, 0.1))
    return UnanimityGame(n, terms.sets, terms.coefficients, constant=float(rng.normal()))


class _Terms:
    """Accumulates ``(set, coefficient)`` terms for :class:`UnanimityGame`."""

    def __init__(self) -> None:
        self.sets: list[list[int]] = []
        self.coefficients: list[float] = []

    def add(self, players: list[int], coefficient: float) -> None:
        self.sets.append(players)
        self.coefficients.append(float(coefficient))

    def add_or_cluster(self, players: list[int], amplitude: float) -> None:
        """Dividends of ``a·[S ∩ R ≠ ∅]``: ``a·(−1)^{|T|+1}`` for every ``∅ ≠ T ⊆ R``."""
        for mask in range(1, 1 << len(players)):
            subset = [p for k, p in enumerate(players) if mask >> k & 1]
            self.add(subset, amplitude * (-1.0) ** (len(subset) + 1))

    def add_balanced(self, core: list[int], others: list[int], coefficient: float) -> None:
        """``+c·[core ∪ A ⊆ S] − c·[core ∪ B ⊆ S]`` with ``others = A + B`` split in halves."""
        half = len(others) // 2
        self.add(core + others[:half], coefficient)
        self.add(core + others[half:], -coefficient)


def _grid_cols(n: int) -> int:
    side = math.isqrt(n)
    return side if side * side == n else n


def _local_set(rng: np.random.Generator, n: int, cols: int, size: int) -> list[int]:
    """A random patch and ``size − 1`` others within Chebyshev distance 1 (2 if needed)."""
    rows = n // cols
    r, c = divmod(int(rng.integers(n)), cols)
    for radius in (1, 2, max(rows, cols)):
        near = [
            rr * cols + cc
            for rr in range(max(0, r - radius), min(rows, r + radius + 1))
            for cc in range(max(0, c - radius), min(cols, c + radius + 1))
            if (rr, cc) != (r, c)
        ]
        if len(near) >= size - 1:
            return [r * cols + c, *rng.choice(near, size=size - 1, replace=False).tolist()]
    raise ValueError(f"a set of {size} players does not fit in {n} players")


def _other_players(rng: np.random.Generator, n: int, cols: int, core: list[int]) -> list[int]:
    """``2a`` random players, ``a ∈ {1, 2}``, more than 2 patches (Chebyshev) away from the
    core and from each other, so that no local pair gains a net interaction from them;
    on grids too small for that, any players outside the core."""
    count = 2 * int(rng.integers(1, 3))
    chosen: list[int] = []
    for p in rng.permutation(n).tolist():
        if all(_distance(p, q, cols) > 2 for q in core + chosen):
            chosen.append(p)
            if len(chosen) == count:
                return chosen
    rest = np.setdiff1d(np.arange(n), core)
    return rng.choice(rest, size=min(count, len(rest) - len(rest) % 2), replace=False).tolist()


def _blob(rng: np.random.Generator, n: int, cols: int, size: int) -> list[int]:
    """``size`` players nearest a random centre (Euclidean, jittered): a ragged region."""
    r, c = np.divmod(np.arange(n), cols)
    cr, cc = divmod(int(rng.integers(n)), cols)
    reach = np.hypot(r - cr, c - cc) + rng.uniform(0.0, 2.0, size=n)
    return np.argsort(reach)[:size].tolist()


def _distance(p: int, q: int, cols: int) -> int:
    (pr, pc), (qr, qc) = divmod(p, cols), divmod(q, cols)
    return max(abs(pr - qr), abs(pc - qc))


def _log_uniform_sizes(rng: np.random.Generator, count: int, n: int) -> list[int]:
    low = min(6, n)
    sizes = np.exp(rng.uniform(math.log(low), math.log(n), size=count))
    return np.clip(np.round(sizes), low, n).astype(int).tolist()
