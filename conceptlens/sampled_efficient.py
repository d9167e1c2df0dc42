"""A pass-efficient sampled ``J^(m)``: pilot-planned pairs and contexts per order (SCIENCE.md §4).

Builds on the shared-pass estimator of :mod:`conceptlens.sampling` (a context ``X``, then
``v(S)``, ``v(S±i)`` and ``v(S±i±j)`` once each, every usable pair inside used) and adds
three things, each chosen because of where the paper's budget goes on the benchmark game
(``bench/bench_sampled_efficient.py``):

1. **Exact end orders on every pair.** At ``m = 0`` and ``m = n−2`` there is one context,
   so ``1 + p + q`` passes give ``I^(m)`` of *all* ``q`` pairs exactly (2,867 passes for
   the 2,610 local pairs of a 16×16 grid). The paper's 200 random pairs leave a
   pair-sampling error there that dominates its error floor.
2. **Per-order pairs and contexts from a pilot** (:func:`plan_orders`). Each sampled order
   ``m`` gets a *player fraction* ``f_m`` — the pairs used are the requested pairs with
   both players in a uniformly random set of ``round(f_m·n)`` players, so they still share
   ``v(S+i)`` (about ``1 + n/(f·P)`` passes per sample instead of 4) — and a number of
   samples per pair ``k_m``. A small pilot (its own random pairs, 8 samples each on the
   pairs of 18% of the players, about 13,000 passes at n = 256 for 11 orders; its passes
   counted, its samples *not* reused) measures per pair the context variance ``σ²`` and a
   rough ``|I|``; a model of the error of the order's strength (the bias of ``|Î|`` or of
   the debiased ``|Î|`` at ``k`` samples, the noise ``σ²/(kP)``, and the pair-sampling
   variance of ``|I|`` over ``P`` pairs) is minimised under the pass budget by a Lagrange
   multiplier: Neyman allocation across orders, extended to the pair count. Quiet orders
   get many pairs and few contexts, noisy ones few pairs and many contexts.
3. **Tiled contexts** (``tiled=True``): the ``X`` of an order are consecutive windows of
   ``x`` positions of random permutations (``⌊n/x⌋`` disjoint windows per permutation),
   instead of independent draws. A pair then sees disjoint contexts, each player at most
   once per permutation — sampling players without replacement, which removes part of
   the variance that is additive in the players' presence (most at low ``x``; nothing
   when only one window fits).

**Unbiasedness.** Fix an order and a pair ``(i,j)`` in the order's pair set (that set is
drawn independently of every ``Δv`` of the main run). Independent contexts: as in
:mod:`conceptlens.sampling`, given that the pair is usable, ``S`` is uniform over the
``m``-subsets of ``N∖{i,j}``. Tiled contexts: condition on the positions of ``i`` and
``j`` in each permutation; they decide which windows are usable, and the other
positions hold a uniformly random arrangement of ``N∖{i,j}``, so every usable window is
a uniform ``x``-subset of ``N∖{i,j}`` (and ``S`` uniform among the ``m``-subsets, by the
same bijection as top-down). The pair's mean ``Δv`` is therefore an unbiased estimate of
``I^(m)(i,j)`` given its number of samples, whatever it is. The plan (``f_m``, ``k_m``)
depends on the pilot only, whose samples are independent of the main run and are not
used in the estimate, so the per-pair means stay unbiased conditional on the plan.
Pairs are a uniformly random player subset's pairs: every requested pair is included
with the same probability, so the mean of ``|I|`` over them estimates the mean over all
requested pairs without bias up to that of a ratio (the number of pairs kept varies with
the subset). What is *not* unbiased: ``|Î|`` (plain, biased upward where
``|I|`` is small next to its SE) and the debiased ``2|Î| − F(Î, s²)`` of
:meth:`SampledMultiOrder.strength` (about half of that bias left where ``|I| ≪ s``),
and ``J`` itself, a ratio. The plan only trades those biases against the noise.

Tiled windows of one permutation are dependent, so they share a replicate group
(``permutation mod REPLICATES``): the jackknife standard errors stay valid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from conceptlens.aliases import BoolArray, FloatArray, Game, IntArray
from conceptlens.sampling import (
    REPLICATES,
    OrderStrength,
    SampledMultiOrder,
    _Design,
    combine_strengths,
    folded_normal_mean,
    sampled_relative_strength,
)

Target = Literal["plain", "debiased"]

#: Player fractions the planner chooses from (1.0: every requested pair).
FRACTIONS = (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12)
#: The pilot's signal is ``√max(Î² − SHRINK·s², 0)``: above 1, a pair's ``|I|`` counts only
#: where it stands out of its noise (with 8 samples ``s²`` itself is noisy, and
#: ``√max(Î² − s², 0)`` overrates ``|I|`` where ``σ ≫ |I|``, and so underrates the bias).
SHRINK = 4.0
#: Samples per pair the planner chooses from (at least 3, so that every pair has its own
#: variance for the debiased strength).
CONTEXT_GRID = tuple(sorted({round(1.25**e) for e in range(5, 36)}))


@dataclass(frozen=True)
class OrderSetting:
    """One order's design: ``contexts`` samples per used pair wanted on average, on the
    requested pairs whose two players lie in a random ``fraction`` of the players."""

    order: int
    contexts: int
    fraction: float = 1.0


@dataclass(frozen=True)
class EfficientResult:
    """One run: a :class:`SampledMultiOrder` per order (each with its own pairs) and the
    passes spent, the pilot's included."""

    settings: tuple[OrderSetting, ...]
    parts: tuple[SampledMultiOrder, ...]
    pilot_passes: int = 0

    @property
    def passes(self) -> int:
        return self.pilot_passes + sum(p.passes for p in self.parts)

    def strength(self, *, debias: bool = False) -> OrderStrength:
        """``E_{i,j}|I^(m)|`` per order (see :meth:`SampledMultiOrder.strength`)."""
        return combine_strengths(*(p.strength(debias=debias) for p in self.parts))

    def relative_strength(self, *, debias: bool = True) -> OrderStrength:
        """``J^(m)`` with delta-method standard errors over the independent orders."""
        s = self.strength(debias=debias)
        return sampled_relative_strength(s.value, s.se, s.orders, df=s.df)


