"""Sampled multi-order interactions for large n — SCIENCE.md §4 (seed 000).

``I^(m)(i,j) = E_{S⊆N∖{i,j}, |S|=m} Δv(i,j,S)``,
``Δv(i,j,S) = v(S∪{i,j}) − v(S∪{i}) − v(S∪{j}) + v(S)``.

**Shared-pass estimator** (:func:`sample_multi_order`). Per order ``m`` let
``x = min(m, n−2−m)``. A context draws a set ``X`` uniformly among the ``x``-subsets of
``N``; every requested pair disjoint from ``X`` is *usable* and gives one sample:

- *bottom-up* (``m ≤ (n−2)/2``): ``S = X``; evaluate ``v(S)``, ``v(S+i)`` for every player
  ``i`` of a usable pair, and ``v(S+i+j)`` for every usable pair — the set ``P`` of
  SCIENCE.md §4 is the players outside ``S``;
- *top-down* (``m > (n−2)/2``): ``X`` is the set of absent players besides the pair; with
  ``B = N∖X`` evaluate ``v(B)``, ``v(B−i)`` and ``v(B−i−j)``; the pair's context is
  ``S = B∖{i,j}``, of size ``n−2−x = m``.

Each coalition is evaluated once, so a context costs exactly ``1 + p + q`` forward passes
for ``q`` samples, where ``p`` counts the players of the ``q`` usable pairs.

*Unbiasedness.* Fix a requested pair ``(i,j)``. It is usable iff ``i, j ∉ X``, an event
that depends on nothing but ``X``. For any ``x``-set ``A ⊆ N∖{i,j}``:
``P(X = A | i,j ∉ X) = P(X = A) / P(i,j ∉ X) = C(n,x)⁻¹ / (C(n−2,x)/C(n,x)) = C(n−2,x)⁻¹``,
so, given that the pair is used, ``X`` is uniform over the ``x``-subsets of ``N∖{i,j}``.
Bottom-up, ``S = X`` is then uniform over the ``m``-subsets of ``N∖{i,j}``; top-down,
``S = N∖(X∪{i,j})`` is the complement of ``X`` inside ``N∖{i,j}``, a bijection between
``x``-subsets and ``m``-subsets of ``N∖{i,j}``, so ``S`` is uniform too. Contexts are
independent, so a pair's samples are i.i.d. draws of ``Δv(i,j,S)`` with ``S`` exactly
as in the definition: their mean is unbiased for ``I^(m)(i,j)``, whatever the number of
samples the pair happened to get. The other pairs of the same context share ``X``, so
their errors are correlated; standard errors of pooled statistics are therefore computed
over whole contexts (a delete-a-group jackknife over replicate groups of contexts).

A pair is usable with probability ``ρ(x) = (n−x)(n−x−1) / (n(n−1)) ≥ ¼`` — the reason for
switching direction at the middle order: drawing ``S`` itself at ``m = 0.95(n−2)`` would
leave ``ρ ≈ 0.3%``. To give every pair ``contexts`` samples on average, an order draws
``⌈contexts / ρ(x)⌉`` contexts. At ``m = 0`` and ``m = n−2`` (``x = 0``) every context is
the same, so one context gives the exact value: ``1 + p + q`` passes in all.

**Paper's estimator** (:func:`paper_estimator`, seed 000): for every pair and order,
``contexts`` independent contexts drawn from ``N∖{i,j}``, 4 passes each, nothing shared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from conceptlens.aliases import BoolArray, FloatArray, Game, IntArray, ProgressFn

#: The 13 order ratios ``r`` (``m = ⌊(n−2)·r⌋``) used for the order-strength curve.
PAPER_RATIOS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
#: Number of replicate groups of contexts for jackknife standard errors.
REPLICATES = 16
#: Weight, in degrees of freedom, of the order's pooled variance in a cell's interval.
PRIOR_DF = 1.0
_CELLS_PER_CHUNK = 1 << 22


def ratio_orders(n: int, ratios: Sequence[float] = PAPER_RATIOS) -> list[int]:
    """Orders ``m = ⌊(n−2)·r⌋`` for the given ratios, sorted, duplicates dropped.

    Example:
        >>> ratio_orders(256)
        [0, 12, 25, 50, 76, 101, 127, 152, 177, 203, 228, 241, 254]
        >>> ratio_orders(10)
        [0, 1, 2, 3, 4, 5, 6, 7, 8]
    """
    if n < 2:
        raise ValueError("pairwise interactions need at least 2 players")
    if any(not 0.0 <= r <= 1.0 for r in ratios):
        raise ValueError("ratios must lie in [0, 1]")
    return sorted({math.floor((n - 2) * r + 1e-9) for r in ratios})


# --------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class OrderStrength:
    """A per-order statistic with its standard error: ``value[k]`` at order ``orders[k]``.

    ``df`` is the degrees of freedom of ``se`` (one number or one per order; ``inf`` for a
    delta-method or normal SE): :meth:`interval` uses the Student-t quantile with them.
    """

    orders: IntArray
    value: FloatArray
    se: FloatArray
    df: FloatArray | float = math.inf

    def interval(self, level: float = 0.95) -> tuple[FloatArray, FloatArray]:
        """``(lo, hi)``: ``value ∓ t_df((1+level)/2) · se`` per order.

        What the band means: over repeated runs on the same input and pairs, it holds
        the value that infinitely many contexts would give with probability about
        ``level`` — if the estimate is unbiased. It covers sampling noise only; what is
        left of the bias of ``|Î|`` after ``debias`` (see
        :meth:`SampledMultiOrder.strength`) is not in it. An order with ``se = 0`` (exact)
        gets ``lo = hi = value``.

        Example:
            >>> s = OrderStrength(np.array([0, 4]), np.array([1.0, 2.0]), np.array([0.0, 0.5]))
            >>> [round(float(x), 3) for x in s.interval()[1]]      # normal: 1.960·se
            [1.0, 2.98]
        """
        half = student_t_quantile(0.5 + level / 2, self.df) * np.asarray(self.se)
        half = np.where(np.asarray(self.se) == 0, 0.0, half)
        return self.value - half, self.value + half


@dataclass(frozen=True)
class SampledMultiOrder:
    """Sampled ``I^(m)(i,j)`` for ``orders × pairs`` (SCIENCE.md §4).

    Samples are kept as sufficient statistics per replicate group ``g`` of contexts
    (``REPLICATES`` groups, contexts assigned round-robin), order ``k`` and pair ``p``:
    ``replicate_count``, ``replicate_sum = Σ (Δv − center)`` and
    ``replicate_sumsq = Σ (Δv − center)²`` (centred on a per-cell ``center`` so that
    variances do not cancel catastrophically). Orders marked ``exact`` were computed from
    their single possible context (``m = 0`` or ``n−2`` in :func:`sample_multi_order`).
    ``passes`` counts forward passes (coalitions evaluated), ``order_passes`` per order.
    """

    n_players: int
    orders: IntArray
    pairs: IntArray
    center: FloatArray
    replicate_count: IntArray
    replicate_sum: FloatArray
    replicate_sumsq: FloatArray
    exact: BoolArray
    order_passes: IntArray
    passes: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "passes", int(np.sum(self.order_passes)))

    @property
    def count(self) -> IntArray:
        """Samples per (order, pair), ``[K, P]``."""
        return self.replicate_count.sum(axis=0)

    @property
    def mean(self) -> FloatArray:
        """Mean ``Δv`` per (order, pair): the estimate of ``I^(m)(i,j)``; NaN without samples."""
        return _cell_mean(*self._totals(), self.center)

    @property
    def se(self) -> FloatArray:
        """Standard error of :attr:`mean`: sample SD ``/√count``; 0 if exact, NaN if < 2 samples."""
        se = np.sqrt(_cell_var(*self._totals()) / np.maximum(self.count, 1))
        se[self.exact] = 0.0
        return se

    def interval(self, level: float = 0.95) -> tuple[FloatArray, FloatArray]:
        """``(lo, hi)`` per (order, pair): ``mean ∓ t_df((1+level)/2) · s̃/√count``.

        ``s̃²`` is the cell's sample variance ``s²`` (``d = count − 1`` degrees of freedom)
        moderated by the order's pooled within-cell variance ``s̄²`` (``Σ d·s² / Σ d`` over
        the order's pairs), worth :data:`PRIOR_DF` = 1 more degree of freedom:
        ``s̃² = (d·s² + s̄²) / (d + 1)``, and ``df = d + 1`` — a weak prior, as in moderated
        t statistics. Why: ``Δv`` of a network or a sum of unanimity games often takes few
        distinct values, so a cell of 10 samples can see one value only (``s² = 0``,
        a zero-width band) or miss a rare large one; with the t quantile alone, cells with
        ``s² = 0`` made 23–73 % of the misses on the unanimity games. The Student-t
        quantile (not the normal ``1.96`` or ``2``) accounts for the few degrees of
        freedom: a pair's count is random
        (``Binomial(T, ρ)``), so some cells hold 1–5 samples. Measured at n = 12 with 10
        contexts per order (``bench/bench_coverage.py``): 95–96 % of the exact
        ``I^(m)(i,j)`` inside the 95 % band, against 83–91 % for ``mean ± 2·se``.
        Exact orders: ``lo = hi = mean``; cells without samples, or orders where every
        cell has fewer than 2: NaN. :attr:`se` itself stays the plain ``s/√count``.
        """
        count, total, sumsq = self._totals()
        var = np.nan_to_num(_cell_var(count, total, sumsq))
        d = np.maximum(count - 1, 0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled = (d * var).sum(axis=-1, keepdims=True) / d.sum(axis=-1, keepdims=True)
            se = np.sqrt((d * var + PRIOR_DF * pooled) / (d + PRIOR_DF) / count)
        q = student_t_quantile(0.5 + level / 2, np.where(count > 0, d + PRIOR_DF, np.nan))
        half = np.where(self.exact[:, None], 0.0, q * se)
        return self.mean - half, self.mean + half

    def strength(self, *, debias: bool = False, pairs_sampled: bool = False) -> OrderStrength:
        """``E_{i,j}|I^(m)(i,j)|`` per order over the result's pairs, with a standard error.

        ``|Î|`` (``Î`` the mean ``Δv``, SE ``s``) is biased upward where ``|I|`` is small
        next to ``s``: for ``Î ~ N(I, s²)``, ``E|Î| = F(I, s²)``, the folded-normal mean
        ``F(μ, σ²) = σ√(2/π)·exp(−μ²/2σ²) + μ·erf(μ/(σ√2))``, so the bias is
        ``b(I) = F(I, s²) − |I|``: ``0.80·s`` at ``I = 0`` (SCIENCE.md §4), falling
        exponentially for ``|I| ≫ s``.

        ``debias=True`` subtracts the bias estimated at ``Î`` itself (the parametric
        bootstrap's bias correction, here in closed form):
        ``|Î| − b(Î) = 2|Î| − F(Î, s²)``. Its own bias is
        ``2F(I, s²) − F(I, 2s²) − |I|`` (``E F(Î, s²) = F(I, 2s²)``: a normal convolved with
        a normal): ``+0.47·s`` at ``I = 0``, at least ``−0.094·s`` anywhere (at
        ``|I| ≈ 1.4·s``) and exponentially small for ``|I| ≫ s``. The value may be negative
        for a single pair (down to ``−0.80·s`` at ``Î = 0``); only the mean over pairs is
        meant. The previous correction ``√max(Î² − s², 0)`` had a bias between ``−0.33·s``
        and ``+0.34·s`` that decays only like ``−s²/2|I|``, so it over-corrected wherever
        most pairs have ``|I| ≳ s`` (by 2–20 % in ``bench/bench_coverage.py``); this one
        stays within ``−3 % … +0 %`` there and removes about half of the upward bias
        where ``|I| ≪ s`` (what is left is not in :meth:`OrderStrength.interval`). The
        next term of the series (``3|Î| − 3F(Î, s²) + F(Î, 2s²)``) gains little (``+0.39·s``
        at ``I = 0``) for more variance. A pair with a single sample borrows its order's
        pooled variance (mean over pairs). Pairs without samples are left out.

        Standard error: a delete-a-group jackknife over the replicate groups of contexts,
        conditional on the pairs (the target is the mean over these pairs), with
        ``df = groups − 1`` for :meth:`OrderStrength.interval`. It keeps the correlation
        between pairs that share a context, and does not cover the bias. It is
        conservative where ``|I| ≲ se``: it measures the linearised variance of ``|Î|``,
        up to ``√(π/(π−2)) ≈ 1.66`` times the SD of the folded ``|Î|`` at ``I = 0``
        (measured 1.0–1.7× the spread over repeated runs). ``pairs_sampled=True`` adds a
        delete-a-group jackknife over pairs (groups ``p mod G``), for pairs drawn at
        random from a larger population (``df`` the smaller of the two).
        """
        return self._with_se(debias, pairs_sampled, relative=False)

    def relative_strength(
        self, *, debias: bool = True, pairs_sampled: bool = False
    ) -> OrderStrength:
        """``J^(m)``: :meth:`strength` divided by its mean over the sampled orders.

        Same options and standard error as :meth:`strength` (every order's group left out
        together, so the normaliser's noise is included). ``debias`` defaults to ``True``
        here, unlike :meth:`strength`: the normaliser averages over all orders, so the
        upward bias of ``|Î|`` at the noisy orders pulls *every* ``J`` down, even at the
        exact orders ``0`` and ``n−2``: with the plain ``|Î|`` their ±2 SE band held
        the exact ``J`` in 4–86 % of repeated runs, now 94–96 % (``bench/bench_coverage.py``).
        """
        return self._with_se(debias, pairs_sampled, relative=True)

    def _with_se(self, debias: bool, pairs_sampled: bool, *, relative: bool) -> OrderStrength:
        per_pair = self._per_pair(self._totals(), debias)
        value = _pair_mean(per_pair)
        jack = _pair_mean(self._per_pair(self._leave_one_out(), debias))
        used = self._groups_used()
        if relative:
            value, jack = _relative(value), _relative(jack)
            used = np.broadcast_to(_any_sampled(used, self.exact)[:, None], jack.shape)
        var = _jackknife_se(jack, used) ** 2
        df = used.sum(axis=0).astype(np.float64) - 1
        if not relative:
            var[self.exact] = 0.0  # one context, no noise (the jackknife leaves rounding)
        if pairs_sampled:
            by_pairs = _leave_pair_group_out(per_pair)
            by_pairs = _relative(by_pairs) if relative else by_pairs
            var = var + _jackknife_se(by_pairs, np.ones(by_pairs.shape, dtype=bool)) ** 2
            df = np.minimum(df, len(by_pairs) - 1)
        return OrderStrength(self.orders, value, np.sqrt(var), df)

    def _groups_used(self) -> BoolArray:
        """``[G, K]``: replicate groups that hold samples of each order (all of them for an
        exact order, whose leave-one-out value never changes: standard error 0)."""
        used = self.replicate_count.sum(axis=2) > 0
        used[:, self.exact] = True
        return used

    def _totals(self) -> tuple[IntArray, FloatArray, FloatArray]:
        return (
            self.replicate_count.sum(axis=0),
            self.replicate_sum.sum(axis=0),
            self.replicate_sumsq.sum(axis=0),
        )

    def _leave_one_out(self) -> tuple[IntArray, FloatArray, FloatArray]:
        count, total, sumsq = self._totals()
        out = (
            count - self.replicate_count,
            total - self.replicate_sum,
            sumsq - self.replicate_sumsq,
        )
        for array, full in zip(out, (count, total, sumsq), strict=True):
            array[:, self.exact] = full[self.exact]  # nothing to leave out: no noise
        return out

    def _per_pair(self, stats: tuple[IntArray, FloatArray, FloatArray], debias: bool) -> FloatArray:
        """``|Î|`` per (order, pair), or ``2|Î| − F(Î, s²)``; NaN for pairs without samples.

        A pair with a single sample borrows its order's pooled variance (mean over pairs).
        """
        mean = _cell_mean(*stats, self.center)
        if not debias:
            return np.abs(mean)
        var = _cell_var(*stats)
        pooled = _nan_mean(var, keepdims=True)  # NaN for orders without any variance
        var = np.where(np.isnan(var), pooled, var)
        se2 = np.nan_to_num(var / np.maximum(stats[0], 1))
        se2 = np.where(self.exact[:, None], 0.0, se2)
        return 2.0 * np.abs(mean) - folded_normal_mean(mean, se2)


def folded_normal_mean(mu: FloatArray, var: FloatArray) -> FloatArray:
    """``E|X|`` for ``X ~ N(μ, σ²)``: ``σ√(2/π)·exp(−μ²/2σ²) + μ·erf(μ/(σ√2))``; ``|μ|`` at
    ``σ = 0``; NaN where ``μ`` is NaN.

    Example:
        >>> folded_normal_mean(np.array([0.0, 3.0, -3.0]), np.array([1.0, 0.0, 1e-6])).round(4)
        array([0.7979, 3.    , 3.    ])
    """
    mu = np.asarray(mu, dtype=np.float64)
    sd = np.sqrt(np.asarray(var, dtype=np.float64))
    noisy = sd > 0
    with np.errstate(all="ignore"):
        r = np.where(noisy, mu / np.where(noisy, sd, 1.0), 0.0) / math.sqrt(2.0)
        folded = sd * math.sqrt(2.0 / math.pi) * np.exp(-r * r) + mu * _erf(r)
    return np.where(noisy, folded, np.abs(mu))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def student_t_quantile(p: float, df: FloatArray | float) -> FloatArray:
    """The ``p``-quantile of Student's t with ``df`` degrees of freedom (``p ≥ ½``).

    ``df`` may be an array; ``inf`` gives the normal quantile, NaN or ``df < 1`` NaN.
    Integer ``df ≤ 60``: the exact CDF (the finite trigonometric series of Abramowitz &
    Stegun 26.7.3–4) inverted by bisection to 1e-12 relative; ``df > 60``: the
    Cornish–Fisher expansion in ``1/df`` (A&S 26.7.5, four terms, error < 1e-5 at
    ``p ≤ 0.995``); a fractional ``df ≤ 60`` is rounded down (a wider, conservative
    interval). No SciPy: the engine does not depend on it.

    Example:
        >>> student_t_quantile(0.975, np.array([1.0, 9.0, 15.0, np.inf])).round(4)
        array([12.7062,  2.2622,  2.1314,  1.96  ])
    """
    if not 0.5 <= p < 1.0:
        raise ValueError("quantiles for p in [0.5, 1) only")
    dfs = np.asarray(df, dtype=np.float64)
    out = np.full(dfs.shape, np.nan)
    for d in np.unique(dfs[~np.isnan(dfs)]):
        out[dfs == d] = _t_quantile_one(p, float(d))
    return out if out.ndim else out[()]


def _t_quantile_one(p: float, df: float) -> float:
    if df < 1:
        return math.nan
    z = NormalDist().inv_cdf(p)
    if math.isinf(df):
        return z
    if df > 60:
        return _t_cornish_fisher(z, df)
    df = math.floor(df)  # conservative: a wider interval
    lo, hi = 0.0, 1.0
    while _t_two_sided(hi, int(df)) < 2 * p - 1:
        hi *= 2
    while hi - lo > 1e-12 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _t_two_sided(mid, int(df)) < 2 * p - 1 else (lo, mid)
    return 0.5 * (lo + hi)


def _t_cornish_fisher(z: float, df: float) -> float:
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def _t_two_sided(t: float, df: int) -> float:
    """``P(|T| ≤ t)`` for integer ``df`` (A&S 26.7.3–4)."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:  # odd: (2/π)(θ + sinθ(cosθ + (2/3)cos³θ + …))
        term = total = c if df > 1 else 0.0
        for k in range(3, df - 1, 2):
            term *= c * c * (k - 1) / k
            total += term
        return 2 / math.pi * (theta + s * total)
    term = total = 1.0  # even: sinθ(1 + ½cos²θ + (1·3)/(2·4)cos⁴θ + …)
    for k in range(2, df - 1, 2):
        term *= c * c * (k - 1) / k
        total += term
    return s * total


def _any_sampled(used: BoolArray, exact: BoolArray) -> BoolArray:
    """``[G]``: groups holding samples of any sampled order (all, if every order is exact)."""
    noisy = np.logical_not(exact)
    return np.asarray(used[:, noisy].any(axis=1) if noisy.any() else used.all(axis=1))


def _pair_mean(per_pair: FloatArray) -> FloatArray:
    """Mean over the last (pair) axis, ignoring pairs without samples (NaN for none)."""
    return _nan_mean(per_pair)


def _nan_mean(a: FloatArray, *, keepdims: bool = False) -> FloatArray:
    """``np.nanmean`` over the last axis, the same bits, NaN where every entry is NaN —
    without its "Mean of empty slice" warning. Silencing that warning with
    ``warnings.catch_warnings`` changed the process's warning filters, which is not
    thread-safe: in a worker's threads it leaked (and could unsilence other code's)."""
    valid = ~np.isnan(a)
    count = valid.sum(axis=-1, keepdims=keepdims)
    total = np.where(valid, a, 0.0).sum(axis=-1, keepdims=keepdims)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _leave_pair_group_out(per_pair: FloatArray) -> FloatArray:
    """``[G, K]``: the pair mean with pair group ``g`` (pairs ``p ≡ g mod G``) left out,
    ``G = min(REPLICATES, P)``."""
    groups = min(REPLICATES, per_pair.shape[-1])
    group = np.arange(per_pair.shape[-1]) % groups
    return np.stack([_pair_mean(per_pair[:, group != g]) for g in range(groups)])


def _cell_mean(
    count: IntArray, total: FloatArray, sumsq: FloatArray, center: FloatArray
) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, center + total / count, np.nan)


def _cell_var(count: IntArray, total: FloatArray, sumsq: FloatArray) -> FloatArray:
    """Unbiased sample variance per cell; NaN with fewer than 2 samples."""
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (sumsq - total**2 / count) / (count - 1)
    return np.where(count > 1, np.maximum(var, 0.0), np.nan)


def _relative(strength: FloatArray) -> FloatArray:
    return strength / np.mean(strength, axis=-1, keepdims=True)


def _jackknife_se(leave_one_out: FloatArray, used: BoolArray) -> FloatArray:
    """Delete-a-group jackknife ``√((G−1)/G · Σ_g (θ_(g) − θ̄)²)`` over the used groups.

    ``leave_one_out`` and ``used`` are ``[G, K]``; NaN where fewer than 2 groups are used.
    """
    groups = used.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.where(used, leave_one_out, 0.0).sum(axis=0) / groups
        spread = np.where(used, (leave_one_out - centre) ** 2, 0.0).sum(axis=0)
        se = np.sqrt((groups - 1) / groups * spread)
    return np.where(groups >= 2, se, np.nan)


def sampled_relative_strength(
    strength: FloatArray,
    se: FloatArray,
    orders: Sequence[int] | IntArray | None = None,
    *,
    df: FloatArray | float = math.inf,
) -> OrderStrength:
    """``J`` at the sampled orders from per-input strengths, with delta-method SEs.

    ``strength`` and ``se`` are ``[K]`` (one input) or ``[X, K]`` (inputs ``x ∈ Ω``), as
    :meth:`SampledMultiOrder.strength` gives. ``J_k = S̄_k / M`` with ``S̄_k = E_x S_xk``
    and ``M = E_k S̄_k`` (the mean over the *sampled* orders, SCIENCE.md §4); inputs and
    orders are independent, so ``Var J_k = Σ_l (∂J_k/∂S̄_l)² Var S̄_l`` with
    ``∂J_k/∂S̄_l = δ_kl/M − S̄_k/(K·M²)``. ``orders`` labels the result (default
    ``0 … K−1``). ``df`` (broadcast to ``se``; e.g. :attr:`OrderStrength.df`) gives the
    result's degrees of freedom by Welch–Satterthwaite over the terms of that sum,
    ``(Σ t)² / Σ t²/df`` (default ``inf``: a normal interval).

    Pass strengths made with ``debias=True``: ``M`` averages over every order, so the
    upward bias of the plain ``|Î|`` at noisy orders lowers every ``J``, the exact orders'
    too (``bench/bench_coverage.py``).

    Example:
        >>> out = sampled_relative_strength(np.array([3.0, 1.0]), np.array([0.0, 0.0]))
        >>> out.value.tolist(), out.se.tolist()
        ([1.5, 0.5], [0.0, 0.0])
    """
    s = np.atleast_2d(np.asarray(strength, dtype=np.float64))
    e = np.atleast_2d(np.asarray(se, dtype=np.float64))
    mean = s.mean(axis=0)
    var = np.sum(e**2, axis=0) / s.shape[0] ** 2
    k = len(mean)
    scale = mean.mean()
    grad = np.eye(k) / scale - mean[:, None] / (k * scale**2)
    labels = np.arange(k) if orders is None else np.asarray(orders, dtype=np.int64)
    terms = grad[:, None, :] ** 2 * e[None] ** 2 / s.shape[0] ** 2  # [K, X, L]
    dfs = np.broadcast_to(np.asarray(df, dtype=np.float64), e.shape)[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(terms > 0, terms**2 / dfs, 0.0).sum(axis=(1, 2))
        welch = np.where(spread > 0, terms.sum(axis=(1, 2)) ** 2 / spread, np.inf)
    return OrderStrength(labels, mean / scale, np.sqrt(grad**2 @ var), welch)


def combine_strengths(*parts: OrderStrength) -> OrderStrength:
    """One curve from per-order strengths of several runs, sorted by order.

    Lets each order use its own pairs and budget — e.g. all pairs at the exact orders
    ``0`` and ``n−2`` and at low orders, where context noise is small and pair sampling
    dominates, and fewer pairs with more contexts at the noisy middle orders. Each
    order's strength estimates the same population mean ``E_{i,j}|I^(m)(i,j)|``; runs are
    independent, so :func:`sampled_relative_strength` gives ``J`` and its SE. Each
    order keeps its part's ``df``.

    Example:
        >>> a = OrderStrength(np.array([0, 8]), np.array([2.0, 3.0]), np.zeros(2))
        >>> b = OrderStrength(np.array([4]), np.array([1.0]), np.array([0.1]))
        >>> combine_strengths(a, b).value.tolist()
        [2.0, 1.0, 3.0]
    """
    orders = np.concatenate([p.orders for p in parts])
    if len(np.unique(orders)) != len(orders):
        raise ValueError("an order appears in more than one part")
    order = np.argsort(orders)
    value = np.concatenate([p.value for p in parts])[order]
    se = np.concatenate([p.se for p in parts])[order]
    df = np.concatenate([np.broadcast_to(np.asarray(p.df, np.float64), p.se.shape) for p in parts])
    return OrderStrength(orders[order], value, se, df[order])


# --------------------------------------------------------------------------------------
# Design: which coalitions to evaluate and which samples combine them


class _Design:
    """Coalitions (a context's base, flipped at 0–2 players) and the samples built on them.

    A row is ``base ⊕ {f1} ⊕ {f2}`` (``−1`` = no flip); a sample of pair ``(i,j)`` in a
    context with base ``b`` reads the rows ``b``, ``b⊕i``, ``b⊕j``, ``b⊕i⊕j`` and is
    ``Δv = v(b) − v(b⊕i) − v(b⊕j) + v(b⊕i⊕j)`` — the definition's ``Δv(i,j,S)`` both when
    ``b = S`` (players added) and when ``b = S∪{i,j}`` (players removed).
    """

    def __init__(self, n: int, pairs: IntArray, orders: int) -> None:
        self.n, self.pairs = n, pairs
        self.bases: list[np.ndarray] = []
        self.rows: list[IntArray] = []  # [R, 3] (context, f1, f2)
        self.samples: list[IntArray] = []  # [Q, 7] (order, pair, replicate, 4 rows)
        self.order_passes = np.zeros(orders, dtype=np.int64)
        self.n_contexts = self.n_rows = 0

    def add(
        self,
        base: BoolArray,
        context_of: IntArray,
        pair_of: IntArray,
        order: int,
        replicate: IntArray,
    ) -> None:
        """Contexts ``base [T, n]``; samples ``(context_of[s], pair_of[s])`` sorted by context."""
        if len(pair_of) == 0:
            return
        used, context_of = np.unique(context_of, return_inverse=True)
        base, replicate, t = base[used], replicate[used], len(used)
        i, j = self.pairs[pair_of, 0], self.pairs[pair_of, 1]
        player = np.zeros((t, self.n), dtype=bool)
        player[context_of, i] = player[context_of, j] = True
        p_ctx, p_player = np.nonzero(player)
        first = self.n_rows
        player_row = np.full((t, self.n), -1, dtype=np.int64)
        player_row[p_ctx, p_player] = first + t + np.arange(len(p_ctx))
        pair_row = first + t + len(p_ctx) + np.arange(len(pair_of))
        ctx = self.n_contexts + np.arange(t)
        none = np.full(t, -1)
        self.rows += [
            np.stack([ctx, none, none], axis=1),
            np.stack([ctx[p_ctx], p_player, np.full(len(p_ctx), -1)], axis=1),
            np.stack([ctx[context_of], i, j], axis=1),
        ]
        rows = [first + context_of, player_row[context_of, i], player_row[context_of, j], pair_row]
        meta = [np.full(len(pair_of), order), pair_of, replicate[context_of]]
        self.samples.append(np.stack(meta + rows, axis=1))
        self.bases.append(np.packbits(base, axis=1))
        added = t + len(p_ctx) + len(pair_of)
        self.order_passes[order] += added
        self.n_contexts += t
        self.n_rows += added

    def evaluate(self, game: Game, batch_size: int, progress: ProgressFn | None) -> FloatArray:
        """``v`` of every row, ``batch_size`` coalitions per game call."""
        bases = np.concatenate(self.bases) if self.bases else np.zeros((0, 1), np.uint8)
        rows = np.concatenate(self.rows) if self.rows else np.zeros((0, 3), np.int64)
        values = np.empty(len(rows))
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            coalitions = np.unpackbits(bases[batch[:, 0]], axis=1, count=self.n).astype(bool)
            for flip in (batch[:, 1], batch[:, 2]):
                at = np.flatnonzero(flip >= 0)
                coalitions[at, flip[at]] ^= True
            values[start : start + len(batch)] = game(coalitions)
            if progress is not None:
                progress(start + len(batch), len(rows))
        return values

    def result(self, values: FloatArray, orders: IntArray, exact: BoolArray) -> SampledMultiOrder:
        """Combine evaluated rows into per-(replicate, order, pair) sufficient statistics."""
        table = np.concatenate(self.samples) if self.samples else np.zeros((0, 7), np.int64)
        delta = (
            values[table[:, 3]] - values[table[:, 4]] - values[table[:, 5]] + values[table[:, 6]]
        )
        shape = (REPLICATES, len(orders), len(self.pairs))
        cell = table[:, 0] * shape[2] + table[:, 1]
        flat = table[:, 2] * shape[1] * shape[2] + cell
        size = shape[1] * shape[2]
        per_cell = np.bincount(cell, minlength=size)
        center = np.bincount(cell, weights=delta, minlength=size) / np.maximum(per_cell, 1)
        d = delta - center[cell]
        total = REPLICATES * size
        return SampledMultiOrder(
            n_players=self.n,
            orders=orders,
            pairs=self.pairs,
            center=center.reshape(shape[1:]),
            replicate_count=np.bincount(flat, minlength=total).reshape(shape),
            replicate_sum=_weighted_count(flat, d, total).reshape(shape),
            replicate_sumsq=_weighted_count(flat, d * d, total).reshape(shape),
            exact=exact,
            order_passes=self.order_passes,
        )


def _weighted_count(index: IntArray, weights: FloatArray, size: int) -> FloatArray:
    return np.asarray(np.bincount(index, weights=weights, minlength=size), dtype=np.float64)


# --------------------------------------------------------------------------------------
# The shared-pass estimator


def sample_multi_order(
    game: Game,
    *,
    pairs: IntArray,
    orders: Sequence[int],
    contexts: int | Sequence[int],
    rng: np.random.Generator,
    player_sets: Sequence[Sequence[int]] | None = None,
    batch_size: int = 4096,
    progress: ProgressFn | None = None,
) -> SampledMultiOrder:
    """Shared-pass estimate of ``I^(m)(i,j)`` for the given pairs and orders (SCIENCE.md §4).

    See the module docstring for the algorithm and the proof that every sample is an
    unbiased draw of ``Δv(i,j,S)``. The caller gives the pairs (e.g.
    ``local_pairs(16, 16, 2)``, a random subset of them, or ``all_pairs(n)``); the grouping
    is the algorithm's: by default all of them form one group, so a context uses *every*
    requested pair disjoint from its ``X`` and shares ``v(S)`` and ``v(S+i)`` among them.
    That is the most sharing possible — a context's cost per sample, ``1 + (1 + p)/q``,
    falls as more of its pairs share players, and splitting can only raise it.
    ``player_sets`` (e.g. :func:`grid_blocks`) splits the work into blocks instead, each
    with its own contexts and only the requested pairs inside it (a pair in several blocks
    collects samples from each; every pair must lie in one).

    Args:
        game: the value function, ``game(coalitions [batch, n]) -> [batch]``.
        pairs: ``[P, 2]`` distinct pairs; the result's ``pairs`` lists them as ``i < j``.
        orders: orders ``m`` in ``0 … n−2``, e.g. :func:`ratio_orders`.
        contexts: samples per pair and order wanted on average — one number or one per
            order; an order draws ``T = ⌈contexts/ρ⌉`` contexts per group, so a pair's
            count is ``Binomial(T, ρ)`` (it may be 0 at tiny budgets: that pair is then
            left out of the strength). Orders ``0`` and ``n−2`` are exact (1 context).
        rng: the only source of randomness.
        player_sets: optional blocks of players; see above.
        batch_size: coalitions per game call.
        progress: called as ``progress(done, total)`` in forward passes after each batch.

    Cost: exactly ``Σ_contexts (1 + p + q)`` forward passes (``passes``, per order in
    ``order_passes``); per sampled order about ``contexts·P + T·(1 + p̄)``, ``p̄`` the mean
    number of players with a usable pair in a context (at most ``n − x``). Measured on a
    16×16 grid: 1.1–1.2 passes per sample for all 2,610 local pairs, about 2.3 for 200
    random ones; the paper's estimator spends 4. Memory: the coalitions' bit-packed bases
    and ~80 bytes per sample until evaluation; results ``3 · REPLICATES · K · P`` numbers.

    Example:
        >>> from conceptlens.games import UnanimityGame
        >>> from conceptlens.pairwise import all_pairs
        >>> game = UnanimityGame(6, [[0, 1], [0, 1, 2]], [1.0, 2.0])
        >>> out = sample_multi_order(game, pairs=all_pairs(6), orders=[0, 4], contexts=10,
        ...                          rng=np.random.default_rng(0))
        >>> out.mean[:, 0].tolist(), out.passes     # exact: 1 + 6 + 15 passes per order
        ([1.0, 3.0], 44)
    """
    use, ks, wanted = _check_inputs(game, pairs, orders, contexts)
    n = game.n_players
    design = _Design(n, use, len(ks))
    for block_pairs in _groups(n, use, player_sets):
        for k, m in enumerate(ks):
            _draw_shared(design, rng, block_pairs, k, int(m), wanted[k])
    values = design.evaluate(game, batch_size, progress)
    exact = (ks == 0) | (ks == n - 2)
    return design.result(values, ks, exact)


def _draw_shared(
    design: _Design, rng: np.random.Generator, block: IntArray, k: int, m: int, wanted: int
) -> None:
    """Add the contexts of one order and one group of pairs to the design."""
    n = design.n
    x = min(m, n - 2 - m)
    total = 1 if x == 0 else math.ceil(wanted / _usable_probability(n, x))
    pair_players = design.pairs[block]
    step = max(1, _CELLS_PER_CHUNK // max(len(block), n))
    for start in range(0, total, step):
        count = min(step, total - start)
        drawn = _random_subsets(rng, count, n, x)
        free = ~drawn
        usable = free[:, pair_players[:, 0]] & free[:, pair_players[:, 1]]
        context_of, which = np.nonzero(usable)
        base = drawn if m <= n - 2 - m else free
        replicate = (start + np.arange(count)) % REPLICATES
        design.add(base, context_of, block[which], k, replicate)


def _usable_probability(n: int, x: int) -> float:
    """``ρ(x) = P(i, j ∉ X)`` for ``X`` uniform among the ``x``-subsets of ``n`` players."""
    return (n - x) * (n - x - 1) / (n * (n - 1))


def _random_subsets(rng: np.random.Generator, rows: int, n: int, size: int) -> BoolArray:
    """``rows`` independent uniform ``size``-subsets of ``n`` players, as bool ``[rows, n]``.

    The ``size`` smallest of ``n`` i.i.d. uniform keys: every subset equally likely.
    """
    out = np.zeros((rows, n), dtype=bool)
    if size > 0:
        keys = rng.random((rows, n))
        chosen = np.argpartition(keys, size - 1, axis=1)[:, :size]
        np.put_along_axis(out, chosen, True, axis=1)
    return out


def _groups(n: int, pairs: IntArray, player_sets: Sequence[Sequence[int]] | None) -> list[IntArray]:
    """Pair indices of each group: all pairs, or the pairs inside each block."""
    everything = np.arange(len(pairs))
    if player_sets is None:
        return [everything]
    groups: list[IntArray] = []
    covered = np.zeros(len(pairs), dtype=bool)
    for players in player_sets:
        member = np.zeros(n, dtype=bool)
        member[np.asarray(players, dtype=np.int64)] = True
        inside = member[pairs[:, 0]] & member[pairs[:, 1]]
        covered |= inside
        if inside.any():
            groups.append(everything[inside])
    if not covered.all():
        raise ValueError(f"{int((~covered).sum())} pairs lie in none of the player sets")
    return groups


def grid_blocks(rows: int, cols: int, size: int, radius: int = 2) -> list[list[int]]:
    """Square blocks of ``size×size`` patches, overlapping so that every pair within
    ``radius`` (Chebyshev) lies in at least one block (stride ``size − radius``).

    Example:
        >>> grid_blocks(1, 4, 3, radius=1)
        [[0, 1, 2], [2, 3]]
    """
    if size <= radius:
        raise ValueError("blocks must be larger than the pair radius")
    stride = size - radius
    starts_r = range(0, max(rows - radius, 1), stride)
    starts_c = range(0, max(cols - radius, 1), stride)
    return [
        [
            r * cols + c
            for r in range(r0, min(r0 + size, rows))
            for c in range(c0, min(c0 + size, cols))
        ]
        for r0 in starts_r
        for c0 in starts_c
    ]


# --------------------------------------------------------------------------------------
# The paper's estimator (baseline)


def paper_estimator(
    game: Game,
    *,
    pairs: IntArray,
    orders: Sequence[int],
    contexts: int,
    rng: np.random.Generator,
    batch_size: int = 4096,
    progress: ProgressFn | None = None,
) -> SampledMultiOrder:
    """The paper's estimator (seed 000): per pair and order, ``contexts`` independent
    contexts ``S`` uniform among the ``m``-subsets of ``N∖{i,j}``, 4 forward passes each
    (``v(S)``, ``v(S+i)``, ``v(S+j)``, ``v(S+i+j)``), nothing shared — not even at orders
    ``0`` and ``n−2``, where every context is the same.

    Cost: exactly ``4 · contexts · P · K`` passes (P pairs, K orders); the paper's setup
    ``200 × 13 × 100 × 4 = 1.04 M`` per image.

    Example:
        >>> from conceptlens.games import UnanimityGame
        >>> game = UnanimityGame(5, [[0, 1, 2]], [2.0])
        >>> out = paper_estimator(game, pairs=np.array([[0, 1]]), orders=[0, 3], contexts=5,
        ...                       rng=np.random.default_rng(0))
        >>> out.mean.ravel().tolist(), out.passes
        ([0.0, 2.0], 40)
    """
    use, ks, _ = _check_inputs(game, pairs, orders, contexts)
    n = game.n_players
    design = _Design(n, use, len(ks))
    step = max(1, _CELLS_PER_CHUNK // (contexts * n))
    for k, m in enumerate(ks):
        for start in range(0, len(use), step):
            chunk = np.arange(start, min(start + step, len(use)))
            _draw_paper(design, rng, chunk, k, int(m), contexts)
    values = design.evaluate(game, batch_size, progress)
    return design.result(values, ks, np.zeros(len(ks), dtype=bool))


def _draw_paper(
    design: _Design, rng: np.random.Generator, chunk: IntArray, k: int, m: int, contexts: int
) -> None:
    """``contexts`` contexts per pair of ``chunk``, each used by its own pair only."""
    n = design.n
    rows = len(chunk) * contexts
    keys = rng.random((rows, n))
    owner = np.repeat(chunk, contexts)
    at = np.arange(rows)
    keys[at, design.pairs[owner, 0]] = keys[at, design.pairs[owner, 1]] = 2.0  # never chosen
    base = np.zeros((rows, n), dtype=bool)
    if m > 0:
        np.put_along_axis(base, np.argpartition(keys, m - 1, axis=1)[:, :m], True, axis=1)
    replicate = np.tile(np.arange(contexts) % REPLICATES, len(chunk))
    design.add(base, at, owner, k, replicate)


# --------------------------------------------------------------------------------------
# Input checks


def _check_inputs(
    game: Game, pairs: IntArray, orders: Sequence[int], contexts: int | Sequence[int]
) -> tuple[IntArray, IntArray, list[int]]:
    n = game.n_players
    use = np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1)
    if len(use) == 0:
        raise ValueError("no pairs given")
    if use.min() < 0 or use.max() >= n or np.any(use[:, 0] == use[:, 1]):
        raise ValueError(f"pairs must be two distinct players in 0…{n - 1}")
    if len(np.unique(use, axis=0)) != len(use):
        raise ValueError("pairs must not repeat")
    ks = np.asarray(orders, dtype=np.int64)
    if ks.ndim != 1 or len(ks) == 0 or ks.min() < 0 or ks.max() > n - 2:
        raise ValueError(f"orders must lie in 0…{n - 2}")
    if len(np.unique(ks)) != len(ks):
        raise ValueError("orders must not repeat")
    if isinstance(contexts, int | np.integer):
        wanted = [int(contexts)] * len(ks)
    else:
        wanted = [int(c) for c in contexts]
    if len(wanted) != len(ks) or min(wanted) < 1:
        raise ValueError("contexts must be ≥ 1, one number or one per order")
    return use, ks, wanted
