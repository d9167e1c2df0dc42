"""Component maps of one image for visualisation — SCIENCE.md §7.

"Visualise components of the most activated channel as heat maps per order": for an image
``x`` and a channel ``k`` of the feature map ``f(x) [C, H, W]``, the maps ``c^(l)(x)[k]`` of
every order, with ``Φ^(l)(x)[k]``, ``f(x)[k]`` and the residual ``(f − Φ^(l_max))(x)[k]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from worker.engine.aliases import FloatArray
from worker.engine.components.disentangler import TrainedOrder, predict_orders
from worker.engine.components.features import ComponentsError
from worker.engine.components.metrics import components

__all__ = ["ComponentMaps", "component_maps", "most_activated_channel"]


@dataclass
class ComponentMaps:
    """Heat maps of one channel: ``components``/``cumulative`` are ``[orders, H, W]``."""

    channel: int
    orders: tuple[int, ...]
    components: FloatArray
    """``c^(l)(x)[channel]`` per order."""
    cumulative: FloatArray
    """``Φ^(l)(x)[channel]`` per order."""
    feature: FloatArray
    """``f(x)[channel]`` ``[H, W]``."""
    residual: FloatArray
    """``(f − Φ^(l_max))(x)[channel]`` ``[H, W]``."""


def most_activated_channel(feature: torch.Tensor) -> int:
    """The channel of ``feature [C, H, W]`` with the largest mean activation over ``H×W``.

    Example:
        >>> most_activated_channel(torch.stack([torch.zeros(2, 2), torch.ones(2, 2)]))
        1
    """
    return int(feature.detach().flatten(1).mean(dim=1).argmax())


def component_maps(
    trained: Sequence[TrainedOrder],
    image: torch.Tensor,
    feature: torch.Tensor,
    *,
    channel: int | None = None,
) -> ComponentMaps:
    """Component maps of ``channel`` (default: the most activated) for one image.

    ``image`` is ``[C, H, W]`` (or ``[1, C, H, W]``), ``feature`` its target feature map
    ``f(x)`` ``[C', H', W']`` (or with a batch axis of 1). Cost: one forward pass per order.
    """
    f = feature.detach()[0] if feature.dim() == 4 else feature.detach()
    if f.dim() != 3:
        raise ComponentsError(
            f"component maps need a feature map [C, H, W]; this layer's feature is "
            f"{list(f.shape)} (a flat feature has no spatial map)"
        )
    k = most_activated_channel(f) if channel is None else channel
    if not 0 <= k < f.shape[0]:
        raise ComponentsError(f"channel {k} is outside 0..{f.shape[0] - 1}")
    x = image.unsqueeze(0) if image.dim() == 3 else image
    phis = predict_orders(trained, x).cpu()[:, 0]
    c, residual = components(phis.unsqueeze(1), f.cpu().unsqueeze(0).to(phis.dtype))
    return ComponentMaps(
        channel=k,
        orders=tuple(t.order for t in trained),
        components=c[:, 0, k].numpy(),
        cumulative=phis[:, k].numpy(),
        feature=f[k].cpu().numpy(),
        residual=residual[0, k].numpy(),
    )