# --------------------------------------------------------------------------------------
# Sampling


def subset_pairs(pairs: IntArray, n: int, fraction: float, rng: np.random.Generator) -> IntArray:
    """The pairs whose two players lie in a uniformly random set of ``round(fraction·n)``
    players (all pairs for ``fraction ≥ 1``); redrawn while that leaves none.

    Example:
        >>> p = np.array([[0, 1], [1, 2], [2, 3]])
        >>> subset_pairs(p, 4, 1.0, np.random.default_rng(0)).tolist()
        [[0, 1], [1, 2], [2, 3]]
    """
    if fraction >= 1.0:
        return pairs
    size = max(2, round(fraction * n))
    for _ in range(1000):
        keep = np.zeros(n, dtype=bool)
        keep[rng.choice(n, size=size, replace=False)] = True
        inside = keep[pairs[:, 0]] & keep[pairs[:, 1]]
        if inside.any():
            return pairs[inside]
    raise ValueError(f"a fraction of {fraction} of the players holds none of the pairs")


def tiled_subsets(
    rng: np.random.Generator, rows: int, n: int, size: int
) -> tuple[BoolArray, IntArray]:
    """``rows`` uniform ``size``-subsets of ``n`` players as windows of random permutations.

    Permutation ``t`` gives the ``⌊n/size⌋`` disjoint windows ``π_t[w·size : (w+1)·size]``;
    each window alone is a uniform ``size``-subset. Returns the subsets ``[rows, n]`` and
    the permutation of each row.

    Example:
        >>> sets, perm = tiled_subsets(np.random.default_rng(0), 3, 4, 2)
        >>> sets.sum(axis=1).tolist(), perm.tolist(), bool((sets[0] & sets[1]).any())
        ([2, 2, 2], [0, 0, 1], False)
    """
    out = np.zeros((rows, n), dtype=bool)
    if size == 0:
        return out, np.arange(rows)
    per = n // size
    perms = -(-rows // per)
    order = np.argsort(rng.random((perms, n)), axis=1)
    windows = order[:, : per * size].reshape(perms * per, size)[:rows]
    np.put_along_axis(out, windows, True, axis=1)
    return out, np.arange(rows) // per


def _independent_subsets(
    rng: np.random.Generator, rows: int, n: int, size: int
) -> tuple[BoolArray, IntArray]:
    out = np.zeros((rows, n), dtype=bool)
    if size > 0:
        chosen = np.argpartition(rng.random((rows, n)), size - 1, axis=1)[:, :size]
        np.put_along_axis(out, chosen, True, axis=1)
    return out, np.arange(rows)


def usable_probability(n: int, x: int) -> float:
    """``P(i, j ∉ X)`` for ``X`` a uniform ``x``-subset of ``n`` players."""
    return (n - x) * (n - x - 1) / (n * (n - 1))


def contexts_drawn(n: int, m: int, contexts: int) -> int:
    """Contexts an order draws: 1 at ``m ∈ {0, n−2}``, else ``⌈contexts/ρ(x)⌉``,
    ``x = min(m, n−2−m)``."""
    x = min(m, n - 2 - m)
    return 1 if x == 0 else math.ceil(contexts / usable_probability(n, x))


def expected_passes(n: int, m: int, pairs: IntArray, contexts: int) -> float:
    """Expected forward passes of one order on these pairs (exact at ``m ∈ {0, n−2}``).

    ``T·(1 + E p + E q)`` with ``T`` = :func:`contexts_drawn`, ``E q = P·ρ(x)`` and
    ``E p = Σ_a P(a ∉ X)·(1 − P(every partner of a ∈ X | a ∉ X))``, the partners of ``a``
    being its ``d_a`` pair mates: ``C(n−1−d, x−d)/C(n−1, x)``. Tiled windows are
    marginally uniform, so the expectation is the same for them.
    """
    x = min(m, n - 2 - m)
    t = contexts_drawn(n, m, contexts)
    degree = np.bincount(pairs.ravel(), minlength=n)
    degree = degree[degree > 0]
    if x == 0:
        return float(1 + len(degree) + len(pairs))
    all_in = np.array(
        [
            math.comb(n - 1 - d, x - d) / math.comb(n - 1, x) if d <= x else 0.0
            for d in degree.tolist()
        ]
    )
    active = (n - x) / n * (1.0 - all_in)
    return t * (1.0 + float(active.sum()) + len(pairs) * usable_probability(n, x))


def sample_orders(
    game: Game,
    *,
    pairs: IntArray,
    settings: Sequence[OrderSetting],
    rng: np.random.Generator,
    tiled: bool = True,
    batch_size: int = 8192,
) -> EfficientResult:
    """Shared-pass samples of ``I^(m)(i,j)``, one design per order (see the module docstring).

    ``pairs`` are the requested pairs (``i < j`` after sorting); each order uses those
    inside a random ``fraction`` of the players. Orders ``0`` and ``n−2`` are exact
    (one context). Cost per order: :func:`expected_passes` in expectation, exactly
    ``1 + p + q`` at the exact orders.
    """
    n = game.n_players
    population = np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1)
    parts = []
    for setting in settings:
        m = int(setting.order)
        if not 0 <= m <= n - 2 or setting.contexts < 1:
            raise ValueError(f"bad setting {setting} for n = {n}")
        exact = m in (0, n - 2)
        use = population if exact else subset_pairs(population, n, setting.fraction, rng)
        design = _Design(n, use, 1)
        _draw(design, rng, m, setting.contexts, tiled)
        values = design.evaluate(game, batch_size, None)
        parts.append(design.result(values, np.array([m]), np.array([exact])))
    return EfficientResult(tuple(settings), tuple(parts))


