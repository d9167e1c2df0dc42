"""Players from a patch grid, baselines and masked inputs — SCIENCE.md, Conventions.

Player ``i`` of a rows×cols grid is cell ``r*cols + c`` (row-major), or the ``i``-th of a
chosen subset of cells. Masking happens in the model's input space: an absent player's
pixels take the baseline value there. Cells that are not players stay present (default)
or absent in every masked input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # torch only for tensors: an ONNX analysis masks NumPy arrays
    import torch

Array = npt.NDArray[np.float32]

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

    def cell_of_pixel(self) -> npt.NDArray[np.int64]:
        """``[height, width]``: the cell each pixel belongs to."""
        r_of = np.searchsorted(self.row_edges[1:], np.arange(self.height), side="right")
        c_of = np.searchsorted(self.col_edges[1:], np.arange(self.width), side="right")
        return (r_of[:, None] * self.cols + c_of[None, :]).astype(np.int64)

    def cell_masks(self) -> torch.Tensor:
        """Boolean ``[n_cells, height, width]``: which pixels each cell covers."""
        import torch

        cell_of = torch.from_numpy(self.cell_of_pixel())
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
    the device of the coalitions: O(b·H·W); :meth:`present_pixels` does the same for NumPy.
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
        owner = np.full(grid.n_cells, len(cells), dtype=np.int64)
        owner[cells] = np.arange(len(cells))
        self._pixel_player = owner[grid.cell_of_pixel().reshape(-1)]
        self._on_device: dict[str, torch.Tensor] = {}

    @property
    def n(self) -> int:
        return len(self.cells)

    def pixel_presence(self, coalitions: torch.Tensor) -> torch.Tensor:
        """``[b, n]`` bool coalitions → ``[b, 1, H, W]`` float presence (a gather, no product)."""
        import torch

        device = coalitions.device
        b = coalitions.shape[0]
        others = torch.full((b, 1), float(self.others_present), device=device)
        extended = torch.cat([coalitions.to(torch.float32), others], dim=1)
        if str(device) not in self._on_device:
            self._on_device[str(device)] = torch.from_numpy(self._pixel_player).to(device)
        presence = torch.index_select(extended, 1, self._on_device[str(device)])
        return presence.view(b, 1, self.grid.height, self.grid.width)

    def present_pixels(self, coalitions: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """:meth:`pixel_presence` of NumPy coalitions ``[b, n]``, as booleans ``[b, 1, H, W]``
        (a strided view). The gather runs over rows of a transposed ``[n + 1, b]`` table:
        about twice as fast as gathering columns."""
        b = coalitions.shape[0]
        extended = np.empty((self.n + 1, b), dtype=bool)
        extended[: self.n] = coalitions.T
        extended[self.n] = self.others_present
        return extended[self._pixel_player].T.reshape(b, 1, self.grid.height, self.grid.width)


def make_baseline(
    x: torch.Tensor, kind: BaselineKind | torch.Tensor, *, blur_sigma: float | None = None
) -> torch.Tensor:
    """:func:`baseline_array` for a tensor, on its device and in its dtype (computed in
    float32 from the detached input: no gradient flows into a baseline); a tensor ``kind``
    is used as given (it must match the input's shape)."""
    import torch

    if isinstance(kind, torch.Tensor):
        _check_same_shape(tuple(kind.shape), tuple(x.shape))
        return kind.to(dtype=x.dtype, device=x.device)
    array = x.detach().to("cpu", torch.float32).numpy()
    baseline = torch.from_numpy(baseline_array(array, kind, blur_sigma=blur_sigma))
    return baseline.to(device=x.device, dtype=x.dtype)


def baseline_array(
    x: Array, kind: BaselineKind | Array, *, blur_sigma: float | None = None
) -> Array:
    """The baseline ``[C, H, W]`` that absent players take, in the model's input space.

    ``zero``: all zeros; ``mean``: each channel's mean over the input (summed in float64,
    rounded once to float32); ``blur``: the input
    blurred by a Gaussian of ``blur_sigma`` pixels (default ``max(H, W) / 8``), reflect
    padding; an array: used as given (it must match the input's shape). NumPy, float32:
    the one implementation, whether the model runs on arrays (ONNX) or tensors.
    """
    if isinstance(kind, np.ndarray):
        _check_same_shape(kind.shape, x.shape)
        return np.asarray(kind, dtype=np.float32)
    if kind == "zero":
        return np.zeros_like(x, dtype=np.float32)
    if kind == "mean":
        mean = x.mean(axis=(1, 2), keepdims=True, dtype=np.float64)  # then rounded once
        return np.broadcast_to(mean.astype(np.float32), x.shape).copy()
    if kind == "blur":
        return blur_array(x, blur_sigma or max(x.shape[1:]) / 8)
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")


def _check_same_shape(baseline: tuple[int, ...], x: tuple[int, ...]) -> None:
    if baseline != x:
        raise ValueError(f"the baseline image has shape {baseline}, the input {x}")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """:func:`blur_array` of a ``[C, H, W]`` tensor, on its device."""
    import torch

    blurred = blur_array(x.detach().to("cpu", torch.float32).numpy(), sigma)
    return torch.from_numpy(blurred).to(device=x.device, dtype=x.dtype)


def blur_array(x: Array, sigma: float) -> Array:
    """Separable Gaussian blur of a ``[C, H, W]`` image (kernel radius ⌈3σ⌉, at most one
    less than each side; reflect padding, the edge pixel not repeated)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    radius = min(radius, x.shape[1] - 1, x.shape[2] - 1) if min(x.shape[1:]) > 1 else 0
    x = np.asarray(x, dtype=np.float32)
    if radius == 0:
        return x.copy()
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-(t**2) / np.float32(2 * sigma**2))
    k = k / k.sum()
    h, w = x.shape[1:]
    img = np.pad(x, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    rows = sum(k[j] * img[:, :, j : j + w] for j in range(2 * radius + 1))
    out = sum(k[j] * rows[:, j : j + h, :] for j in range(2 * radius + 1))
    return np.asarray(out, dtype=np.float32)


def masked_inputs(x: torch.Tensor, baseline: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
    """``x_S = baseline + presence · (x − baseline)`` for a batch of presence maps."""
    import torch

    return torch.addcmul(baseline, presence, x - baseline)


def masked_arrays(x: Array, baseline: Array, present: npt.NDArray[np.bool_]) -> Array:
    """:func:`masked_inputs` in NumPy for boolean presence ``[b, 1, H, W]``, bit for bit.

    ``addcmul`` computes ``b + p·(x − b)`` per pixel with ``p`` 0 or 1: the product is
    exact (``±0`` or ``x − b``), so one rounding (of the sum) remains, with or without FMA.
    Both outcomes depend on the pixel alone, so they are computed once — ``b + 1·(x − b)``
    (not always ``x``) and ``b + 0·(x − b)`` (``b``, but for the sign of a zero and NaN
    from infinities) — and each input picks one: a selection, no arithmetic per input.
    """
    difference = np.subtract(x, baseline, dtype=np.float32)
    with np.errstate(invalid="ignore"):  # 0·inf is NaN in torch too
        absent = baseline + np.float32(0) * difference
    return np.where(present, baseline + difference, absent)
