"""The model-running half of a component job (SCIENCE.md §7), run inside the model sandbox.

:mod:`worker.components_job` reads rows and images and stores results; this module takes
the loaded networks and the images and returns the metrics (JSON-ready) and the component
maps (arrays). It imports nothing of the service: it runs where there is no database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from conceptlens.aliases import ProgressFn
from conceptlens.components.features import ComponentsError, Network, extract, feature_extractor
from conceptlens.components.maps import image_maps
from conceptlens.components.pipeline import Data, TrainingPlan, analyze_components

log = logging.getLogger(__name__)


def compute_components(
    module: Network,
    exemplars: Sequence[Network],
    layer: str,
    data: Data,
    *,
    labelled: bool,
    plan: TrainingPlan,
    device: torch.device,
    progress: ProgressFn,
    map_images: int,
    max_map_values: int,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics (with ``notes`` on what could not be measured and why) and the maps of the
    first ``map_images`` test images (see :func:`component_maps`)."""
    notes: dict[str, str] = {}
    if not labelled:
        notes["effects"] = "effectiveness and over-fitting need labels; this image set has none"
    try:
        result = analyze_components(
            module, layer, data, plan=plan, exemplars=exemplars, with_effects=labelled,
            device=device, progress=progress,
        )  # fmt: skip
    except ComponentsError as error:
        if not labelled or "after the layer" not in str(error):
            raise
        notes["effects"] = str(error)
        result = analyze_components(
            module, layer, data, plan=plan, exemplars=exemplars, with_effects=False,
            device=device, progress=progress,
        )  # fmt: skip
    if not exemplars:
        notes["reliability"] = "reliability needs a second model of the same task to compare with"
    try:
        maps = component_maps(module, layer, result, data[2][:map_images], max_map_values)
    except Exception as error:  # the metrics stand without the pictures
        log.warning("component maps failed: %s", error)
        maps, notes["maps"] = {}, f"the component maps could not be made ({error})"
    if not maps and "maps" not in notes:
        shape = "×".join(map(str, result.feature_shape))
        notes["maps"] = f"this layer's feature ({shape}) is flat: it has no spatial maps"
    metrics = {**result.to_dict(), "notes": notes, "n_train": len(data[0]), "n_test": len(data[2])}
    return metrics, maps


def component_maps(
    module: Network, layer: str, result: Any, images: torch.Tensor, max_values: int
) -> dict[str, np.ndarray]:
    """Component maps of a few test images (conv layers only): every channel when they fit in
    ``max_values``, else the most activated channel of each image."""
    features = extract(feature_extractor(module, layer), images)
    if features.dim() != 4:
        return {}
    maps = image_maps(result.trained, images, features)
    channels = np.array(maps.channels)
    if maps.components.size <= max_values:
        stored = np.tile(np.arange(features.shape[1]), (len(channels), 1))
        comps, feats, residuals = maps.components, maps.features, maps.residuals
    else:  # one channel per image, kept on a channel axis of length 1
        rows = np.arange(len(channels))
        stored = channels[:, None]
        comps = maps.components[rows, :, channels][:, :, None]
        feats = maps.features[rows, channels][:, None]
        residuals = maps.residuals[rows, channels][:, None]
    return {
        "orders": np.array(result.orders),
        "channels": channels,
        "stored_channels": stored,
        "images": images[:, 0].numpy() if images.shape[1] == 1 else images.mean(1).numpy(),
        "features": feats.astype(np.float32),
        "components": comps.astype(np.float32),
        "residuals": residuals.astype(np.float32),
    }
