"""Sampled multi-order interactions against the exact closed form (SCIENCE.md §4)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from conceptlens.aliases import Coalitions, FloatArray, IntArray
from conceptlens.games import UnanimityGame, random_bottleneck_game
from conceptlens.pairwise import all_pairs, local_pairs
from conceptlens.sampling import (
    PAPER_RATIOS,
    REPLICATES,
    OrderStrength,
    SampledMultiOrder,
    combine_strengths,
    folded_normal_mean,
    grid_blocks,
    paper_estimator,
    ratio_orders,
    sample_multi_order,
    sampled_relative_strength,
    student_t_quantile,
)

N = 10
ORDERS = list(range(N - 1))
Estimator = Callable[[np.random.Generator], SampledMultiOrder]


def smooth_game(seed: int) -> UnanimityGame:
    """40 random terms of 1–4 players on 10: no rare contexts that 400 draws could all miss."""
    rng = np.random.default_rng(seed)
    sets = [rng.choice(N, size=int(s), replace=False).tolist() for s in rng.integers(1, 5, 40)]
    return UnanimityGame(N, sets, rng.normal(size=40), constant=1.0)


class CountingGame:
    """Wraps a game; records the size of every batch it is called with."""

    def __init__(self, game: UnanimityGame) -> None:
        self.game, self.n_players, self.batches = game, game.n_players, list[int]()

    def __call__(self, coalitions: Coalitions, /) -> FloatArray:
        self.batches.append(len(coalitions))
        return self.game(coalitions)


def z_scores(result: SampledMultiOrder, exact: FloatArray) -> tuple[FloatArray, FloatArray]:
    """z of the cells with noise, and the error of the noiseless ones (SE ≈ 0)."""
    noisy = result.se > 1e-9
    return (result.mean - exact)[noisy] / result.se[noisy], (result.mean - exact)[~noisy]


def estimators(game: UnanimityGame, pairs: IntArray) -> dict[str, Estimator]:
    blocks = grid_blocks(2, 5, 3, radius=1)
    return {
        "shared": lambda rng: sample_multi_order(
            game, pairs=pairs, orders=ORDERS, contexts=400, rng=rng
        ),
        "paper": lambda rng: paper_estimator(
            game, pairs=pairs, orders=ORDERS, contexts=400, rng=rng
        ),
        "blocks": lambda rng: sample_multi_order(
            game,
            pairs=local_pairs(2, 5, 1),
            orders=ORDERS,
            contexts=400,
            rng=rng,
            player_sets=blocks,
        ),
    }


@pytest.mark.parametrize("name", ["shared", "paper", "blocks"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_interactions_agree_with_the_exact_ones(name: str, seed: int) -> None:
    game = smooth_game(seed)
    pairs = all_pairs(N)
    result = estimators(game, pairs)[name](np.random.default_rng(seed))
    exact = game.exact_multi_order(result.pairs)[result.orders]
    z, noiseless = z_scores(result, exact)
    assert len(z) > 100
    assert np.abs(z).max() < 4.5
    assert 0.65 < np.abs(z).mean() < 0.95  # E|Z| = 0.80 for Z ~ N(0, 1)
    np.testing.assert_allclose(noiseless, 0.0, atol=1e-9)


def test_orders_zero_and_n_minus_two_are_exact() -> None:
    game = smooth_game(3)
    result = sample_multi_order(
        game, pairs=all_pairs(N), orders=[0, N - 2], contexts=50, rng=np.random.default_rng(0)
    )
    assert result.exact.all()
    assert (result.count == 1).all() and (result.se == 0).all()
    np.testing.assert_allclose(
        result.mean, game.exact_multi_order(all_pairs(N))[[0, N - 2]], atol=1e-12
    )


def expected_shared_passes(n: int, orders: list[int], contexts: int) -> int:
    """All pairs requested: every free player is in a usable pair, so a context costs
    ``1 + (n − x) + C(n − x, 2)``; an order draws ``⌈contexts/ρ(x)⌉`` contexts (1 if x = 0)."""
    total = 0
    for m in orders:
        x = min(m, n - 2 - m)
        rho = (n - x) * (n - x - 1) / (n * (n - 1))
        draws = 1 if x == 0 else math.ceil(contexts / rho)
        total += draws * (1 + (n - x) + math.comb(n - x, 2))
    return total


def test_pass_count_is_exactly_one_plus_p_plus_q_per_context() -> None:
    game = CountingGame(smooth_game(0))
    result = sample_multi_order(
        game,
        pairs=all_pairs(N),
        orders=ORDERS,
        contexts=7,
        rng=np.random.default_rng(0),
        batch_size=100,
    )
    assert result.passes == expected_shared_passes(N, ORDERS, 7)
    assert sum(game.batches) == result.passes == result.order_passes.sum()
    assert max(game.batches) <= 100


def test_pass_count_of_a_sparse_pair_set() -> None:
    """Order 0: one context; the players of the pairs once each; the pairs once each."""
    pairs = np.array([[0, 1], [1, 2], [5, 9]])
    result = sample_multi_order(
        smooth_game(0), pairs=pairs, orders=[0], contexts=5, rng=np.random.default_rng(0)
    )
    assert result.passes == 1 + 5 + 3


def test_paper_estimator_costs_four_passes_per_context() -> None:
    game = CountingGame(smooth_game(0))
    pairs = all_pairs(N)[:7]
    result = paper_estimator(
        game, pairs=pairs, orders=[0, 3, 8], contexts=11, rng=np.random.default_rng(0)
    )
    assert result.passes == sum(game.batches) == 4 * 11 * 7 * 3
    assert (result.count == 11).all()


def test_progress_reports_every_pass() -> None:
    calls: list[tuple[int, int]] = []
    result = sample_multi_order(
        smooth_game(0),
        pairs=all_pairs(N),
        orders=[2, 6],
        contexts=20,
        rng=np.random.default_rng(0),
        batch_size=64,
        progress=lambda done, total: calls.append((done, total)),
    )
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (result.passes, result.passes)
    assert {t for _, t in calls} == {result.passes}


def test_runs_are_deterministic_given_the_seed() -> None:
    def run(seed: int) -> FloatArray:
        out = sample_multi_order(
            smooth_game(0),
            pairs=all_pairs(N),
            orders=[3],
            contexts=5,
            rng=np.random.default_rng(seed),
        )
        return out.mean

    np.testing.assert_array_equal(run(4), run(4))
    assert not np.array_equal(run(4), run(5))


def test_works_at_256_players_in_both_directions() -> None:
    game = random_bottleneck_game(256, np.random.default_rng(0))
    population = local_pairs(16, 16, 2)
    pairs = population[np.random.default_rng(1).choice(len(population), size=120, replace=False)]
    orders = ratio_orders(256)
    result = sample_multi_order(
        game, pairs=pairs, orders=orders, contexts=3, rng=np.random.default_rng(2)
    )
    exact = game.exact_multi_order(pairs)[orders]
    assert result.mean.shape == (13, 120) and result.exact.tolist() == [True] + [False] * 11 + [
        True
    ]
    np.testing.assert_allclose(result.mean[result.exact], exact[result.exact], atol=1e-9)
    assert np.isfinite(result.mean[~result.exact]).mean() > 0.9  # a pair can draw 0 samples
    assert result.passes == result.order_passes.sum() < 4 * 3 * 120 * 13
    j = result.relative_strength(debias=True)
    assert np.all(np.isfinite(j.value)) and np.all(np.isfinite(j.se))


def noise_only_result(seed: int, contexts: int) -> SampledMultiOrder:
    """``v = [S ⊇ {0,1,2}] − [S ⊇ {0,1,3}]``: ``I^(m)(0,1) = 0`` at every order, ``Δv`` noisy."""
    game = UnanimityGame(8, [[0, 1, 2], [0, 1, 3], [4, 5]], [1.0, -1.0, 0.5])
    return sample_multi_order(
        game,
        pairs=np.array([[0, 1], [4, 5]]),
        orders=[0, 2, 3, 6],
        contexts=contexts,
        rng=np.random.default_rng(seed),
    )


def normal_mean(f: Callable[[FloatArray], FloatArray], mu: float, sd: float) -> float:
    """``E f(X)`` for ``X ~ N(μ, sd²)``: the trapezoid rule on ±12 SD, 240,001 points (the
    kink of ``|x|`` rules out Gauss–Hermite; this is exact to ~1e-9 here)."""
    z = np.linspace(-12.0, 12.0, 240_001)
    density = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return float(np.trapezoid(f(mu + sd * z) * density, z))


@pytest.mark.parametrize("mu", [0.0, 0.3, 1.0, 1.4, 2.5, 6.0])
def test_folded_normal_mean_is_the_mean_of_abs(mu: float) -> None:
    expected = normal_mean(np.abs, mu, 1.3)
    out = folded_normal_mean(np.array([mu, -mu]), np.array([1.3**2, 1.3**2]))
    np.testing.assert_allclose(out, [expected, expected], rtol=1e-8)
    assert folded_normal_mean(np.array([-2.0]), np.array([0.0]))[0] == 2.0
    assert np.isnan(folded_normal_mean(np.array([np.nan]), np.array([1.0]))[0])


def test_debias_bias_for_a_normal_mean_is_bounded_as_documented() -> None:
    """Bias of ``2|Î| − F(Î, s²)`` for ``Î ~ N(I, s²)``: ``2F(I, s²) − F(I, 2s²) − |I|``,
    +0.47·s at I = 0, never below −0.095·s, vanishing for |I| ≫ s; plain |Î|: +0.80·s."""
    s = 0.7

    def bias(mu: float) -> float:
        corrected = normal_mean(
            lambda x: 2 * np.abs(x) - folded_normal_mean(x, np.full_like(x, s * s)), mu, s
        )
        return corrected - abs(mu)

    grid = np.linspace(0.0, 8.0, 81) * s
    biases = np.array([bias(mu) for mu in grid]) / s
    closed = (
        2 * folded_normal_mean(grid, np.full_like(grid, s * s))
        - folded_normal_mean(grid, np.full_like(grid, 2 * s * s))
        - grid
    ) / s
    np.testing.assert_allclose(biases, closed, atol=1e-8)
    assert biases[0] == pytest.approx(2 * math.sqrt(2 / math.pi) - math.sqrt(4 / math.pi), abs=1e-8)
    assert biases.min() > -0.095 and abs(biases[-1]) < 1e-7


def test_debias_removes_about_half_the_upward_bias_where_the_interaction_is_zero() -> None:
    """The noisy pair has I = 0: plain bias E|Î| ≈ 0.80·s, corrected ≈ 0.47·s (normal Î)."""
    plain, debiased = [], []
    for seed in range(60):
        result = noise_only_result(seed, contexts=10)
        plain.append(result.strength().value)
        debiased.append(result.strength(debias=True).value)
    exact = np.array([0.25, 0.25, 0.25, 0.25])  # only the pair (4, 5), strength 0.5, counts
    bias_plain = np.mean(plain, axis=0) - exact
    bias_debiased = np.mean(debiased, axis=0) - exact
    assert np.all(bias_plain[1:3] > 0.03)
    ratio = bias_debiased[1:3] / bias_plain[1:3]
    assert np.all((ratio > 0.35) & (ratio < 0.75)), ratio  # 0.47/0.80 = 0.59 for normal Î
    np.testing.assert_allclose(bias_plain[[0, 3]], 0.0, atol=1e-12)  # exact orders
    np.testing.assert_allclose(bias_debiased[[0, 3]], 0.0, atol=1e-12)


def test_debias_does_not_over_correct_large_interactions() -> None:
    """Every |I| ≫ s (the smooth game, 400 samples): the old √(Î² − s²) lost s²/2|I| per
    pair; the correction now is exponentially small there, like the plain |Î|'s bias."""
    game = smooth_game(2)
    exact = np.abs(game.exact_multi_order(all_pairs(N))[[3, 5]]).mean(axis=1)
    values = []
    for seed in range(5):
        result = sample_multi_order(
            game, pairs=all_pairs(N), orders=[3, 5], contexts=400, rng=np.random.default_rng(seed)
        )
        values.append(result.strength(debias=True).value - result.strength().value)
    shift = np.mean(values, axis=0) / exact
    assert np.all(np.abs(shift) < 0.01), shift


