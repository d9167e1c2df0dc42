"""Reliability as seed 001 measures it: one disentangler, parallel heads, cycle maps (§7).

For each order ``l`` one net is trained: a trunk with ``l`` ReLU layers (the stem and
residual blocks of :class:`.disentangler.Disentangler`) and *parallel heads*, one per model
— the target and each exemplary model — each head trained to mimic its model's feature at
the layer. The loss is the sum of the heads' standardised squared errors (each reads as
``1 − R²`` of its model), so the trunk is what the models' features can share through ``l``
ReLU layers, and the heads differ only by a linear map of it.

Then, with the nets fixed, the cycle: per exemplar ``E``, a linear map takes the target
head's output ``g_0`` to ``g_E`` and another takes ``g_E`` back (least squares on the
training images — the exact minimiser of each regressor's squared-error loss, which the
paper reaches by gradient steps). The part of ``g_0`` that survives the cycles through
every exemplar, in turn, is the *reliable* part ``ĝ_0``:
``ĝ_0 = g_0 · K_1 · K_2``, ``K_E = M_{0→E} M_{E→0}`` (:func:`.metrics.reliability`).
Reliability, on held-out images: ``Var[ĝ^(l)] / Var[g^(l)]`` (``cumulative``) and, for the
components, ``Var[ĝ^(l) − ĝ^(l_prev)] / Var[g^(l) − g^(l_prev)]`` (``component``), each capped at 1.

Choices where the paper is vague are in ``docs/science.md`` §7. Cost: one training of the
orders with ``1 + len(exemplars)`` heads (the trunk is shared, so about the cost of one
disentangler training, not ``1 + len(exemplars)`` of them), plus ``C×C`` solves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from conceptlens.aliases import ProgressFn
from conceptlens.components.disentangler import Disentangler, _order_seed, _reproducible
from conceptlens.components.features import ComponentsError
from conceptlens.components.metrics import Reliability, reliability
from conceptlens.components.stats import r_squared

__all__ = ["CycleReliability", "SharedDisentangler", "cycle_reliability"]


class SharedDisentangler(nn.Module):
    """A trunk of ``order`` ReLU layers with one head per model (target first).

    Every model's feature needs the target's spatial size (feature maps) or is flat.

    Example:
        >>> net = SharedDisentangler((1, 16, 16), [(32, 8, 8), (16, 8, 8)], order=1, width=8)
        >>> [o.shape[1] for o in net(torch.zeros(2, 1, 16, 16))]
        [32, 16]
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        feature_shapes: Sequence[tuple[int, ...]],
        *,
        order: int,
        width: int,
    ) -> None:
        super().__init__()
        target, *others = feature_shapes
        for shape in others:
            if len(shape) != len(target) or (len(shape) == 3 and shape[1:] != target[1:]):
                raise ComponentsError(
                    f"an exemplary model's feature {list(shape)} does not line up with the "
                    f"target's {list(target)}: feature maps need the same height and width"
                )
        # each model's own Disentangler gives its head and its affine output scales; the
        # trunk (stem and blocks) of the first one is shared by all heads
        self.nets = nn.ModuleList(
            Disentangler(input_shape, shape, order=order, width=width) for shape in feature_shapes
        )
        # heads start equal where their shapes agree: they then differ only by what their
        # models' features teach them (identical features give identical heads)
        first = self.models()[0].head.state_dict()
        for n in self.models()[1:]:
            own = n.head.state_dict()
            if all(own[k].shape == v.shape for k, v in first.items()):
                n.head.load_state_dict(first)

    def models(self) -> list[Disentangler]:
        """Each model's :class:`Disentangler` (its head and scales; the first one's trunk)."""
        return [cast(Disentangler, n) for n in self.nets]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [
            s * n.f_scale + n.f_shift
            for s, n in zip(self.standardised(x), self.models(), strict=True)
        ]

    def standardised(self, x: torch.Tensor) -> list[torch.Tensor]:
        trunk = self.models()[0]
        h = trunk.blocks(trunk.stem(trunk.resample((x - trunk.x_shift) / trunk.x_scale)))
        return [n.head(h) for n in self.models()]

    def parameters_used(self) -> list[nn.Parameter]:
        trunk, *others = self.models()
        used = [*trunk.parameters()]
        for n in others:
            used += [*n.head.parameters()]
        return used


@dataclass
class CycleReliability:
    """The estimator's result, aligned with ``orders``."""

    reliability: Reliability
    head_r2: list[list[float]]
    """Held-out ``R²`` of each head (target first) per order: how well the shared trunk
    mimics each model."""


