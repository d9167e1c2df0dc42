"""Queries on stored component maps (NumPy only): the channel layouts a job may have stored."""

from __future__ import annotations

import numpy as np
import pytest

from backend import results

N, L, C, H, W = 2, 3, 4, 5, 5


def stored(every_channel: bool) -> dict[str, np.ndarray]:
    """Maps as a component job stores them; ``f = Σ_l c^(l) + Δf`` holds channel by channel."""
    rng = np.random.default_rng(0)
    comps = rng.normal(size=(N, L, C, H, W))
    residuals = rng.normal(size=(N, C, H, W))
    channels = np.array([2, 0])
    arrays = {
        "orders": np.array([0, 1, 2]),
        "channels": channels,
        "images": rng.normal(size=(N, 16, 16)),
        "features": comps.sum(axis=1) + residuals,
        "components": comps,
        "residuals": residuals,
        "stored_channels": np.tile(np.arange(C), (N, 1)),
    }
    if not every_channel:
        rows = np.arange(N)
        arrays["components"] = comps[rows, :, channels][:, :, None]
        arrays["features"] = arrays["features"][rows, channels][:, None]
        arrays["residuals"] = residuals[rows, channels][:, None]
        arrays["stored_channels"] = channels[:, None]
    return arrays


def test_every_channel_can_be_picked() -> None:
    arrays = stored(every_channel=True)
    for channel in range(C):
        out = results.component_map(arrays, 1, channel)
        rebuilt = np.sum(out["components"], axis=0) + np.array(out["residual"])
        assert np.allclose(rebuilt, out["feature"])
        assert np.allclose(out["feature"], arrays["features"][1, channel])
    default = results.component_map(arrays, 0)
    assert default["channel"] == default["most_activated"] == 2 and default["channels"] == C
    with pytest.raises(ValueError, match="channels are 0–3"):
        results.component_map(arrays, 0, C)
    with pytest.raises(ValueError, match="index must be in 0–1"):
        results.component_map(arrays, N)


def test_a_large_layer_keeps_the_most_activated_channel() -> None:
    arrays = stored(every_channel=False)
    out = results.component_map(arrays, 0)
    assert out["channel"] == 2 and out["channels"] == 1
    assert np.allclose(out["feature"], stored(every_channel=True)["features"][0, 2])
    with pytest.raises(ValueError, match="this layer is large"):
        results.component_map(arrays, 0, 1)


def test_results_stored_before_channels_were_kept_still_open() -> None:
    arrays = stored(every_channel=False)
    old = {key: value for key, value in arrays.items() if key != "stored_channels"}
    old["components"] = old["components"][:, :, 0]
    old["features"], old["residuals"] = old["features"][:, 0], old["residuals"][:, 0]
    out = results.component_map(old, 1)
    assert out["channel"] == 0 and np.allclose(out["feature"], arrays["features"][1, 0])
    with pytest.raises(ValueError, match="predates other channels"):
        results.component_map(old, 1, 3)