def binomial_band(runs: int, low: float, high: float, alpha: float = 1e-6) -> tuple[int, int]:
    """Hit counts ``[a, b]`` that ``Binomial(runs, p)`` stays inside with probability at least
    ``1 − alpha`` for every ``p`` in ``[low, high]`` (exact binomial tails at the ends)."""

    def pmf(k: int, p: float) -> float:
        return math.comb(runs, k) * p**k * (1 - p) ** (runs - k)

    a, tail = 0, 0.0
    while tail + pmf(a, low) < alpha / 2:
        tail += pmf(a, low)
        a += 1
    b, tail = runs, 0.0
    while tail + pmf(b, high) < alpha / 2:
        tail += pmf(b, high)
        b -= 1
    return a, b


def test_intervals_cover_at_their_nominal_level() -> None:
    """1,000 independent runs at n = 12 (``random_bottleneck_game``, all 66 pairs, 10 contexts
    per order). Per run one noisy cell, chosen by a separate seed, and the exact order 0 of
    ``J``: independent Bernoulli trials. We claim coverage within ±2.5 points of 95 %;
    the band is the binomial range for any true coverage in [92.5 %, 97.5 %], exceeded
    with probability < 1e-6 (measured over 1,500 runs: 95.9 % per pair, 93.3 % for J at
    m = 0; before issue 10, ±2 SE held 83 % of the pairs and 26 % of J(0))."""
    n, runs = 12, 1000
    game = random_bottleneck_game(n, np.random.default_rng(0), cols=4)
    pairs, orders = all_pairs(n), list(range(n - 1))
    exact = game.exact_multi_order(pairs)[orders]
    strength = np.abs(exact).mean(axis=1)
    j_exact = strength / strength.mean()
    pair_hits = j_hits = 0
    for seed in range(runs):
        result = sample_multi_order(
            game, pairs=pairs, orders=orders, contexts=10, rng=np.random.default_rng(seed)
        )
        cells = np.argwhere(~result.exact[:, None] & (result.count > 0))
        k, p = cells[np.random.default_rng([seed, 1]).integers(len(cells))]
        lo, hi = result.interval(0.95)
        pair_hits += int(lo[k, p] <= exact[k, p] <= hi[k, p])
        j_lo, j_hi = result.relative_strength().interval(0.95)
        j_hits += int(j_lo[0] <= j_exact[0] <= j_hi[0])
    low, high = binomial_band(runs, 0.925, 0.975)
    assert low <= pair_hits <= high, (pair_hits, low, high)
    assert low <= j_hits <= high, (j_hits, low, high)