def _draw(design: _Design, rng: np.random.Generator, m: int, contexts: int, tiled: bool) -> None:
    n = design.n
    x = min(m, n - 2 - m)
    total = contexts_drawn(n, m, contexts)
    draw = tiled_subsets if tiled else _independent_subsets
    drawn, group = draw(rng, total, n, x)
    free = ~drawn
    block = np.arange(len(design.pairs))
    usable = free[:, design.pairs[:, 0]] & free[:, design.pairs[:, 1]]
    context_of, which = np.nonzero(usable)
    base = drawn if m <= n - 2 - m else free
    design.add(base, context_of, block[which], 0, group % REPLICATES)


# --------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class _OrderModel:
    """Pilot estimates of one order: a rough ``|I|`` (``signal``) and ``σ²`` per pilot
    pair, and the variance of that ``|I|`` over pairs (``spread``)."""

    signal: FloatArray
    noise: FloatArray
    spread: float

    def error2(self, k: int, pairs: float, population: int, target: Target) -> float:
        """Modelled squared error of the order's strength at ``k`` samples on ``pairs``."""
        s2 = self.noise / k
        if target == "plain":
            expect = folded_normal_mean(self.signal, s2)
        else:
            expect = 2.0 * folded_normal_mean(self.signal, s2) - folded_normal_mean(
                self.signal, 2.0 * s2
            )
        bias = float(np.mean(expect - self.signal))
        noise = float(np.mean(self.noise)) / (k * pairs)
        floor = self.spread / pairs * max(0.0, 1.0 - pairs / population)
        return bias * bias + noise + floor


