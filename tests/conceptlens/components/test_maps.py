"""Component maps of one image for the heat-map view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlens.components import (
    ComponentsError,
    component_maps,
    image_maps,
    most_activated_channel,
    train_disentanglers,
)

from .conftest import Toy


def test_most_activated_channel_is_the_largest_mean() -> None:
    f = torch.zeros(3, 2, 2)
    f[1, 0, 0] = 5.0  # mean 1.25
    f[2] = 1.0  # mean 1.0
    assert most_activated_channel(f) == 1


def test_maps_per_order_add_up_to_the_feature(linear_toy: Toy) -> None:
    t = linear_toy
    x, f = t.x_train[:64], t.f_train[:64]
    trained = train_disentanglers(x, f, x, f, orders=(0, 1, 2), epochs=1, width=4)
    maps = component_maps(trained, x[3], f[3])
    assert maps.orders == (0, 1, 2)
    assert maps.channel == most_activated_channel(f[3])
    assert maps.components.shape == (3, 8, 8) and maps.cumulative.shape == (3, 8, 8)
    rebuilt = maps.components.sum(axis=0) + maps.residual
    assert np.allclose(rebuilt, maps.feature, atol=1e-5)
    assert np.allclose(maps.cumulative[-1], maps.components.sum(axis=0), atol=1e-5)
    chosen = component_maps(trained, x[3:4], f[3:4], channel=0)
    assert chosen.channel == 0 and np.allclose(chosen.feature, f[3, 0].numpy())
    with pytest.raises(ComponentsError, match=r"outside 0\.\.1"):
        component_maps(trained, x[3], f[3], channel=2)


def test_flat_features_have_no_maps(linear_toy: Toy) -> None:
    t = linear_toy
    x, f = t.x_train[:32], t.f_train[:32].flatten(1)
    trained = train_disentanglers(x, f, x, f, orders=(0,), epochs=1, width=4)
    with pytest.raises(ComponentsError, match="flat feature has no spatial map"):
        component_maps(trained, x[0], f[0])


def test_maps_of_every_channel_match_one_channel_maps(linear_toy: Toy) -> None:
    t = linear_toy
    x, f = t.x_train[:16], t.f_train[:16]
    trained = train_disentanglers(x, f, x, f, orders=(0, 2), epochs=1, width=4)
    every = image_maps(trained, x[:3], f[:3])
    assert every.components.shape == (3, 2, *f.shape[1:])
    assert every.channels == [most_activated_channel(one) for one in f[:3]]
    for k in range(f.shape[1]):
        one = component_maps(trained, x[2], f[2], channel=k)
        assert np.allclose(every.channel(2, k).components, one.components, atol=1e-6)
    rebuilt = every.components.sum(axis=1) + every.residuals
    assert np.allclose(rebuilt, f[:3].numpy(), atol=1e-5)
    with pytest.raises(ComponentsError, match="outside"):
        every.channel(0, f.shape[1])