def test_student_t_quantile_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    df = np.array([1, 2, 3, 4, 5, 9, 15, 30, 60, 61, 200, 5000], dtype=np.float64)
    for p in (0.6, 0.9, 0.975, 0.995):
        np.testing.assert_allclose(student_t_quantile(p, df), stats.t.ppf(p, df), rtol=1e-7)
    assert student_t_quantile(0.975, np.inf) == pytest.approx(1.959964, abs=1e-6)
    assert student_t_quantile(0.975, 2.7) == student_t_quantile(0.975, 2.0)  # rounded down
    assert np.isnan(student_t_quantile(0.975, np.array([np.nan, 0.5]))).all()
    with pytest.raises(ValueError):
        student_t_quantile(0.2, 3.0)


def test_interval_of_exact_orders_is_a_point_and_widths_follow_t() -> None:
    result = noise_only_result(0, contexts=20)
    lo, hi = result.interval(0.95)
    np.testing.assert_array_equal(lo[result.exact], result.mean[result.exact])
    np.testing.assert_array_equal(hi[result.exact], result.mean[result.exact])
    noisy = ~result.exact
    assert np.all(hi[noisy] > lo[noisy])
    assert np.all(result.interval(0.99)[1][noisy] > hi[noisy])
    j = result.relative_strength()
    assert np.all(np.asarray(j.df)[~result.exact] == REPLICATES - 1)
    j_lo, j_hi = j.interval(0.95)
    half = student_t_quantile(0.975, REPLICATES - 1) * j.se
    np.testing.assert_allclose(j_hi - j.value, half, rtol=1e-12)
    np.testing.assert_allclose(j.value - j_lo, half, rtol=1e-12)


