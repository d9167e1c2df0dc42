"""Component maps of one image for visualisation — SCIENCE.md §7.

"Visualise components of the most activated channel as heat maps per order": for an image
``x`` and a channel ``k`` of the feature map ``f(x) [C, H, W]``, the maps ``c^(l)(x)[k]`` of
every order, with ``Φ^(l)(x)[k]``, ``f(x)[k]`` and the residual ``(f − Φ^(l_max))(x)[k]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from conceptlens.aliases import FloatArray
from conceptlens.components.disentangler import TrainedOrder, predict_orders
from conceptlens.components.features import ComponentsError
from conceptlens.components.metrics import components

__all__ = [
    "ComponentMaps",
    "ImageMaps",
    "component_maps",
    "image_maps",
    "most_activated_channel",
]


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


@dataclass
class ImageMaps:
    """Maps of every channel for a batch of images (what a job stores for its views)."""

    orders: tuple[int, ...]
    components: FloatArray
    """``c^(l)(x)`` ``[N, orders, C, H, W]``."""
    features: FloatArray
    """``f(x)`` ``[N, C, H, W]``."""
    residuals: FloatArray
    """``(f − Φ^(l_max))(x)`` ``[N, C, H, W]``."""
    channels: list[int]
    """The most activated channel of each image."""

    def channel(self, index: int, channel: int | None = None) -> ComponentMaps:
        """The maps of image ``index`` at ``channel`` (default: its most activated one)."""
        k = self.channels[index] if channel is None else channel
        count = self.features.shape[1]
        if not 0 <= k < count:
            raise ComponentsError(f"channel {k} is outside 0..{count - 1}")
        comps = self.components[index, :, k]
        return ComponentMaps(
            channel=k,
            orders=self.orders,
            components=comps,
            cumulative=np.cumsum(comps, axis=0),
            feature=self.features[index, k],
            residual=self.residuals[index, k],
        )


def image_maps(
    trained: Sequence[TrainedOrder], images: torch.Tensor, features: torch.Tensor
) -> ImageMaps:
    """Component maps of every channel of ``images [N, C, H, W]`` with features ``[N, C', H', W']``.

    Cost: one forward pass of each order's net over the images; memory ``N·L·C'·H'·W'``.
    """
    f = features.detach().cpu()
    if f.dim() != 4:
        raise ComponentsError(
            f"component maps need a feature map [C, H, W]; this layer's feature is "
            f"{list(f.shape[1:])} (a flat feature has no spatial map)"
        )
    phis = predict_orders(trained, images).cpu()
    c, residual = components(phis, f.to(phis.dtype))
    return ImageMaps(
        orders=tuple(t.order for t in trained),
        components=c.transpose(0, 1).numpy(),
        features=f.numpy(),
        residuals=residual.numpy(),
        channels=[most_activated_channel(one) for one in f],
    )


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
    x = image.unsqueeze(0) if image.dim() == 3 else image
    f = feature.unsqueeze(0) if feature.dim() == 3 else feature
    if f.dim() != 4:
        f = f.unsqueeze(0)  # a flat feature: image_maps says why it has no map
    return image_maps(trained, x, f).channel(0, channel)
