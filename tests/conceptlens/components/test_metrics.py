"""Components, significance, reliability and Shapley effects against analytic answers (§7)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conceptlens.components import (
    ComponentsError,
    components,
    cycle_map,
    effects,
    reliability,
    significance,
    variance,
)


def random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_variance_centres_each_entry() -> None:
    g = torch.tensor([[1.0, 7.0], [3.0, 7.0]])  # entry 0 varies (var 1), entry 1 is constant
    assert variance(g) == pytest.approx(0.5)
    assert variance(g + torch.tensor([5.0, -2.0])) == pytest.approx(0.5)


def test_components_add_up_to_the_feature() -> None:
    phis, f = random(4, 10, 3, 2, 2, seed=1), random(10, 3, 2, 2, seed=2)
    c, residual = components(phis, f)
    assert torch.allclose(c.sum(dim=0) + residual, f, atol=1e-6)
    assert torch.equal(c[0], phis[0]) and torch.allclose(c[2], phis[2] - phis[1])
    with pytest.raises(ComponentsError, match="do not match"):
        components(phis, f[:5])


def test_significance_of_known_parts() -> None:
    a, b = random(500, 8, seed=3), random(500, 8, seed=4)
    f = a + 0.5 * b  # Var[f] ≈ 1.25
    s = significance(torch.stack([a, a + 0.5 * b]), f, orders=(0, 3))
    assert s.component == pytest.approx(
        [variance(a) / variance(f), 0.25 * variance(b) / variance(f)]
    )
    assert s.cumulative[1] == pytest.approx(1.0) and s.residual == pytest.approx(0.0)
    assert s.orders == (0, 3) and s.feature_variance == pytest.approx(variance(f))


def channel_map(t: torch.Tensor, seed: int) -> torch.Tensor:
    """``t [N, C, H, W]`` with its channels mixed by a random (invertible) matrix."""
    mix = random(t.shape[1], t.shape[1], seed=seed)
    return torch.einsum("nchw,cd->ndhw", t, mix)


def test_reliability_of_shared_half_shared_and_foreign_features() -> None:
    s1, s2, own, foreign = (random(600, 2, 5, 5, seed=s) for s in (5, 6, 7, 8))
    base = torch.cat([s1, random(600, 2, 5, 5, seed=9)], dim=1)  # shared in full
    half_t = torch.cat([s2, own], dim=1)  # half of the channels shared, half the target's own
    half_e = torch.cat([channel_map(s2, 10), foreign], dim=1)
    target = torch.stack([base, base + half_t])
    exemplar = torch.stack([channel_map(base, 11), channel_map(base, 11) + half_e])
    fit, held = slice(0, 400), slice(400, 600)
    r = reliability(target[:, fit], target[:, held], [exemplar[:, fit]], [exemplar[:, held]])
    assert r.component[0] == pytest.approx(1.0, abs=1e-3)  # Φ^(0): an invertible map apart
    assert r.component[1] == pytest.approx(0.5, abs=0.05)  # c^(1): half of its variance
    assert r.cumulative[0] == pytest.approx(1.0, abs=1e-3)
    assert r.cumulative[1] < r.cumulative[0]  # Φ^(1) mixes in the unshared part
    two = reliability(
        target[:, fit], target[:, held], [exemplar[:, fit]] * 2, [exemplar[:, held]] * 2
    )
    assert two.component == pytest.approx(r.component, abs=0.02)


def test_an_unrelated_exemplar_reproduces_nothing() -> None:
    a, b = random(1, 400, 3, 4, 4, seed=12), random(1, 400, 3, 4, 4, seed=13)
    r = reliability(a[:, :300], a[:, 300:], [b[:, :300]], [b[:, 300:]])
    assert r.cumulative[0] < 0.01


def test_a_weakly_encoded_direction_still_counts() -> None:
    """A channel map with a singular value of 0.057 is still invertible: reliability 1."""
    a = random(1, 300, 4, 5, 5, seed=14)
    b = torch.einsum("lnchw,cd->lndhw", a, random(4, 4, seed=8))
    assert reliability(a[:, :200], a[:, 200:], [b[:, :200]], [b[:, 200:]]).cumulative[0] > 0.999


def test_flat_features_use_dense_maps() -> None:
    a = random(1, 300, 6, seed=15)
    b = a @ random(6, 5, seed=16)  # 5 of the 6 directions survive
    r = reliability(a[:, :200], a[:, 200:], [b[:, :200]], [b[:, 200:]])
    assert 0.6 < r.cumulative[0] < 0.95


def test_cycle_map_needs_aligned_features() -> None:
    with pytest.raises(ComponentsError, match="same images and spatial size"):
        cycle_map(random(10, 2, 4, 4), random(10, 2, 2, 2))
    with pytest.raises(ComponentsError, match="at least one exemplary"):
        reliability(random(1, 4, 2), random(1, 4, 2), [], [])


class Head(nn.Module):
    """A nonlinear tail ``[N, 4] → [N, 3]`` so that components interact in the loss."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(f)))


def toy_split(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    f = random(200, 4, seed=seed)
    phis = torch.stack([0.6 * f, 0.9 * f + 0.1 * f.pow(2), f - 0.05 * f.abs()])
    labels = torch.randint(0, 3, (200,), generator=torch.Generator().manual_seed(seed))
    return phis, f, labels


def run_tail(head: Head) -> Callable[[torch.Tensor], torch.Tensor]:
    def tail(f: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return head(f)

    return tail


def test_shapley_effects_are_efficient_and_anchored() -> None:
    head = Head()
    train, test = toy_split(10), toy_split(11)
    e = effects(train, test, run_tail(head), orders=(0, 1, 2))
    assert e.players == ("l=0", "l=1", "l=2", "residual")
    for phi, v in ((e.shapley_train, e.values_train), (e.shapley_test, e.values_test)):
        assert abs(phi.sum() - (v[-1] - v[0])) < 1e-12
    _, f, labels = train
    with torch.no_grad():
        full = F.cross_entropy(head(f).double(), labels)
        mean = F.cross_entropy(head(f.mean(dim=0).expand_as(f)).double(), labels)
    assert e.values_train[-1] == pytest.approx(float(full), abs=1e-6)  # all players: f itself
    assert e.values_train[0] == pytest.approx(float(mean), abs=1e-6)  # none: f's mean
    assert np.allclose(e.shapley_gap, e.shapley_test - e.shapley_train, atol=1e-12)
    assert np.allclose(e.overfitting, e.shapley_gap / -e.shapley_train)


def test_without_the_residual_all_players_is_the_components_network() -> None:
    head = Head()
    train, test = toy_split(12), toy_split(13)
    e = effects(train, test, run_tail(head), orders=(0, 1, 2), include_residual=False)
    phis, f, labels = train
    rebuilt = phis[-1] - phis[-1].mean(dim=0) + f.mean(dim=0)
    with torch.no_grad():
        expected = F.cross_entropy(head(rebuilt).double(), labels)
    assert len(e.players) == 3
    assert e.values_train[-1] == pytest.approx(float(expected), abs=1e-6)
    assert abs(e.shapley_train.sum() - (e.values_train[-1] - e.values_train[0])) < 1e-12
