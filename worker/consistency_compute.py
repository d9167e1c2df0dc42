"""The model-running half of a knowledge-consistency job (SCIENCE.md §8), run inside the model
sandbox: loaded networks and images in, metrics (JSON-ready) and per-channel variances out.

It imports nothing of the service: it runs where there is no database.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from conceptlens.aliases import ProgressFn
from conceptlens.components.consistency import ConsistencyPlan, knowledge_consistency
from conceptlens.components.features import Network


def compute_consistency(
    model_a: Network,
    layer_a: str,
    model_b: Network,
    layer_b: str,
    inputs_a: tuple[torch.Tensor, torch.Tensor],
    inputs_b: tuple[torch.Tensor, torch.Tensor],
    *,
    plan: ConsistencyPlan,
    device: torch.device,
    progress: ProgressFn,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Both directions' variances (``metrics``) and, per direction and image split, the
    per-channel variances ``[K + 2, C]`` of the feature, each order's part and the rest."""
    result = knowledge_consistency(
        model_a, layer_a, model_b, layer_b, *inputs_a, inputs_b=inputs_b, plan=plan,
        device=device, progress=progress,
    )  # fmt: skip
    metrics = {
        **result.to_dict(),
        "kind": "consistency",
        "n_train": len(inputs_a[0]),
        "n_test": len(inputs_a[1]),
    }
    arrays: dict[str, np.ndarray] = {"orders": np.array(result.a_from_b.orders)}
    for name, direction in (("a_from_b", result.a_from_b), ("b_from_a", result.b_from_a)):
        for split in ("train", "test"):
            arrays[f"{name}_{split}"] = direction.channel_variances(split).numpy()
    return metrics, arrays
