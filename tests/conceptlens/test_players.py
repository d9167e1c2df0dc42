"""Patch grids, players and baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlens.game import mask_range_coalitions
from conceptlens.players import (
    PatchGrid,
    Players,
    baseline_array,
    blur_array,
    gaussian_blur,
    make_baseline,
    masked_arrays,
    masked_inputs,
    parse_grid,
)


@pytest.mark.parametrize(
    "rows,cols,h,w", [(4, 4, 16, 16), (3, 3, 8, 8), (5, 2, 7, 13), (16, 16, 16, 16)]
)
def test_cells_tile_the_image_exactly_once(rows: int, cols: int, h: int, w: int) -> None:
    masks = PatchGrid(rows, cols, h, w).cell_masks()
    assert masks.shape == (rows * cols, h, w)
    assert torch.all(masks.sum(0) == 1)
    sizes = masks.sum((1, 2))
    assert sizes.min() >= 1
    # non-divisible sizes: cells differ by at most one row and one column
    heights = masks.any(2).sum(1)
    assert heights.max() - heights.min() <= 1


def test_player_index_is_row_major() -> None:
    masks = PatchGrid(2, 3, 4, 6).cell_masks()
    assert masks[4, 2, 2] and masks[4, 3, 3]  # row 1, col 1 → cell 1*3+1
    assert masks[2, 0, 5]


def test_grid_larger_than_image_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        PatchGrid(9, 2, 8, 8)


def test_parse_grid() -> None:
    assert parse_grid("4x4") == (4, 4)
    assert parse_grid("2X5") == (2, 5)
    assert parse_grid("7") == (7, 7)
    with pytest.raises(ValueError, match="4x4"):
        parse_grid("four")


def test_presence_of_selected_players_with_others_present_or_absent() -> None:
    grid = PatchGrid(2, 2, 4, 4)
    coal = torch.tensor([[True, False], [False, False]])
    present = Players(grid, [0, 3], others_present=True).pixel_presence(coal)
    assert present.shape == (2, 1, 4, 4)
    # cell 0 present, cell 3 absent, cells 1 and 2 (not players) present
    assert present[0, 0, :2, :2].eq(1).all() and present[0, 0, 2:, 2:].eq(0).all()
    assert present[0, 0, :2, 2:].eq(1).all() and present[1, 0, 2:, :2].eq(1).all()
    absent = Players(grid, [0, 3], others_present=False).pixel_presence(coal)
    assert absent[0].sum() == 4 and absent[1].sum() == 0


@pytest.mark.parametrize(
    "cells,match", [([], "at least one"), ([0, 0], "only once"), ([4], "outside")]
)
def test_bad_player_choices(cells: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Players(PatchGrid(2, 2, 4, 4), cells)


def test_baselines() -> None:
    x = torch.rand(3, 8, 8)
    assert torch.equal(make_baseline(x, "zero"), torch.zeros_like(x))
    mean = make_baseline(x, "mean")
    assert torch.allclose(mean[:, 0, 0], x.mean((1, 2)))
    assert torch.allclose(mean.std((1, 2)), torch.zeros(3))
    blur = make_baseline(x, "blur")
    assert blur.shape == x.shape and blur.std() < x.std()
    given = torch.ones_like(x)
    assert torch.equal(make_baseline(x, given), given)
    with pytest.raises(ValueError, match="shape"):
        make_baseline(x, torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline(x, "noise")  # type: ignore[arg-type]


def test_blur_keeps_a_constant_image() -> None:
    x = torch.full((1, 9, 9), 0.25)
    assert torch.allclose(gaussian_blur(x, 2.0), x)


def test_masked_inputs_mix_input_and_baseline() -> None:
    x, base = torch.ones(1, 2, 2), torch.zeros(1, 2, 2)
    presence = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert torch.equal(masked_inputs(x, base, presence)[0, 0], torch.eye(2))


# ------------------------------------------------------------ NumPy twins (ONNX analyses)


@pytest.mark.parametrize("others_present", [True, False])
def test_present_pixels_are_pixel_presence(others_present: bool) -> None:
    players = Players(PatchGrid(3, 4, 11, 13), [0, 3, 5, 6, 11], others_present=others_present)
    coal = mask_range_coalitions(0, 32, players.n, torch.device("cpu"))
    expected = players.pixel_presence(coal).numpy()
    got = players.present_pixels(coal.numpy())
    assert got.dtype == np.bool_ and got.shape == expected.shape
    assert np.array_equal(got, expected.astype(bool))


def test_masked_arrays_are_masked_inputs_bit_for_bit() -> None:
    """Sums that round (b + (x − b) is not always x), negative zeros in the baseline
    (whose sign depends on the sign of x − b) and infinities (0·inf is NaN)."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(3, 9, 7, generator=generator) * 1e3
    base = torch.randn(3, 9, 7, generator=generator) * 1e-3
    base[0, :3] = -0.0
    x[0, 0], x[0, 1], x[1, 0, 0] = -1.0, 1.0, float("inf")
    players = Players(PatchGrid(3, 3, 9, 7))
    coal = mask_range_coalitions(0, 512, 9, torch.device("cpu"))
    expected = masked_inputs(x, base, players.pixel_presence(coal)).numpy()
    got = masked_arrays(x.numpy(), base.numpy(), players.present_pixels(coal.numpy()))
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    assert got[0, 0, 0, 0] == 0 and np.signbit(got[0, 0, 0, 0])  # all absent: -0.0 (x < b)
    assert got[0, 0, 1, 0] == 0 and not np.signbit(got[0, 0, 1, 0])  # +0.0 (x > b)


