"""The sampled plan: numbers fixed by the request, unbiased, pooled exactly (SCIENCE.md §4)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from conceptlens.games import UnanimityGame
from conceptlens.pairwise import all_pairs, local_pairs
from conceptlens.sampled_plan import (
    PlanPart,
    SampledPlan,
    empty_result,
    game_evaluator,
    image_strength,
    merge,
    packed_coalitions,
    passes_per_context,
    run_plan,
    run_units,
)
from conceptlens.sampling import SampledMultiOrder, _random_subsets

N = 10


def smooth_game(seed: int) -> UnanimityGame:
    rng = np.random.default_rng(seed)
    sets = [rng.choice(N, size=int(s), replace=False).tolist() for s in rng.integers(1, 5, 40)]
    return UnanimityGame(N, sets, rng.normal(size=40), constant=1.0)


def plan(seed: int = 0, contexts: int = 30) -> SampledPlan:
    return SampledPlan.build(
        N,
        [
            PlanPart((0, 1, 2, 8), all_pairs(N), contexts),
            PlanPart((3, 4, 5, 6, 7), all_pairs(N)[::3], 2 * contexts),
        ],
        seed=seed,
        unit_passes=200,
    )


def same(a: SampledMultiOrder, b: SampledMultiOrder) -> bool:
    return all(
        np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True)
        for k in ("center", "replicate_count", "replicate_sum", "replicate_sumsq", "order_passes")
    )


def test_results_depend_on_the_request_alone_not_on_who_runs_which_chunk() -> None:
    p, game = plan(), smooth_game(0)
    evaluate = game_evaluator(game)
    chunks = p.chunks(1500)
    assert len(chunks) > 4
    # one worker, in order; two workers interleaved, each finishing in its own order
    one = [run_units(p, a, b, evaluate) for a, b in chunks]
    two = [run_units(p, a, b, evaluate) for a, b in reversed(chunks)][::-1]
    for part in range(len(p.parts)):
        x = merge([empty_result(p, part)] + [c[part] for c in one if part in c])
        y = merge([empty_result(p, part)] + [c[part] for c in two if part in c])
        assert same(x, y)
    # another chunk size: the same samples, pooled in another grouping (rounding only)
    a, b = run_plan(p, game, max_passes=1500), run_plan(p, game, max_passes=10**9)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.count, y.count)
        np.testing.assert_allclose(x.mean, y.mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(x.se, y.se, rtol=1e-9, atol=1e-12)
    # another seed: other samples
    c = run_plan(plan(seed=1), game)
    assert not np.allclose(a[1].mean, c[1].mean)


def test_merge_pools_samples_exactly() -> None:
    """Merged statistics equal those of all samples taken in one design."""
    p, game = plan(contexts=20), smooth_game(1)
    whole = run_units(p, 0, len(p.units), game_evaluator(game))
    parts = [run_units(p, a, b, game_evaluator(game)) for a, b in p.chunks(400)]
    for k, result in whole.items():
        pooled = merge([empty_result(p, k)] + [c[k] for c in parts if k in c])
        np.testing.assert_array_equal(pooled.replicate_count, result.replicate_count)
        np.testing.assert_allclose(pooled.mean, result.mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(pooled.se, result.se, rtol=1e-9, atol=1e-12)
        assert pooled.passes == result.passes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_interactions_agree_with_the_exact_ones(seed: int) -> None:
    game = smooth_game(seed)
    results = run_plan(plan(seed, contexts=300), game)
    z_all = []
    for result in results:
        exact = game.exact_multi_order(result.pairs)[result.orders]
        sampled = ~result.exact[:, None] & (result.count > 1)
        noisy = sampled & (result.se > 1e-9)  # else equal samples, up to rounding
        z_all.append((result.mean - exact)[noisy] / result.se[noisy])
        # all samples equal: no term reaches the pair (300 contexts miss none), so exact
        flat = sampled & ~noisy
        np.testing.assert_allclose(result.mean[flat], exact[flat], atol=1e-9)
        np.testing.assert_allclose(result.mean[result.exact], exact[result.exact], atol=1e-12)
    z = np.concatenate(z_all)
    assert len(z) > 100
    assert np.abs(z).max() < 5
    assert 0.62 < np.abs(z).mean() < 0.98  # E|Z| = 0.80 for Z ~ N(0, 1); t tails a little wider


def test_a_pair_of_a_unanimity_term_has_its_closed_form() -> None:
    """``v = [T ⊆ S]`` with ``T = {0, 1, 2}``: ``I^(m)(0,1) = P(2 ∈ S) = m/(n−2)``, no noise
    beyond the Bernoulli draw, so the estimate lies within its standard errors."""
    game = UnanimityGame(N, [[0, 1, 2]], [1.0])
    p = SampledPlan.build(N, [PlanPart(tuple(range(N - 1)), np.array([[0, 1]]), 400)], seed=3)
    (result,) = run_plan(p, game)
    expected = np.arange(N - 1) / (N - 2)
    z = (result.mean[:, 0] - expected)[1:-1] / result.se[:, 0][1:-1]
    assert np.abs(z).max() < 4.5
    assert result.mean[0, 0] == 0.0 and result.mean[-1, 0] == 1.0  # the exact end orders


def test_expected_passes_match_the_passes_spent() -> None:
    n, pairs = 64, local_pairs(8, 8, 2)
    p = SampledPlan.build(n, [PlanPart((0, 6, 31, 56, 62), pairs, 20)], seed=0)
    game = UnanimityGame(n, [[0, 1]], [1.0])
    (result,) = run_plan(p, game)
    assert result.passes == pytest.approx(p.expected_passes, rel=0.03)


def test_passes_per_context_is_the_expectation_over_draws() -> None:
    n, pairs, x = 12, local_pairs(3, 4, 1), 5
    rng = np.random.default_rng(0)
    drawn = _random_subsets(rng, 20_000, n, x)
    free = ~drawn
    usable = free[:, pairs[:, 0]] & free[:, pairs[:, 1]]
    players = np.zeros_like(free)
    for col, (i, j) in enumerate(pairs):
        players[:, i] |= usable[:, col]
        players[:, j] |= usable[:, col]
    empirical = 1 + usable.sum(1).mean() + players.sum(1).mean()
    assert passes_per_context(n, x, pairs) == pytest.approx(empirical, rel=0.01)


def test_packed_coalitions_are_the_designs_rows() -> None:
    p, game = plan(), smooth_game(2)
    (design,) = p.designs(0, 3).values()
    packed = packed_coalitions(design)
    direct = design.evaluate(game, 64, None)
    via = game(np.unpackbits(packed, axis=1, count=N).astype(bool))
    np.testing.assert_array_equal(direct, via)


def test_units_are_fixed_by_the_request_and_chunks_cover_them() -> None:
    p = plan()
    assert p.units == plan().units
    for size in (1, 300, 10**9):
        chunks = p.chunks(size)
        assert chunks[0][0] == 0 and chunks[-1][1] == len(p.units)
        assert all(a < b and b == c for (a, b), (c, _) in itertools.pairwise(chunks))
    # contexts of an order: ⌈contexts / ρ(x)⌉, split into units
    order_units = [u for u in p.units if u.part == 1 and u.order == 2]  # m = 5, x = 3
    rho = (N - 3) * (N - 4) / (N * (N - 1))
    assert order_units[-1].stop == math.ceil(60 / rho)


def test_image_strength_joins_the_parts_in_order() -> None:
    results = run_plan(plan(), smooth_game(0))
    curve = image_strength(results)
    assert curve.orders.tolist() == list(range(N - 1))
    assert np.all(curve.se[[0, N - 2]] == 0)
    assert np.all(np.isfinite(curve.value))


def test_bad_plans_are_refused() -> None:
    pairs = all_pairs(4)
    with pytest.raises(ValueError, match="more than one part"):
        SampledPlan.build(4, [PlanPart((0, 1), pairs, 2), PlanPart((1,), pairs, 2)], seed=0)
    with pytest.raises(ValueError, match="orders"):
        SampledPlan.build(4, [PlanPart((3,), pairs, 2)], seed=0)
    with pytest.raises(ValueError, match="distinct players"):
        SampledPlan.build(4, [PlanPart((0,), np.array([[0, 0]]), 2)], seed=0)