def test_strength_standard_error_is_of_the_size_of_the_spread() -> None:
    game = smooth_game(5)
    values, ses = [], []
    for seed in range(30):
        result = sample_multi_order(
            game, pairs=all_pairs(N), orders=[2, 4, 6], contexts=30, rng=np.random.default_rng(seed)
        )
        strength = result.strength()
        values.append(strength.value)
        ses.append(strength.se)
    ratio = np.mean(ses, axis=0) / np.std(values, axis=0, ddof=1)
    assert np.all((ratio > 0.7) & (ratio < 2.0)), ratio


def test_relative_strength_averages_to_one_and_adds_pair_sampling() -> None:
    result = noise_only_result(0, contexts=20)
    j = result.relative_strength()
    assert j.value.mean() == pytest.approx(1.0)
    assert np.all(result.relative_strength(pairs_sampled=True).se >= j.se - 1e-12)
    assert np.all(result.strength(pairs_sampled=True).se >= result.strength().se - 1e-12)


def test_delta_method_matches_simulation() -> None:
    rng = np.random.default_rng(0)
    strength = np.array([[2.0, 0.5, 1.0], [1.8, 0.7, 1.2]])
    se = np.array([[0.1, 0.05, 0.08], [0.12, 0.04, 0.1]])
    out = sampled_relative_strength(strength, se)
    draws = strength + se * rng.standard_normal((20000, *strength.shape))
    mean = draws.mean(axis=1)
    simulated = mean / mean.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out.value, (strength.mean(0) / strength.mean()), rtol=1e-12)
    np.testing.assert_allclose(out.se, simulated.std(axis=0), rtol=0.05)


