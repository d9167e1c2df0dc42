"""The learned baseline ("baseline sparsifier", seed 002's line of work; SCIENCE.md §3).

An absent patch shows the baseline; which baseline decides how sparse the interactions are
(a mean-colour baseline paints squares a network never saw, and its interactions come out
dense). Here the baseline value ``b`` of every input value is a parameter, kept inside
``[b₀ − r, b₀ + r]`` around a starting baseline ``b₀`` (e.g. the mean one; ``r`` in input
units after normalisation), and learned by gradient steps on

``L(b) = Σ_{S≠∅} |I(S | x, b)|``,  ``I = M v``, ``v(S) = f(model(x_S(b)))``,

through the masked model: every step evaluates all ``2^n`` masked inputs with gradients, so
it needs a differentiable (torch) model and few players. ``M`` is the Möbius transform,
written here with out-of-place tensor operations (O(n·2^n)) so that autograd follows it.
Adam on the L1 sub-gradient, with the step projected back into the box; the best iterate
is kept, and the starting baseline counts as one, so ``L`` never ends above ``L(b₀)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from conceptlens.aliases import ProgressFn
from conceptlens.outputs import OutputKind
from conceptlens.players import Players, masked_inputs

Predict = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LearnedBaseline:
    baseline: np.ndarray
    """``[C, H, W]`` float32, in the model's input space."""
    loss_before: float
    """``Σ_{S≠∅}|I(S)|`` with the starting baseline."""
    loss_after: float
    """The same with the learned one (never larger)."""
    history: list[float]
    """The loss at every step (before that step's update)."""
    steps: int
    radius: float


def mobius(v: torch.Tensor, n: int) -> torch.Tensor:
    """``I = M v`` for a bitmask-indexed ``[2^n]`` tensor, differentiable (no in-place op).

    Example:
        >>> mobius(torch.tensor([1.0, 3.0, 4.0, 10.0]), 2).tolist()   # v(∅), v(0), v(1), v(01)
        [1.0, 2.0, 3.0, 4.0]
    """
    table = v.reshape((2,) * n) if n else v
    for axis in range(n):
        low, high = table.unbind(axis)
        table = torch.stack([low, high - low], dim=axis)
    return table.reshape(-1)


def output_torch(logits: torch.Tensor, target: int, kind: OutputKind) -> torch.Tensor:
    """:func:`conceptlens.outputs.output_values` in torch (differentiable), ``[b]``."""
    if logits.shape[-1] == 1:  # one logit: the log-odds of class 1 against class 0
        logits = torch.cat([torch.zeros_like(logits), logits], dim=-1)
    z = logits.double()
    if kind == "logit":
        return z[:, target]
    if kind == "prob":
        return torch.softmax(z, dim=-1)[:, target]
    if kind == "log-prob":
        return torch.log_softmax(z, dim=-1)[:, target]
    others = torch.cat([z[:, :target], z[:, target + 1 :]], dim=-1)
    return z[:, target] - torch.logsumexp(others, dim=-1)


def learn_baseline(
    predict: Predict,
    x: torch.Tensor,
    players: Players,
    start: torch.Tensor,
    *,
    target: int,
    output: OutputKind = "log-odds",
    radius: float = 0.5,
    steps: int = 100,
    lr: float = 0.02,
    batch_size: int = 1024,
    progress: ProgressFn | None = None,
) -> LearnedBaseline:
    """Learn the baseline of ``x`` (``[C, H, W]``) within ``start ± radius``.

    ``lr`` is relative to ``radius`` (Adam's step is about ``lr·radius`` per value). Cost:
    ``steps + 1`` evaluations of all ``2^n`` masked inputs, with a backward pass each.
    """
    n = players.n
    if radius < 0 or steps < 0:
        raise ValueError("the radius and the number of steps must not be negative")
    masks = torch.arange(1 << n)
    coalitions = ((masks[:, None] >> torch.arange(n)) & 1).bool()
    presence = players.pixel_presence(coalitions)
    x = x.float()
    low, high = start.float() - radius, start.float() + radius
    b = start.float().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([b], lr=lr * max(radius, 1e-12))

    def loss_of(baseline: torch.Tensor) -> torch.Tensor:
        values = torch.cat(
            [
                output_torch(predict(masked_inputs(x, baseline, presence[k : k + batch_size])),
                             target, output)
                for k in range(0, 1 << n, batch_size)
            ]
        )  # fmt: skip
        return mobius(values, n)[1:].abs().sum()

    history: list[float] = []
    best, best_b = float("inf"), start.float().clone()
    for step in range(steps + 1):
        optimiser.zero_grad()
        loss = loss_of(b)
        value = float(loss.detach())
        history.append(value)
        if value < best:
            best, best_b = value, b.detach().clone()
        if step == steps:
            break
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            b.copy_(torch.minimum(torch.maximum(b, low), high))
        if progress is not None:
            progress(step + 1, steps)
    return LearnedBaseline(
        baseline=best_b.numpy().astype(np.float32),
        loss_before=history[0],
        loss_after=best,
        history=history,
        steps=steps,
        radius=radius,
    )
