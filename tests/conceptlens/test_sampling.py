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
    SampledMultiOrder,
    combine_strengths,
    grid_blocks,
    paper_estimator,
    ratio_orders,
    sample_multi_order,
    sampled_relative_strength,
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


def test_debias_removes_about_half_the_upward_bias_of_abs_mean() -> None:
    plain, debiased = [], []
    for seed in range(40):
        result = noise_only_result(seed, contexts=10)
        plain.append(result.strength().value)
        debiased.append(result.strength(debias=True).value)
    exact = np.array([0.25, 0.25, 0.25, 0.25])  # only the pair (4, 5), strength 0.5, counts
    bias_plain = np.mean(plain, axis=0) - exact
    bias_debiased = np.mean(debiased, axis=0) - exact
    assert np.all(bias_plain[1:3] > 0.03)
    assert np.all(np.abs(bias_debiased[1:3]) < 0.6 * bias_plain[1:3])  # measured 0.39, 0.53
    np.testing.assert_allclose(bias_plain[[0, 3]], 0.0, atol=1e-12)  # exact orders


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
