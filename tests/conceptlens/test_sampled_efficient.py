"""conceptlens.sampled_efficient: unbiased per-pair estimates, determinism, pass counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conceptlens.games import UnanimityGame, random_bottleneck_game
from conceptlens.pairwise import all_pairs, multi_order
from conceptlens.reference import exact_strength
from conceptlens.sampled_efficient import (
    EfficientResult,
    OrderSetting,
    contexts_drawn,
    efficient_j,
    expected_passes,
    sample_orders,
    subset_pairs,
    tiled_subsets,
)
from conceptlens.transforms import harsanyi


def _random_game(n: int, seed: int) -> UnanimityGame:
    """Dividends on random sets of 2…n players: interactions at every order."""
    rng = np.random.default_rng(seed)
    sets = [
        rng.choice(n, size=int(rng.integers(2, n + 1)), replace=False).tolist() for _ in range(40)
    ]
    return UnanimityGame(n, sets, rng.normal(size=len(sets)).tolist(), constant=0.3)


def _table(game: UnanimityGame) -> np.ndarray:
    n = game.n_players
    masks = np.arange(1 << n)
    coalitions = (masks[:, None] >> np.arange(n)[None, :]) & 1
    return game(coalitions.astype(bool))


def _exact_multi(game: UnanimityGame, pairs: np.ndarray) -> np.ndarray:
    """``[n−1, P]`` from the dense Harsanyi transform (independent of the closed form)."""
    multi = multi_order(harsanyi(_table(game)))
    return multi[:, pairs[:, 0], pairs[:, 1]]


@pytest.mark.parametrize("tiled", [True, False])
def test_pair_means_are_unbiased(tiled: bool) -> None:
    n = 9
    game = _random_game(n, 3)
    pairs = all_pairs(n)
    exact = _exact_multi(game, pairs)
    settings = [OrderSetting(m, 3000) for m in range(n - 1)]
    out = sample_orders(
        game, pairs=pairs, settings=settings, rng=np.random.default_rng(11), tiled=tiled
    )
    z2 = []
    for setting, part in zip(settings, out.parts, strict=True):
        m = setting.order
        mean, se = part.mean[0], part.se[0]
        if m in (0, n - 2):
            np.testing.assert_allclose(mean, exact[m], atol=1e-9)
            continue
        assert np.all(part.count[0] > 2000)
        # cells where Δv never varies have se = 0 up to rounding: compare to 1e-9 there
        z = (mean - exact[m]) / np.maximum(se, 1e-9)
        assert np.max(np.abs(z)) < 4.5, (m, z)
        z2.append(z[se > 1e-9] ** 2)
    # a bias of about one SE in many cells would inflate the mean square (cells of one
    # order share contexts, so the z are correlated and this mean is noisier than 2/cells)
    assert float(np.mean(np.concatenate(z2))) < 2.0


def test_subset_pairs_are_unbiased_for_the_pair_mean() -> None:
    """Every pair is kept equally often by the random player subsets."""
    n = 10
    pairs = all_pairs(n)
    rng = np.random.default_rng(0)
    kept = np.zeros(len(pairs))
    draws = 4000
    for _ in range(draws):
        chosen = subset_pairs(pairs, n, 0.5, rng)
        kept[np.flatnonzero((pairs[:, None, :] == chosen[None]).all(-1).any(1))] += 1
    p = 5 * 4 / (10 * 9)  # both players among the 5 kept
    sd = math.sqrt(p * (1 - p) / draws)
    assert np.max(np.abs(kept / draws - p)) < 4.5 * sd


def test_tiled_windows_are_disjoint_and_uniform() -> None:
    rng = np.random.default_rng(1)
    sets, perm = tiled_subsets(rng, 6000, 7, 3)
    assert np.all(sets.sum(axis=1) == 3)
    assert np.all(np.diff(perm) >= 0) and perm[-1] == 2999  # 2 windows per permutation
    first, second = sets[0::2], sets[1::2]
    assert not np.any(first & second)
    freq = sets.mean(axis=0)
    assert np.max(np.abs(freq - 3 / 7)) < 4.5 * math.sqrt(3 / 7 * 4 / 7 / 6000)


def test_exact_orders_cost_their_closed_form() -> None:
    n = 10
    game = _random_game(n, 5)
    pairs = np.array([[0, 1], [0, 2], [3, 4], [5, 9]])
    out = sample_orders(
        game,
        pairs=pairs,
        settings=[OrderSetting(0, 7), OrderSetting(n - 2, 3)],
        rng=np.random.default_rng(0),
    )
    players = len(np.unique(pairs))
    for part in out.parts:
        assert part.passes == 1 + players + len(pairs)
    assert out.passes == 2 * (1 + players + len(pairs))
    assert expected_passes(n, 0, pairs, 7) == 1 + players + len(pairs)


@pytest.mark.parametrize("m", [1, 3, 6])
def test_sampled_passes_match_their_expectation(m: int) -> None:
    n = 10
    game = _random_game(n, 5)
    pairs = np.array([[0, 1], [0, 2], [1, 2], [3, 4], [5, 9], [6, 7]])
    counts = [
        sample_orders(
            game, pairs=pairs, settings=[OrderSetting(m, 5)], rng=np.random.default_rng(s)
        ).passes
        for s in range(300)
    ]
    expected = expected_passes(n, m, pairs, 5)
    se = np.std(counts, ddof=1) / math.sqrt(len(counts))
    assert abs(np.mean(counts) - expected) < 4.5 * se + 1e-9
    x = min(m, n - 2 - m)
    assert contexts_drawn(n, m, 5) == math.ceil(5 * n * (n - 1) / ((n - x) * (n - x - 1)))


def test_planned_run_is_deterministic_and_fits_its_budget() -> None:
    n = 16
    game = random_bottleneck_game(n, np.random.default_rng(0))
    pairs = all_pairs(n)
    orders = [0, 3, 7, 10, 14]

    def run(seed: int) -> EfficientResult:
        return efficient_j(
            game, pairs=pairs, orders=orders, budget=20_000, rng=np.random.default_rng(seed)
        )

    a, b, c = run(4), run(4), run(5)
    assert a.settings == b.settings and a.passes == b.passes
    np.testing.assert_array_equal(a.relative_strength().value, b.relative_strength().value)
    assert not np.array_equal(a.relative_strength().value, c.relative_strength().value)
    assert a.pilot_passes > 0
    assert 0.8 * 20_000 < np.mean([run(s).passes for s in range(6)]) < 1.1 * 20_000
    # the exact end orders use every pair and match the dense reference
    exact = exact_strength(_table(game), pairs)
    strength = a.strength().value
    np.testing.assert_allclose(strength[[0, -1]], exact[[0, n - 2]], rtol=1e-9)