def test_cell_of_pixel_follows_the_rounded_edges() -> None:
    grid = PatchGrid(3, 2, height=8, width=5)  # row edges 0, 3, 5, 8; column edges 0, 2, 5
    cells = grid.cell_of_pixel()
    assert cells[:, 0].tolist() == [0, 0, 0, 2, 2, 4, 4, 4]
    assert cells[0].tolist() == [0, 0, 1, 1, 1]


def test_the_mean_baseline_is_each_channels_mean_rounded_once() -> None:
    x = np.random.default_rng(0).random((3, 17, 19), dtype=np.float32)
    exact = x.astype(np.float64).mean(axis=(1, 2))
    mean = baseline_array(x, "mean")
    assert mean.dtype == np.float32 and mean.shape == x.shape
    assert np.array_equal(mean[:, 0, 0], exact.astype(np.float32))
    assert np.array_equal(mean, np.broadcast_to(mean[:, :1, :1], x.shape))


def test_blur_array_is_a_separable_gaussian_with_reflect_padding() -> None:
    """Against a direct 2-D convolution with the outer-product kernel (torch's conv2d)."""
    x = torch.rand(2, 10, 12, generator=torch.Generator().manual_seed(1))
    sigma = 1.3
    radius = int(np.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k2 = torch.outer(k, k) / k.sum() ** 2
    padded = torch.nn.functional.pad(x[None].double(), (radius,) * 4, mode="reflect")
    expected = torch.nn.functional.conv2d(padded, k2.expand(2, 1, -1, -1), groups=2)[0]
    got = blur_array(x.numpy(), sigma)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=2e-6)
    assert torch.equal(gaussian_blur(x, sigma), torch.from_numpy(got))
    assert torch.equal(make_baseline(x, "blur"), gaussian_blur(x, max(10, 12) / 8))


def test_baseline_array_refuses_a_misshapen_image_and_unknown_kinds() -> None:
    x = np.zeros((1, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="shape"):
        baseline_array(x, np.zeros((1, 4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_array(x, "noise")  # type: ignore[arg-type]


def test_make_baseline_keeps_the_inputs_dtype() -> None:
    x = torch.rand(1, 6, 6, dtype=torch.float64)
    for kind in ("zero", "mean", "blur"):
        assert make_baseline(x, kind).dtype == torch.float64
    assert gaussian_blur(x, 1.0).dtype == torch.float64
