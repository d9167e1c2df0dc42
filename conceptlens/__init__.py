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

from conceptlens.analysis import ENGINE_VERSION, InteractionResult, interactions_from_logits
from conceptlens.and_or import AndOrResult, and_or_interactions
from conceptlens.game import CallableGame, MaskedModelGame, logit_table, value_table
from conceptlens.outputs import output_values
from conceptlens.pairwise import (
    multi_order,
    relative_strength,
    shapley_interaction,
    theory_curve,
)
from conceptlens.players import PatchGrid, Players, make_baseline
from conceptlens.sampling import paper_estimator, sample_multi_order
from conceptlens.sparsity import salient_counts, top_k
from conceptlens.transforms import faithfulness_residual, harsanyi, zeta

__all__ = [
    "ENGINE_VERSION",
    "AndOrResult",
    "CallableGame",
    "InteractionResult",
    "MaskedModelGame",
    "PatchGrid",
    "Players",
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
    "salient_counts",
    "sample_multi_order",
    "shapley_interaction",
    "theory_curve",
    "top_k",
    "value_table",
    "zeta",
]
