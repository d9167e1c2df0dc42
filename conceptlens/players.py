"""Players from a patch grid, baselines and masked inputs — SCIENCE.md, Conventions.

Player ``i`` of a rows×cols grid is cell ``r*cols + c`` (row-major), or the ``i``-th of a
chosen subset of cells. Masking happens in the model's input space: an absent player's
pixels take the baseline value there. Cells that are not players stay present (default)
or absent in every masked input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

BaselineKind = Literal["zero", "mean", "blur"]
BASELINES: tuple[str, ...] = ("zero", "mean", "blur")


@dataclass(frozen=True)
class PatchGrid:
    """A rows×cols grid over an ``height``×``width`` image.

    Sizes need not divide: cell edges are ``round(k·H/rows)``, so cells differ by at most
    one pixel and cover the image exactly.

    Example:
        >>> PatchGrid(3, 2, height=8, width=5).row_edges
        (0, 3, 5, 8)
    """

    rows: int
    cols: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if not (1 <= self.rows <= self.height and 1 <= self.cols <= self.width):
            raise ValueError(
                f"a {self.rows}x{self.cols} grid does not fit a {self.height}x{self.width} "
                "image: each cell needs at least one pixel"
            )

    @property
    def n_cells(self) -> int:
        return self.rows * self.cols

    @property
    def row_edges(self) -> tuple[int, ...]:
        return _edges(self.height, self.rows)

    @property
    def col_edges(self) -> tuple[int, ...]:
        return _edges(self.width, self.cols)

    def cell_masks(self) -> torch.Tensor:
        """Boolean ``[n_cells, height, width]``: which pixels each cell covers."""
        r_of = torch.bucketize(
            torch.arange(self.height), torch.tensor(self.row_edges[1:]), right=True
        )
        c_of = torch.bucketize(
            torch.arange(self.width), torch.tensor(self.col_edges[1:]), right=True
        )
        cell_of = r_of[:, None] * self.cols + c_of[None, :]
        return cell_of[None] == torch.arange(self.n_cells)[:, None, None]


def _edges(size: int, parts: int) -> tuple[int, ...]:
    return tuple(round(k * size / parts) for k in range(parts + 1))


def parse_grid(text: str) -> tuple[int, int]:
    """``"4x4"`` → ``(4, 4)``; also accepts ``"4"`` for a square grid.

    Example:
        >>> parse_grid("3x5")
        (3, 5)
    """
    parts = text.lower().replace("×", "x").split("x")
    try:
        rows, cols = (int(parts[0]), int(parts[0])) if len(parts) == 1 else map(int, parts)
    except ValueError:
        raise ValueError(f"grid must look like 4x4, got {text!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"grid must be at least 1x1, got {text!r}")
    return rows, cols


class Players:
    """The players of an analysis: chosen cells of a grid, and what the rest do.

    ``pixel_presence(coalitions)`` maps boolean coalitions ``[b, n]`` to per-pixel presence
    ``[b, 1, H, W]`` (1 = input pixel, 0 = baseline) by gathering each pixel's player, on
    the device of the coalitions: O(b·H·W).
    """

    def __init__(
        self,
        grid: PatchGrid,
        cells: Sequence[int] | None = None,
        *,
        others_present: bool = True,
    ) -> None:
        cells = list(range(grid.n_cells)) if cells is None else [int(c) for c in cells]
        if not cells:
            raise ValueError("choose at least one patch as a player")
        if len(set(cells)) != len(cells):
            raise ValueError("each patch can be a player only once")
        bad = [c for c in cells if not 0 <= c < grid.n_cells]
        if bad:
            raise ValueError(f"patches {bad} are outside the {grid.rows}x{grid.cols} grid")
        self.grid = grid
        self.cells = cells
        self.others_present = others_present
        # each pixel's player, or n for pixels of cells that are not players
        owner = torch.full((grid.n_cells,), len(cells), dtype=torch.int64)
        owner[torch.tensor(cells)] = torch.arange(len(cells))
        cell_of_pixel = grid.cell_masks().reshape(grid.n_cells, -1).to(torch.int64).argmax(0)
        self._pixel_player = owner[cell_of_pixel]

    @property
    def n(self) -> int:
        return len(self.cells)

    def pixel_presence(self, coalitions: torch.Tensor) -> torch.Tensor:
        """``[b, n]`` bool coalitions → ``[b, 1, H, W]`` float presence (a gather, no product)."""
        device = coalitions.device
        b = coalitions.shape[0]
        others = torch.full((b, 1), float(self.others_present), device=device)
        extended = torch.cat([coalitions.to(torch.float32), others], dim=1)
        presence = torch.index_select(extended, 1, self._pixel_player.to(device))
        return presence.view(b, 1, self.grid.height, self.grid.width)


def make_baseline(
    x: torch.Tensor, kind: BaselineKind | torch.Tensor, *, blur_sigma: float | None = None
) -> torch.Tensor:
    """The baseline ``[C, H, W]`` that absent players take, in the model's input space.

    ``zero``: all zeros; ``mean``: each channel's mean over the input; ``blur``: the input
    blurred by a Gaussian of ``blur_sigma`` pixels (default ``max(H, W) / 8``), reflect
    padding; a tensor: used as given (it must match the input's shape).
    """
    if isinstance(kind, torch.Tensor):
        if kind.shape != x.shape:
            raise ValueError(
                f"the baseline image has shape {tuple(kind.shape)}, the input {tuple(x.shape)}"
            )
        return kind.to(dtype=x.dtype, device=x.device)
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(1, 2), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        return gaussian_blur(x, blur_sigma or max(x.shape[1:]) / 8)
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``[C, H, W]`` image (kernel radius ⌈3σ⌉, reflect pad)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    radius = min(radius, x.shape[1] - 1, x.shape[2] - 1) if min(x.shape[1:]) > 1 else 0
    if radius == 0:
        return x.clone()
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[0]
    img = F.pad(x[None], (radius, radius, radius, radius), mode="reflect")
    img = F.conv2d(img, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    img = F.conv2d(img, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return img[0]


def masked_inputs(x: torch.Tensor, baseline: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
    """``x_S = baseline + presence · (x − baseline)`` for a batch of presence maps."""
    return torch.addcmul(baseline, presence, x - baseline)