def plan_orders(
    game: Game,
    *,
    pairs: IntArray,
    orders: Sequence[int],
    budget: float,
    rng: np.random.Generator,
    target: Target = "debiased",
    pilot_fraction: float = 0.18,
    pilot_contexts: int = 8,
    fractions: Sequence[float] = FRACTIONS,
    tiled: bool = True,
) -> tuple[list[OrderSetting], int]:
    """Settings for every order within ``budget`` expected passes (the pilot's included),
    and the pilot's passes.

    The exact orders take all pairs. For the others a pilot (``pilot_contexts`` samples per
    pair on the pairs of a random ``pilot_fraction`` of the players) gives per pair a
    context variance ``σ²`` (pooled where a pair has < 2 samples) and a signal ``√max(Î² −
    SHRINK·σ²/c, 0)`` (rough; see :data:`SHRINK`); each candidate ``(f, k)`` (``f`` in
    ``fractions``, ``k`` in :data:`CONTEXT_GRID`) is priced by :func:`expected_passes` on an
    independent draw of pairs and scored by the modelled squared error of the order's
    strength (bias of the ``target`` estimate of ``|I|`` at ``k`` samples, noise, pair
    sampling); a Lagrange multiplier found by bisection picks, per order, the candidate
    minimising ``error² + λ·passes`` so that the total fits the budget.
    """
    n = game.n_players
    population = np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1)
    ends = [int(m) for m in orders if int(m) in (0, n - 2)]
    middle = [int(m) for m in orders if int(m) not in (0, n - 2)]
    fixed = sum(expected_passes(n, m, population, 1) for m in ends)
    settings = [OrderSetting(m, 1, 1.0) for m in ends]
    if not middle:
        return settings, 0
    pilot = sample_orders(
        game,
        pairs=population,
        settings=[OrderSetting(m, pilot_contexts, pilot_fraction) for m in middle],
        rng=rng,
        tiled=tiled,
    )
    models = [_model(part) for part in pilot.parts]
    left = budget - fixed - pilot.passes
    options = []  # per order: [(cost, error²)] over candidates
    for m, model in zip(middle, models, strict=True):
        rows = []
        for f in fractions:
            drawn = subset_pairs(population, n, f, rng)
            unit = expected_passes(n, m, drawn, 1) / contexts_drawn(n, m, 1)
            for k in CONTEXT_GRID:
                cost = unit * contexts_drawn(n, m, k)
                err = model.error2(k, len(drawn), len(population), target)
                rows.append((cost, err, f, k))
        options.append(rows)
    choice = _lagrange(options, left)
    settings += [OrderSetting(m, k, f) for m, (_, _, f, k) in zip(middle, choice, strict=True)]
    settings.sort(key=lambda s: s.order)
    return settings, pilot.passes


def _model(part: SampledMultiOrder) -> _OrderModel:
    count = part.count[0].astype(np.float64)
    mean = part.mean[0]
    ok = count > 0
    count, mean = count[ok], mean[ok]
    total = part.replicate_sum.sum(axis=0)[0][ok]
    sumsq = part.replicate_sumsq.sum(axis=0)[0][ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(count > 1, (sumsq - total**2 / count) / (count - 1), np.nan)
    pooled = float(np.nanmean(var)) if np.isfinite(var).any() else 0.0
    var = np.where(np.isfinite(var), np.maximum(var, 0.0), pooled)
    signal = np.sqrt(np.maximum(mean**2 - SHRINK * var / count, 0.0))
    return _OrderModel(signal, var, float(np.var(signal)))


def _lagrange(
    options: list[list[tuple[float, float, float, int]]], budget: float
) -> list[tuple[float, float, float, int]]:
    """Per order the candidate minimising ``error² + λ·cost``, ``λ`` bisected (in log
    space) to the smallest value whose total cost fits ``budget`` (the cheapest
    candidates if none does)."""

    def pick(lam: float) -> list[tuple[float, float, float, int]]:
        return [min(rows, key=lambda r: r[1] + lam * r[0]) for rows in options]

    def cost(choice: list[tuple[float, float, float, int]]) -> float:
        return sum(c[0] for c in choice)

    lo, hi = -30.0, 10.0  # log10 λ
    if cost(pick(10.0**hi)) > budget:
        return pick(10.0**hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if cost(pick(10.0**mid)) > budget:
            lo = mid
        else:
            hi = mid
    return pick(10.0**hi)


def efficient_j(
    game: Game,
    *,
    pairs: IntArray,
    orders: Sequence[int],
    budget: float,
    rng: np.random.Generator,
    target: Target = "debiased",
    tiled: bool = True,
) -> EfficientResult:
    """Plan with a pilot (:func:`plan_orders`), then sample (:func:`sample_orders`).

    ``passes`` of the result includes the pilot's; it meets ``budget`` in expectation.
    """
    settings, pilot = plan_orders(
        game, pairs=pairs, orders=orders, budget=budget, rng=rng, target=target, tiled=tiled
    )
    result = sample_orders(game, pairs=pairs, settings=settings, rng=rng, tiled=tiled)
    return EfficientResult(result.settings, result.parts, pilot)
