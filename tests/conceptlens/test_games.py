"""Analytic games: values, dividends and exact multi-order interactions (SCIENCE.md §1, §4)."""

from __future__ import annotations

import numpy as np
import pytest

from conceptlens.games import UnanimityGame, random_bottleneck_game
from conceptlens.pairwise import local_pairs, multi_order
from conceptlens.sampling import ratio_orders
from conceptlens.transforms import harsanyi


def all_coalitions(n: int) -> np.ndarray:
    """Row ``mask`` is the coalition of bitmask ``mask``: bool ``[2**n, n]``."""
    return ((np.arange(1 << n)[:, None] >> np.arange(n)) & 1).astype(bool)


def random_game(n: int, seed: int, terms: int = 30, max_size: int | None = None) -> UnanimityGame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, (max_size or n) + 1, size=terms)
    sets = [rng.choice(n, size=int(s), replace=False).tolist() for s in sizes]
    return UnanimityGame(n, sets, rng.normal(size=terms), constant=float(rng.normal()))


def naive_values(game: UnanimityGame, coalitions: np.ndarray) -> np.ndarray:
    out = np.full(len(coalitions), game.constant)
    for players, c in zip(game.sets, game.coefficients, strict=True):
        out += c * coalitions[:, list(players)].all(axis=1)
    return out


@pytest.mark.parametrize(("n", "lookup_size"), [(12, 10), (12, 0), (40, 3), (40, 10)])
def test_values_match_the_definition(n: int, lookup_size: int) -> None:
    rng = np.random.default_rng(n)
    sets = [rng.choice(n, size=int(s), replace=False).tolist() for s in rng.integers(1, n, 60)]
    game = UnanimityGame(n, sets, rng.normal(size=60), constant=0.5, lookup_size=lookup_size)
    coalitions = rng.random((500, n)) < rng.random((500, 1))
    np.testing.assert_allclose(game(coalitions), naive_values(game, coalitions), atol=1e-12)


def test_known_polynomial_gives_its_coefficients() -> None:
    """SCIENCE.md identity: ``v = 3·[p1∧p2] + 2·[p3]`` → ``I({1,2}) = 3``, ``I({3}) = 2``."""
    game = UnanimityGame(4, [[1, 2], [3]], [3.0, 2.0], constant=0.25)
    dividends = harsanyi(game(all_coalitions(4)))
    expected = np.zeros(16)
    expected[[0, 0b0110, 0b1000]] = [0.25, 3.0, 2.0]
    np.testing.assert_allclose(dividends, expected, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_harsanyi_table_is_the_moebius_transform_of_the_values(seed: int) -> None:
    game = random_game(10, seed)
    dense = harsanyi(game(all_coalitions(10)))
    np.testing.assert_allclose(game.harsanyi_table(), dense, atol=1e-9)


def test_duplicate_and_empty_sets_are_merged() -> None:
    game = UnanimityGame(3, [[0, 1], [1, 0], [], [2, 2]], [1.0, 2.0, 5.0, 4.0], constant=1.0)
    table = game.harsanyi_table()
    assert table[0] == 6.0 and table[0b011] == 3.0 and table[0b100] == 4.0
    assert np.count_nonzero(table) == 3


@pytest.mark.parametrize(("n", "seed"), [(6, 0), (9, 1), (12, 2)])
def test_exact_multi_order_matches_the_dense_closed_form(n: int, seed: int) -> None:
    game = random_game(n, seed, terms=40)
    pairs = np.array([(i, j) for i in range(n) for j in range(n) if i != j])
    dense = multi_order(game.harsanyi_table())[:, pairs[:, 0], pairs[:, 1]]
    np.testing.assert_allclose(game.exact_multi_order(pairs), dense, atol=1e-9)


def test_bottleneck_game_at_twelve_players_matches_the_dense_closed_form() -> None:
    game = random_bottleneck_game(12, np.random.default_rng(0), cols=4)
    pairs = local_pairs(3, 4, 2)
    dense = multi_order(game.harsanyi_table())[:, pairs[:, 0], pairs[:, 1]]
    np.testing.assert_allclose(game.exact_multi_order(pairs), dense, atol=1e-9)


def test_bottleneck_curve_is_u_shaped_at_256_players() -> None:
    game = random_bottleneck_game(256, np.random.default_rng(0))
    strength = np.abs(game.exact_multi_order(local_pairs(16, 16, 2))[ratio_orders(256)]).mean(
        axis=1
    )
    j = strength / strength.mean()
    middle = j[4:10].min()  # r = 0.3 … 0.8
    assert j[0] > 4 * middle and j[-1] > 4 * middle
    assert np.argmin(j) not in (0, len(j) - 1)


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError, match="coefficients"):
        UnanimityGame(3, [[0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="outside"):
        UnanimityGame(3, [[0, 3]], [1.0])
    with pytest.raises(ValueError, match="coalitions"):
        UnanimityGame(3, [[0]], [1.0])(np.zeros((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="dense"):
        UnanimityGame(30, [[0]], [1.0]).harsanyi_table()
    with pytest.raises(ValueError, match="distinct"):
        UnanimityGame(3, [[0]], [1.0]).exact_multi_order(np.array([[1, 1]]))
