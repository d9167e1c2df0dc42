"""Order losses that push a network towards or away from interactions of chosen orders —
SCIENCE.md §5 (seed 000, "breaking the representation bottleneck").

``Loss = Loss_cls + λ1·L+(r1, r2) + λ2·L−(r1, r2)``. For one image ``x`` of label ``y`` on
a patch grid of ``n`` players, draw ``S1 ⊂ S2 ⊆ N`` with ``|S1| = ⌊r1·n⌋`` and
``|S2| = ⌊r2·n⌋`` and take

    ``Δu = u(x_{S2}) − u(x_{S1})``,  ``u(x_S) = log_softmax(model(x_S))[y]``,

where ``x_S`` keeps the patches in ``S`` and puts the baseline elsewhere. By Harsanyi's
decomposition ``Δu = Σ_{T ⊆ S2, T ⊄ S1} I_u(T)``: the interactions that the players added
between ``S1`` and ``S2`` take part in, together with the context already in ``S1``.
``L+ = −E|Δu|`` rewards large such changes (it encourages interactions of orders around
``[r1·n, r2·n]``), ``L− = +E|Δu|`` penalises them.

Sampling: per image and per active term, ``samples`` pairs from one random permutation of
the players each — ``S2`` is its first ``⌊r2·n⌋`` players and ``S1`` the first ``⌊r1·n⌋``,
so ``S1`` is uniform among the subsets of its size and ``S2`` uniform among the supersets of
``S1`` of its size. Both masked inputs go through the model in one batch, so a term costs
``2·samples·B`` extra forward passes per batch of ``B`` (:func:`passes_per_batch`).

Choices where the paper is silent, fixed here: sizes are ``floor(r·n)`` with a 1e-9 guard
against rounding (``0.3·10`` is 3, not 2); a range whose two sizes coincide on the grid is
an error rather than a silent zero loss; the draws come from a ``torch.Generator`` on the
CPU (so a seed gives the same coalitions on any device); masking reuses
:class:`~conceptlens.players.Players` (cell edges ``round(k·H/rows)``); the ``mean``
baseline is each image's per-channel mean, as :func:`~conceptlens.players.make_baseline`.
A model with batch-dependent layers (BatchNorm in train mode) would mix the masked images'
statistics into the clean batch's; the project's architectures use none.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from conceptlens.players import PatchGrid, Players, masked_inputs

__all__ = [
    "ORDER_BASELINES",
    "OrderLossConfig",
    "OrderTerm",
    "coalition_sizes",
    "delta_u",
    "order_loss_terms",
    "passes_per_batch",
    "sample_coalitions",
]

ORDER_BASELINES: tuple[str, ...] = ("zero", "mean")
"""Baselines the order losses accept (the value absent patches take)."""


@dataclass(frozen=True)
class OrderTerm:
    """One loss term ``weight · L±(r1, r2)``: orders in ``[r1·n, r2·n]``, ``0 ≤ r1 < r2 ≤ 1``."""

    weight: float
    r1: float
    r2: float

    def __post_init__(self) -> None:
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise ValueError(f"the weight λ must be a finite number ≥ 0, got {self.weight}")
        if not 0 <= self.r1 < self.r2 <= 1:
            raise ValueError(f"need 0 ≤ r1 < r2 ≤ 1, got r1={self.r1}, r2={self.r2}")


@dataclass(frozen=True)
class OrderLossConfig:
    """The order losses of one training run.

    Attributes:
        grid: ``(rows, cols)`` patch grid on the image; ``n = rows·cols`` players.
        baseline: ``"zero"`` or ``"mean"`` (each image's per-channel mean).
        plus: ``λ1·L+(r1, r2)``, encouraging orders in ``[r1·n, r2·n]`` (None: off).
        minus: ``λ2·L−(r1, r2)``, penalising them (None: off).
        samples: pairs ``S1 ⊂ S2`` per image, per batch, per active term.
    """

    grid: tuple[int, int] = (4, 4)
    baseline: str = "zero"
    plus: OrderTerm | None = None
    minus: OrderTerm | None = None
    samples: int = 1

    def __post_init__(self) -> None:
        rows, cols = self.grid
        if rows < 1 or cols < 1:
            raise ValueError(f"the grid must be at least 1x1, got {self.grid}")
        if self.baseline not in ORDER_BASELINES:
            raise ValueError(
                f"unknown baseline {self.baseline!r}; choose one of {', '.join(ORDER_BASELINES)}"
            )
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")
        for term in self.terms().values():
            coalition_sizes(rows * cols, term.r1, term.r2)

    @property
    def n(self) -> int:
        """Number of players, ``rows·cols``."""
        return self.grid[0] * self.grid[1]

    def terms(self) -> dict[str, OrderTerm]:
        """The active terms by name (``"plus"``, ``"minus"``), in that order."""
        out: dict[str, OrderTerm] = {}
        if self.plus is not None:
            out["plus"] = self.plus
        if self.minus is not None:
            out["minus"] = self.minus
        return out


def coalition_sizes(n: int, r1: float, r2: float) -> tuple[int, int]:
    """``(|S1|, |S2|) = (⌊r1·n⌋, ⌊r2·n⌋)``; raises if they coincide (an empty range).

    Example:
        >>> coalition_sizes(16, 0.0, 0.25), coalition_sizes(10, 0.3, 0.7)
        ((0, 4), (3, 7))
    """
    if n < 1:
        raise ValueError("need at least one player")
    if not 0 <= r1 < r2 <= 1:
        raise ValueError(f"need 0 ≤ r1 < r2 ≤ 1, got r1={r1}, r2={r2}")
    k1, k2 = math.floor(r1 * n + 1e-9), math.floor(r2 * n + 1e-9)
    if k1 >= k2:
        raise ValueError(
            f"the range r1={r1}, r2={r2} is empty on {n} players: "
            f"⌊r1·n⌋ = ⌊r2·n⌋ = {k1}; widen it or use a finer grid"
        )
    return k1, k2


def sample_coalitions(
    n: int, r1: float, r2: float, count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random pairs ``S1 ⊂ S2``: two bool tensors ``[count, n]`` on the CPU.

    ``|S1| = ⌊r1·n⌋``, ``|S2| = ⌊r2·n⌋``; each pair comes from one uniformly random
    permutation (``S2`` its first ``|S2|`` players, ``S1`` its first ``|S1|``), drawn from
    ``generator`` (a CPU generator). Cost: one ``[count, n]`` sort.

    Example:
        >>> s1, s2 = sample_coalitions(8, 0.25, 0.75, 3, torch.Generator().manual_seed(0))
        >>> s1.sum(1).tolist(), s2.sum(1).tolist(), bool((s1 <= s2).all())
        ([2, 2, 2], [6, 6, 6], True)
    """
    k1, k2 = coalition_sizes(n, r1, r2)
    rank = torch.rand(count, n, generator=generator).argsort(dim=1).argsort(dim=1)
    return rank < k1, rank < k2


@functools.lru_cache(maxsize=32)
def _players(rows: int, cols: int, height: int, width: int) -> Players:
    return Players(PatchGrid(rows, cols, height=height, width=width))


def _baseline(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(ORDER_BASELINES)}")


def delta_u(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    s1: torch.Tensor,
    s2: torch.Tensor,
    grid: tuple[int, int],
    baseline: str,
) -> torch.Tensor:
    """``Δu = u(x_{S2}) − u(x_{S1})`` per image, ``[B]``, with ``u = log_softmax(model(·))[y]``.

    ``x [B, C, H, W]``, ``y [B]`` labels, ``s1``/``s2`` bool ``[B, n]`` (row ``b`` belongs to
    image ``b``), ``grid = (rows, cols)`` with ``rows·cols = n``. Absent patches take the
    baseline (``zero``, or each image's per-channel ``mean``). The ``2B`` masked inputs go
    through ``model`` in one call; the result is differentiable w.r.t. the model's
    parameters (and ``x``, if it requires grad).
    """
    b, _, h, w = x.shape
    players = _players(grid[0], grid[1], h, w)
    if s1.shape != (b, players.n) or s2.shape != (b, players.n):
        raise ValueError(
            f"coalitions must be [{b}, {players.n}] for a {grid[0]}x{grid[1]} grid, "
            f"got {tuple(s1.shape)} and {tuple(s2.shape)}"
        )
    base = _baseline(x, baseline)
    presence = players.pixel_presence(torch.cat([s1, s2]).to(x.device)).to(x.dtype)
    inputs = masked_inputs(torch.cat([x, x]), torch.cat([base, base]), presence)
    log_p = F.log_softmax(model(inputs), dim=1)
    labels = torch.cat([y, y]).to(x.device)
    u = log_p.gather(1, labels[:, None])[:, 0]
    return u[b:] - u[:b]


def order_loss_terms(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: OrderLossConfig,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """The active order losses on one batch, unweighted: ``{"plus": −E|Δu|, "minus": +E|Δu|}``.

    Each active term draws its own ``samples·B`` pairs (``plus`` first, then ``minus``) from
    ``generator``, over ``x`` repeated ``samples`` times; ``E`` is the mean over them. The
    caller multiplies by the weights (``config.plus.weight`` …). Cost: ``2·samples·B``
    forward passes per active term.
    """
    out: dict[str, torch.Tensor] = {}
    if not config.terms():
        return out
    reps = config.samples
    xs = x.repeat(reps, 1, 1, 1) if reps > 1 else x
    ys = y.repeat(reps) if reps > 1 else y
    for name, term in config.terms().items():
        s1, s2 = sample_coalitions(config.n, term.r1, term.r2, xs.shape[0], generator)
        strength = delta_u(model, xs, ys, s1, s2, config.grid, config.baseline).abs().mean()
        out[name] = -strength if name == "plus" else strength
    return out


def passes_per_batch(config: OrderLossConfig | None, batch: int) -> int:
    """Images through the model per training batch: ``B + 2·samples·B`` per active term.

    Example:
        >>> passes_per_batch(None, 32)
        32
        >>> passes_per_batch(OrderLossConfig(plus=OrderTerm(1.0, 0.0, 0.25)), 32)
        96
    """
    if config is None:
        return batch
    return batch + 2 * config.samples * batch * len(config.terms())
