"""ConceptLens engine: exact Harsanyi interactions, AND-OR interactions, multi-order
interactions and the order-strength curve, sparsity — a pure torch/NumPy library.

Arrays and modules in, arrays out; nothing here imports the web service, the database or
Celery. Tables over subsets are indexed by bitmask (bit ``i`` set ⇔ player ``i`` present).

Example:
    >>> import numpy as np
    >>> from conceptlens import harsanyi, multi_order, zeta
    >>> v = np.random.default_rng(0).normal(size=2**6)
    >>> I = harsanyi(v)
    >>> bool(np.allclose(zeta(I), v))
    True
    >>> multi_order(I).shape
    (5, 6, 6)
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conceptlens.analysis import ENGINE_VERSION, InteractionResult, interactions_from_logits
    from conceptlens.and_or import AndOrResult, and_or_interactions
    from conceptlens.client import Client, ClientError
    from conceptlens.game import CallableGame, MaskedModelGame, logit_table, value_table
    from conceptlens.memory import release_heap, reuse_heap
    from conceptlens.outputs import output_values
    from conceptlens.pairwise import (
        multi_order,
        relative_strength,
        shapley_interaction,
        theory_curve,
    )
    from conceptlens.players import PatchGrid, Players, make_baseline
    from conceptlens.sampled_plan import PlanPart, SampledPlan, run_plan
    from conceptlens.sampling import paper_estimator, sample_multi_order
    from conceptlens.sparsity import salient_counts, top_k
    from conceptlens.transforms import faithfulness_residual, harsanyi, zeta

#: Where each public name lives: imported on first use, so that importing one torch-free
#: module (e.g. :mod:`conceptlens.sampled_plan`, which the API uses for cost estimates) does
#: not import torch, and ``conceptlens.Client`` (the HTTP API's client) imports neither torch
#: nor the web code.
_WHERE = {
    "AndOrResult": "conceptlens.and_or",
    "CallableGame": "conceptlens.game",
    "Client": "conceptlens.client",
    "ClientError": "conceptlens.client",
    "ENGINE_VERSION": "conceptlens.analysis",
    "InteractionResult": "conceptlens.analysis",
    "MaskedModelGame": "conceptlens.game",
    "PatchGrid": "conceptlens.players",
    "PlanPart": "conceptlens.sampled_plan",
    "SampledPlan": "conceptlens.sampled_plan",
    "run_plan": "conceptlens.sampled_plan",
    "Players": "conceptlens.players",
    "and_or_interactions": "conceptlens.and_or",
    "faithfulness_residual": "conceptlens.transforms",
    "harsanyi": "conceptlens.transforms",
    "interactions_from_logits": "conceptlens.analysis",
    "logit_table": "conceptlens.game",
    "make_baseline": "conceptlens.players",
    "multi_order": "conceptlens.pairwise",
    "output_values": "conceptlens.outputs",
    "paper_estimator": "conceptlens.sampling",
    "relative_strength": "conceptlens.pairwise",
    "release_heap": "conceptlens.memory",
    "reuse_heap": "conceptlens.memory",
    "salient_counts": "conceptlens.sparsity",
    "sample_multi_order": "conceptlens.sampling",
    "shapley_interaction": "conceptlens.pairwise",
    "theory_curve": "conceptlens.pairwise",
    "top_k": "conceptlens.sparsity",
    "value_table": "conceptlens.game",
    "zeta": "conceptlens.transforms",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'conceptlens' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ENGINE_VERSION",
    "AndOrResult",
    "CallableGame",
    "Client",
    "ClientError",
    "InteractionResult",
    "MaskedModelGame",
    "PatchGrid",
    "PlanPart",
    "Players",
    "SampledPlan",
    "and_or_interactions",
    "faithfulness_residual",
    "harsanyi",
    "interactions_from_logits",
    "logit_table",
    "make_baseline",
    "multi_order",
    "output_values",
    "paper_estimator",
    "relative_strength",
    "release_heap",
    "reuse_heap",
    "run_plan",
    "salient_counts",
    "sample_multi_order",
    "shapley_interaction",
    "theory_curve",
    "top_k",
    "value_table",
    "zeta",
]
