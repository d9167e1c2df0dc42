"""Exact Shapley values from a subset table: the definition, the axioms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from conceptlens.components import shapley_from_table, shapley_values
from conceptlens.game import CallableGame


def shapley_by_definition(v: np.ndarray) -> np.ndarray:
    """``φ_i = Σ_{S⊆N∖i} |S|!(n−|S|−1)!/n! (v(S∪i) − v(S))`` by enumeration."""
    n = len(v).bit_length() - 1
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                s = sum(1 << j for j in subset)
                phi[i] += weight * (v[s | (1 << i)] - v[s])
    return phi


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_matches_the_definition_and_efficiency(n: int) -> None:
    v = np.random.default_rng(n).normal(size=1 << n)
    phi = shapley_from_table(v)
    assert np.allclose(phi, shapley_by_definition(v), atol=1e-12)
    assert abs(phi.sum() - (v[-1] - v[0])) < 1e-12


def test_additive_game_gives_each_player_its_weight() -> None:
    weights = np.array([0.5, -2.0, 3.0, 0.0])
    game = CallableGame(lambda coalitions: coalitions.astype(float) @ weights, n_players=4)
    phi, table = shapley_values(game)
    assert np.allclose(phi, weights) and table.shape == (16,)


def test_too_many_players_are_refused() -> None:
    with pytest.raises(ValueError, match="1 to 10 players"):
        shapley_values(CallableGame(lambda c: np.zeros(len(c)), n_players=11))
