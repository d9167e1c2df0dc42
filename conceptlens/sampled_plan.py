"""Sampled multi-order interactions as a fixed plan of work units — for many workers.

:func:`conceptlens.sampling.sample_multi_order` draws every context from one generator, so
its numbers depend on the order in which contexts are drawn. A service that splits one
image's contexts over several workers needs numbers that depend on the request alone. A
:class:`SampledPlan` therefore cuts the work into **units** fixed by the request (``n``,
the parts' orders, pairs and contexts, and the seed): a unit is a range ``[start, stop)``
of the contexts of one order of one part, drawn from its own generator seeded with
``(seed, part, order, start)``. Any grouping of units into tasks, run by any number of
workers in any order, evaluates the same coalitions; merging the tasks' statistics in unit
order gives the same numbers. The estimator is the shared-pass one of
:mod:`conceptlens.sampling` (SCIENCE.md §4): each context is a uniform draw, so every
sample is an unbiased draw of ``Δv(i,j,S)`` whatever the unit it falls in. Context ``c``
of an order goes to replicate group ``c mod REPLICATES``, as in one process.

A **part** is a set of orders with its own pairs and contexts per pair (the *hybrid*
design: all local pairs at the exact and low orders, fewer pairs with more contexts at
the noisy middle orders); each order belongs to one part. :func:`image_strength` joins
the parts' ``E_{i,j}|I^(m)(i,j)|`` into one curve (:func:`conceptlens.sampling.combine_strengths`).

Example:
    >>> from conceptlens.games import UnanimityGame
    >>> from conceptlens.pairwise import all_pairs
    >>> game = UnanimityGame(6, [[0, 1]], [1.0])
    >>> plan = SampledPlan.build(6, [PlanPart((0, 2, 4), all_pairs(6), 5)], seed=0)
    >>> out = run_plan(plan, game)
    >>> float(out[0].mean[0, 0]), float(out[0].mean[1, 0])   # I^(m)(0,1) = 1 at every m
    (1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from conceptlens.aliases import FloatArray, Game, IntArray, ProgressFn
from conceptlens.pairs import choose_pairs
from conceptlens.sampling import (
    PAPER_RATIOS,
    REPLICATES,
    OrderStrength,
    SampledMultiOrder,
    _Design,
    _random_subsets,
    _usable_probability,
    combine_strengths,
    ratio_orders,
)

#: Expected forward passes per unit (a unit holds at least one context).
UNIT_PASSES = 4096
#: Seed-sequence tag, so that plan generators never collide with other uses of a seed.
_STREAM = 0x5A3D


@dataclass(frozen=True)
class PlanPart:
    """Orders ``m`` sampled with the same pairs and contexts per pair."""

    orders: tuple[int, ...]
    pairs: IntArray
    contexts: int


@dataclass(frozen=True)
class Unit:
    """Contexts ``[start, stop)`` of order ``part.orders[order]`` of part ``part``."""

    part: int
    order: int
    start: int
    stop: int
    passes: float
    """Expected forward passes."""


@dataclass(frozen=True)
class SampledPlan:
    n: int
    parts: tuple[PlanPart, ...]
    seed: int
    units: tuple[Unit, ...]

    @classmethod
    def build(
        cls, n: int, parts: Sequence[PlanPart], *, seed: int, unit_passes: int = UNIT_PASSES
    ) -> SampledPlan:
        """The plan of ``parts`` for ``n`` players; units of about ``unit_passes`` passes."""
        checked = tuple(_check_part(n, p) for p in parts)
        if not checked:
            raise ValueError("a plan needs at least one part")
        every = [m for p in checked for m in p.orders]
        if len(set(every)) != len(every):
            raise ValueError("an order appears in more than one part")
        units: list[Unit] = []
        for index, part in enumerate(checked):
            for k, m in enumerate(part.orders):
                x = min(m, n - 2 - m)
                total = contexts_drawn(n, x, part.contexts)
                per = passes_per_context(n, x, part.pairs)
                size = max(1, int(unit_passes // max(per, 1.0)))
                for start in range(0, total, size):
                    stop = min(start + size, total)
                    units.append(Unit(index, k, start, stop, per * (stop - start)))
        return cls(n, checked, int(seed), tuple(units))

    @property
    def expected_passes(self) -> float:
        return float(sum(u.passes for u in self.units))

    def chunks(self, max_passes: float) -> list[tuple[int, int]]:
        """Consecutive unit ranges ``[a, b)`` of at most ``max_passes`` expected passes each
        (a unit larger than that is a chunk of its own)."""
        out: list[tuple[int, int]] = []
        start, load = 0, 0.0
        for index, unit in enumerate(self.units):
            if index > start and load + unit.passes > max_passes:
                out.append((start, index))
                start, load = index, 0.0
            load += unit.passes
        out.append((start, len(self.units)))
        return out

    def designs(self, first: int, last: int) -> dict[int, _Design]:
        """The coalitions and samples of units ``first … last−1``, one design per part."""
        designs: dict[int, _Design] = {}
        for unit in self.units[first:last]:
            part = self.parts[unit.part]
            design = designs.setdefault(unit.part, _Design(self.n, part.pairs, len(part.orders)))
            self._draw(design, unit)
        return designs

    def _draw(self, design: _Design, unit: Unit) -> None:
        n, m = self.n, self.parts[unit.part].orders[unit.order]
        x = min(m, n - 2 - m)
        rng = np.random.default_rng([_STREAM, self.seed, unit.part, m, unit.start])
        count = unit.stop - unit.start
        drawn = _random_subsets(rng, count, n, x)
        free = ~drawn
        pairs = design.pairs
        usable = free[:, pairs[:, 0]] & free[:, pairs[:, 1]]
        context_of, which = np.nonzero(usable)
        base = drawn if m <= n - 2 - m else free
        replicate = (unit.start + np.arange(count)) % REPLICATES
        design.add(base, context_of, which, unit.order, replicate)

    def exact(self, part: int) -> np.ndarray:
        orders = np.asarray(self.parts[part].orders)
        return np.asarray((orders == 0) | (orders == self.n - 2))

    def result(self, part: int, design: _Design, values: FloatArray) -> SampledMultiOrder:
        return design.result(
            values, np.asarray(self.parts[part].orders, dtype=np.int64), self.exact(part)
        )


def _check_part(n: int, part: PlanPart) -> PlanPart:
    pairs = np.sort(np.asarray(part.pairs, dtype=np.int64).reshape(-1, 2), axis=1)
    if len(pairs) == 0:
        raise ValueError("a part needs at least one pair")
    if pairs.min() < 0 or pairs.max() >= n or np.any(pairs[:, 0] == pairs[:, 1]):
        raise ValueError(f"pairs must be two distinct players in 0…{n - 1}")
    if len(np.unique(pairs, axis=0)) != len(pairs):
        raise ValueError("pairs must not repeat")
    orders = tuple(sorted(int(m) for m in part.orders))
    if not orders or orders[0] < 0 or orders[-1] > n - 2 or len(set(orders)) != len(orders):
        raise ValueError(f"orders must be distinct and lie in 0…{n - 2}")
    if part.contexts < 1:
        raise ValueError("contexts must be ≥ 1")
    return PlanPart(orders, pairs, int(part.contexts))


def contexts_drawn(n: int, x: int, contexts: int) -> int:
    """Contexts an order draws: 1 if exact (``x = 0``), else ``⌈contexts / ρ(x)⌉``."""
    return 1 if x == 0 else math.ceil(contexts / _usable_probability(n, x))


def passes_per_context(n: int, x: int, pairs: IntArray) -> float:
    """Expected forward passes of one context: ``1 + E[p] + E[q]`` (SCIENCE.md §4), with
    ``q`` the usable pairs and ``p`` the players in them, for ``X`` uniform among the
    ``x``-subsets. ``P(i ∉ X, some partner ∉ X) = P(i ∉ X) − P(i ∉ X, all d partners ∈ X)``,
    the last ``C(n−1−d, x−d) / C(n, x)``.

    Example:
        >>> passes_per_context(4, 0, np.array([[0, 1], [1, 2]]))   # v(S), 3 players, 2 pairs
        6.0
    """
    q = len(pairs) * _usable_probability(n, x)
    degree = np.bincount(np.asarray(pairs).ravel(), minlength=n)
    p = 0.0
    for d in degree[degree > 0]:
        alone = 0.0 if x < d else math.exp(_log_comb(n - 1 - int(d), x - int(d)) - _log_comb(n, x))
        p += (n - x) / n - alone
    return 1.0 + p + q


def _log_comb(a: int, b: int) -> float:
    if b < 0 or b > a:
        return -math.inf
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def packed_coalitions(design: _Design) -> np.ndarray:
    """Every row of ``design`` as a bit-packed coalition ``[R, ⌈n/8⌉]`` (``np.packbits``)."""
    n = design.n
    if not design.rows:
        return np.zeros((0, (n + 7) // 8), dtype=np.uint8)
    bases = np.concatenate(design.bases)
    rows = np.concatenate(design.rows)
    out = np.empty((len(rows), bases.shape[1]), dtype=np.uint8)
    step = max(1, (1 << 22) // max(n, 1))
    for start in range(0, len(rows), step):
        batch = rows[start : start + step]
        coalitions = np.unpackbits(bases[batch[:, 0]], axis=1, count=n).astype(bool)
        for flip in (batch[:, 1], batch[:, 2]):
            at = np.flatnonzero(flip >= 0)
            coalitions[at, flip[at]] ^= True
        out[start : start + len(batch)] = np.packbits(coalitions, axis=1)
    return out


def merge(results: Iterable[SampledMultiOrder]) -> SampledMultiOrder:
    """Pool the samples of several results of the same orders and pairs, in the given order.

    Exact: counts add, and each cell's centred sums are moved to the centre of the first
    result with samples in that cell
    (``Σ(d − c') = Σ(d − c) + k(c − c')``, ``Σ(d − c')² = Σ(d − c)² + 2(c − c')Σ(d − c) +
    k(c − c')²``), so the pooled mean and variance are those of all samples together.
    """
    items = list(results)
    if not items:
        raise ValueError("nothing to merge")
    first = items[0]
    center = np.zeros_like(first.center)
    have = np.zeros(center.shape, dtype=bool)
    count = np.zeros_like(first.replicate_count)
    total = np.zeros_like(first.replicate_sum)
    sumsq = np.zeros_like(first.replicate_sumsq)
    passes = np.zeros_like(first.order_passes)
    for part in items:
        if part.orders.tolist() != first.orders.tolist() or not np.array_equal(
            part.pairs, first.pairs
        ):
            raise ValueError("only results of the same orders and pairs can be merged")
        new = (part.count > 0) & ~have  # a cell's centre: that of its first samples
        center[new] = part.center[new]
        have |= new
        shift = part.center - center  # [K, P], broadcast over replicate groups
        k = part.replicate_count
        count += k
        total += part.replicate_sum + k * shift
        sumsq += part.replicate_sumsq + 2 * shift * part.replicate_sum + k * shift**2
        passes += part.order_passes
    return SampledMultiOrder(
        n_players=first.n_players,
        orders=first.orders,
        pairs=first.pairs,
        center=center,
        replicate_count=count,
        replicate_sum=total,
        replicate_sumsq=sumsq,
        exact=first.exact,
        order_passes=passes,
    )


def empty_result(plan: SampledPlan, part: int) -> SampledMultiOrder:
    """A result of ``part`` with no samples (the neutral element of :func:`merge`)."""
    spec = plan.parts[part]
    shape = (REPLICATES, len(spec.orders), len(spec.pairs))
    return SampledMultiOrder(
        n_players=plan.n,
        orders=np.asarray(spec.orders, dtype=np.int64),
        pairs=spec.pairs,
        center=np.zeros(shape[1:]),
        replicate_count=np.zeros(shape, dtype=np.int64),
        replicate_sum=np.zeros(shape),
        replicate_sumsq=np.zeros(shape),
        exact=plan.exact(part),
        order_passes=np.zeros(len(spec.orders), dtype=np.int64),
    )


def run_units(
    plan: SampledPlan,
    first: int,
    last: int,
    evaluate: Callable[[np.ndarray, ProgressFn | None], FloatArray],
    progress: ProgressFn | None = None,
) -> dict[int, SampledMultiOrder]:
    """Statistics of units ``first … last−1`` per part. ``evaluate(packed, progress)``
    returns ``v`` of each bit-packed coalition (all parts' rows in one call)."""
    designs = plan.designs(first, last)
    packed = [packed_coalitions(d) for d in designs.values()]
    rows = np.concatenate(packed) if packed else np.zeros((0, (plan.n + 7) // 8), np.uint8)
    values = evaluate(rows, progress) if len(rows) else np.zeros(0)
    out: dict[int, SampledMultiOrder] = {}
    at = 0
    for (part, design), block in zip(designs.items(), packed, strict=True):
        out[part] = plan.result(part, design, values[at : at + len(block)])
        at += len(block)
    return out


def game_evaluator(
    game: Game, batch_size: int = 4096
) -> Callable[[np.ndarray, ProgressFn | None], FloatArray]:
    """``evaluate`` for :func:`run_units` from a game (in-process)."""

    def evaluate(packed: np.ndarray, progress: ProgressFn | None) -> FloatArray:
        values = np.empty(len(packed))
        for start in range(0, len(packed), batch_size):
            batch = packed[start : start + batch_size]
            coalitions = np.unpackbits(batch, axis=1, count=game.n_players).astype(bool)
            values[start : start + len(batch)] = game(coalitions)
            if progress is not None:
                progress(start + len(batch), len(packed))
        return values

    return evaluate


def run_plan(
    plan: SampledPlan, game: Game, *, max_passes: float = 65_536, batch_size: int = 4096
) -> list[SampledMultiOrder]:
    """The whole plan in this process (chunk by chunk, as workers would): one result per part."""
    evaluate = game_evaluator(game, batch_size)
    pooled = [[empty_result(plan, p)] for p in range(len(plan.parts))]
    for first, last in plan.chunks(max_passes):
        for part, result in run_units(plan, first, last, evaluate).items():
            pooled[part].append(result)
    return [merge(results) for results in pooled]


def image_strength(results: Sequence[SampledMultiOrder], *, debias: bool = False) -> OrderStrength:
    """``E_{i,j}|I^(m)(i,j)|`` at every planned order of one image, with standard errors."""
    return combine_strengths(*(r.strength(debias=debias) for r in results))


@dataclass(frozen=True)
class Hybrid:
    """The hybrid design: orders above ``split·(n−2)`` (except the exact ``n−2``) use
    ``pairs`` random pairs of the chosen ones with ``contexts`` each."""

    split: float = 0.25
    pairs: int = 400
    contexts: int = 40


def grid_plan(
    rows: int,
    cols: int,
    *,
    orders: Sequence[int] | None = None,
    ratios: Sequence[float] = PAPER_RATIOS,
    contexts: int = 10,
    radius: int | None = 2,
    random_pairs: int | None = None,
    seed: int = 0,
    hybrid: Hybrid | None = None,
    unit_passes: int = UNIT_PASSES,
) -> SampledPlan:
    """The plan of a sampled analysis on a rows×cols patch grid (one player per patch).

    Orders: ``orders`` if given, else ``⌊(n−2)·r⌋`` for ``ratios`` (the paper's 13 by
    default). Pairs: :func:`conceptlens.pairs.choose_pairs`. One part, or two with
    ``hybrid``.

    Example:
        >>> plan = grid_plan(16, 16, contexts=8, hybrid=Hybrid())
        >>> [len(p.pairs) for p in plan.parts], plan.parts[1].orders
        ([2610, 400], (76, 101, 127, 152, 177, 203, 228, 241))
    """
    n = rows * cols
    chosen = sorted(set(orders)) if orders is not None else ratio_orders(n, ratios)
    pairs = choose_pairs(rows, cols, radius=radius, random_pairs=random_pairs, seed=seed)
    if hybrid is None or len(pairs) <= hybrid.pairs:
        return SampledPlan.build(
            n, [PlanPart(tuple(chosen), pairs, contexts)], seed=seed, unit_passes=unit_passes
        )
    high = tuple(m for m in chosen if hybrid.split * (n - 2) < m < n - 2)
    low = tuple(m for m in chosen if m not in high)
    if not high:
        return SampledPlan.build(
            n, [PlanPart(low, pairs, contexts)], seed=seed, unit_passes=unit_passes
        )
    rng = np.random.default_rng([_STREAM, seed, 1])
    few = pairs[np.sort(rng.choice(len(pairs), size=hybrid.pairs, replace=False))]
    parts = [PlanPart(low, pairs, contexts)] if low else []
    parts.append(PlanPart(high, few, hybrid.contexts))
    return SampledPlan.build(n, parts, seed=seed, unit_passes=unit_passes)


_FIELDS = ("center", "replicate_count", "replicate_sum", "replicate_sumsq", "order_passes")


def to_arrays(results: dict[int, SampledMultiOrder]) -> dict[str, np.ndarray]:
    """Flat arrays (for an npz) of the results of some parts: ``p{k}_{field}``, with each
    part's orders, pairs and exact orders, so that the file stands alone."""
    out: dict[str, np.ndarray] = {}
    for k, r in results.items():
        out |= {f"p{k}_{name}": np.asarray(getattr(r, name)) for name in _FIELDS}
        out |= {f"p{k}_orders": r.orders, f"p{k}_pairs": r.pairs, f"p{k}_exact": r.exact}
        out[f"p{k}_n_players"] = np.asarray(r.n_players)
    return out


def from_arrays(arrays: dict[str, np.ndarray]) -> dict[int, SampledMultiOrder]:
    """The results :func:`to_arrays` wrote, by part."""
    parts = sorted({int(key[1:].split("_", 1)[0]) for key in arrays if key.startswith("p")})
    return {
        k: SampledMultiOrder(
            n_players=int(arrays[f"p{k}_n_players"]),
            orders=np.asarray(arrays[f"p{k}_orders"], dtype=np.int64),
            pairs=np.asarray(arrays[f"p{k}_pairs"], dtype=np.int64),
            exact=np.asarray(arrays[f"p{k}_exact"], dtype=bool),
            **{name: np.asarray(arrays[f"p{k}_{name}"]) for name in _FIELDS},
        )
        for k in parts
    }