def test_strengths_of_separate_runs_combine_into_one_curve() -> None:
    """Exact orders on all pairs, a middle order on a few: J of the combined strengths."""
    game = smooth_game(1)
    rng = np.random.default_rng(0)
    ends = sample_multi_order(game, pairs=all_pairs(N), orders=[0, N - 2], contexts=1, rng=rng)
    middle = sample_multi_order(game, pairs=all_pairs(N)[::3], orders=[4], contexts=50, rng=rng)
    combined = combine_strengths(ends.strength(), middle.strength(debias=True))
    assert combined.orders.tolist() == [0, 4, N - 2]
    assert combined.se[[0, 2]].tolist() == [0.0, 0.0] and combined.se[1] > 0
    j = sampled_relative_strength(combined.value, combined.se, combined.orders)
    assert j.orders.tolist() == [0, 4, N - 2] and j.value.mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="more than one"):
        combine_strengths(ends.strength(), ends.strength())
    a = OrderStrength(np.array([0, 8]), np.array([2.0, 3.0]), np.zeros(2))
    b = OrderStrength(np.array([4]), np.array([1.0]), np.array([0.1]), df=4.0)
    assert np.asarray(combine_strengths(a, b).df).tolist() == [math.inf, 4.0, math.inf]


def test_ratio_orders() -> None:
    assert len(PAPER_RATIOS) == 13
    assert ratio_orders(256) == [0, 12, 25, 50, 76, 101, 127, 152, 177, 203, 228, 241, 254]
    assert ratio_orders(10, [0.0, 0.05, 1.0]) == [0, 8]
    with pytest.raises(ValueError):
        ratio_orders(10, [1.5])