def cycle_reliability(
    x_train: torch.Tensor,
    features_train: Sequence[torch.Tensor],
    x_test: torch.Tensor,
    features_test: Sequence[torch.Tensor],
    *,
    orders: Sequence[int],
    width: int = 32,
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> CycleReliability:
    """Reliability of the target's components against the exemplary models (seed 001).

    ``features_*`` are the models' features at the layer on the same images, the target's
    first, then one or more exemplars'. Trained as :func:`.disentangler.train_disentanglers`
    trains (Adam, cosine decay, seeded batches, warm start from the previous order, one
    thread with deterministic kernels on the CPU). ``progress(done, len(orders)·epochs)``.
    """
    if len(features_train) < 2 or len(features_train) != len(features_test):
        raise ComponentsError("reliability needs the target's feature and an exemplar's")
    dev = torch.device(device)
    xs = (x_train.to(dev, torch.float32), x_test.to(dev, torch.float32))
    f_train = [f.to(dev, torch.float32) for f in features_train]
    f_test = [f.to(dev, torch.float32) for f in features_test]
    if any(len(f) != len(xs[0]) for f in f_train) or any(len(f) != len(xs[1]) for f in f_test):
        raise ComponentsError("every model needs its feature on the same images")
    total = len(orders) * epochs
    outs_train: list[list[torch.Tensor]] = [[] for _ in f_train]
    outs_test: list[list[torch.Tensor]] = [[] for _ in f_train]
    head_r2 = []
    previous: SharedDisentangler | None = None
    with _reproducible(dev):
        for k, order in enumerate(orders):
            torch.default_generator.manual_seed(_order_seed(seed, order))
            net = SharedDisentangler(
                (xs[0].shape[1], xs[0].shape[2], xs[0].shape[3]),
                [tuple(f.shape[1:]) for f in f_train], order=order, width=width,
            ).to(dev)  # fmt: skip
            for n, f in zip(net.models(), f_train, strict=True):
                n.fit_scales(xs[0], f)
            if previous is not None:  # starts equal to the previous order's net
                net.load_state_dict(previous.state_dict(), strict=False)
            targets = [
                (f - n.f_shift) / n.f_scale for f, n in zip(f_train, net.models(), strict=True)
            ]

            def tick(epoch: int, offset: int = k * epochs) -> None:
                if progress is not None:
                    progress(offset + epoch, total)

            _fit(net, xs[0], targets, lr, epochs, batch_size, _order_seed(seed, order), tick)
            pred_train, pred_test = _predict(net, xs[0]), _predict(net, xs[1])
            for i in range(len(f_train)):
                outs_train[i].append(pred_train[i].cpu())
                outs_test[i].append(pred_test[i].cpu())
            head_r2.append([r_squared(p, f) for p, f in zip(pred_test, f_test, strict=True)])
            previous = net
    stacked_train = [torch.stack(o) for o in outs_train]
    stacked_test = [torch.stack(o) for o in outs_test]
    shares = reliability(stacked_train[0], stacked_test[0], stacked_train[1:], stacked_test[1:])
    # maps fitted on the training images can amplify held-out variance a little: a share
    # over 1 means "all of it" (NaN, no variance to share, stays NaN)
    capped = Reliability(
        cumulative=np.minimum(shares.cumulative, 1.0), component=np.minimum(shares.component, 1.0)
    )
    return CycleReliability(reliability=capped, head_r2=head_r2)


def _fit(
    net: SharedDisentangler,
    x: torch.Tensor,
    targets: list[torch.Tensor],
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[int], None],
) -> None:
    """Adam on the sum of the heads' standardised squared errors, cosine-decayed."""
    steps = max(1, epochs * math.ceil(len(x) / batch_size))
    fused = x.device.type in ("cpu", "cuda")
    optimiser = torch.optim.Adam(net.parameters_used(), lr=lr, fused=fused or None)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    )
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=gen).to(x.device)
        xs = x[perm]
        ts = [t[perm] for t in targets]
        for start in range(0, len(x), batch_size):
            outs = net.standardised(xs[start : start + batch_size])
            loss = sum(
                (
                    F.mse_loss(o, t[start : start + batch_size])
                    for o, t in zip(outs, ts, strict=True)
                ),
                torch.zeros((), device=x.device),
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
        on_epoch(epoch + 1)
    net.eval()


def _predict(net: SharedDisentangler, x: torch.Tensor, batch: int = 512) -> list[torch.Tensor]:
    net.eval()
    with torch.inference_mode():
        parts = [net(b) for b in x.split(batch)]
    return [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))]
