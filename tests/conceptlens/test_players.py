"""Patch grids, players and baselines."""

from __future__ import annotations

import pytest
import torch

from conceptlens.players import (
    PatchGrid,
    Players,
    gaussian_blur,
    make_baseline,
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