@pytest.mark.parametrize(
    ("rows", "cols", "size", "radius"), [(16, 16, 5, 2), (7, 9, 4, 2), (3, 10, 3, 1)]
)
def test_grid_blocks_cover_every_local_pair(rows: int, cols: int, size: int, radius: int) -> None:
    member = np.zeros((0, rows * cols), dtype=bool)
    for block in grid_blocks(rows, cols, size, radius):
        row = np.zeros(rows * cols, dtype=bool)
        row[block] = True
        member = np.vstack([member, row])
    pairs = local_pairs(rows, cols, radius)
    assert (member[:, pairs[:, 0]] & member[:, pairs[:, 1]]).any(axis=0).all()


def test_invalid_input_is_refused() -> None:
    game = smooth_game(0)
    rng = np.random.default_rng(0)
    cases: list[tuple[IntArray, list[int], int | list[int]]] = [
        (np.array([[1, 1]]), [0], 5),
        (np.array([[0, 1], [1, 0]]), [0], 5),
        (np.array([[0, 10]]), [0], 5),
        (np.array([[0, 1]]), [9], 5),
        (np.array([[0, 1]]), [1], 0),
        (np.array([[0, 1]]), [1, 2], [5]),
        (np.array([[0, 1]]), [2, 2], 5),
    ]
    for pairs, orders, contexts in cases:
        with pytest.raises(ValueError):
            sample_multi_order(game, pairs=pairs, orders=orders, contexts=contexts, rng=rng)
    with pytest.raises(ValueError, match="none of the player sets"):
        sample_multi_order(
            game, pairs=np.array([[0, 9]]), orders=[1], contexts=5, rng=rng, player_sets=[[0, 1]]
        )


def test_delta_method_degrees_of_freedom_by_welch_satterthwaite() -> None:
    strength = np.array([[2.0, 0.5, 1.0], [1.8, 0.7, 1.2]])
    se = np.array([[0.1, 0.05, 0.08], [0.12, 0.04, 0.1]])
    assert np.all(np.isinf(np.asarray(sampled_relative_strength(strength, se).df)))
    out = sampled_relative_strength(strength, se, df=15.0)
    df = np.asarray(out.df)
    # between one term's df and the sum of all six terms' df
    assert np.all((df >= 15.0) & (df <= 6 * 15.0))
    # one noisy term only: its own df
    lone = sampled_relative_strength(np.array([2.0, 1.0]), np.array([0.0, 0.1]), df=7.0)
    np.testing.assert_allclose(np.asarray(lone.df), [7.0, 7.0])
    exact = sampled_relative_strength(np.array([2.0, 1.0]), np.zeros(2), df=7.0)
    assert np.all(np.isinf(np.asarray(exact.df)))


def test_pair_means_leave_the_warning_filters_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """An order without samples (all NaN) gives NaN, as ``np.nanmean`` does, bit for bit
    elsewhere — without a warning and without ``warnings.catch_warnings``, which changes the
    process-wide filters and let "Mean of empty slice" leak from a worker thread into a test
    run's output."""
    import warnings

    from conceptlens import sampling

    rng = np.random.default_rng(0)
    table = rng.normal(size=(4, 7))
    table[1] = np.nan  # an order without samples
    table[2, ::2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmean(table, axis=-1)
        expected_kept = np.nanmean(table, axis=-1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        got = sampling._pair_mean(table)
        kept = sampling._nan_mean(table, keepdims=True)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("warnings.catch_warnings changes process-wide state")

    monkeypatch.setattr(warnings, "catch_warnings", refuse)
    again = sampling._pair_mean(table)
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.array_equal(again, expected, equal_nan=True)
    assert np.array_equal(kept, expected_kept, equal_nan=True)
