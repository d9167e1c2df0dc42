"""Plots for notebooks: the dashboard's own charts, drawn from engine results.

Each function takes :class:`~conceptlens.analysis.InteractionResult` objects (what
:func:`~conceptlens.interactions_from_logits` returns) and hands the numbers to the same
builders the web page uses (:mod:`conceptlens.figures`), so a notebook and the page show
the same chart for the same result. Each returns a :class:`plotly.graph_objects.Figure`:
display it by leaving it last in a cell, or call ``.show()`` / ``.write_html(path)`` /
``.write_image(path)`` (the latter needs ``kaleido``).

Never imports the web service (``backend``) or the workers.

Example:
    >>> import numpy as np
    >>> from conceptlens import interactions_from_logits
    >>> from conceptlens.plots import order_strength
    >>> logits = np.random.default_rng(0).normal(size=(2**5, 3))
    >>> fig = order_strength(interactions_from_logits(logits))
    >>> [trace.name for trace in fig.data]
    ['theory F<sup>(m)</sup>', 'J<sup>(m)</sup>']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from conceptlens import figures
from conceptlens.pairwise import relative_strength
from conceptlens.sparsity import salient_counts

if TYPE_CHECKING:
    from conceptlens.analysis import InteractionResult

__all__ = ["dashboard", "order_strength", "pair_interaction", "salient_per_order"]


def order_strength(
    results: InteractionResult | Sequence[InteractionResult],
    *,
    labels: Sequence[str] | None = None,
) -> go.Figure:
    """The order-strength curve ``J^(m)`` against ``m/n``, with the theory ``F^(m)`` (dashed).

    ``J^(m)`` is the mean strength ``E_{i<j}|I^(m)(i,j)|`` of the pairwise interactions at
    context size ``m``, divided by its mean over ``m`` (so 1 is average). A curve high at both
    ends and low in the middle is the "bottleneck" of SCIENCE.md §4: the model encodes
    simple (small ``m``) and complex (large ``m``) interactions more than middle ones.
    ``F^(m)`` is what i.i.d. values would give, drawn on the same scale for comparison.

    Several results (one per image): ``J`` is computed as the web service does for a set of
    images (per-order strengths averaged over the images, then normalised), and each image's
    own ``J`` is a thin grey line, named by ``labels`` on hover. All must have the same
    number of players.
    """
    many = list(results) if isinstance(results, Sequence) else [results]
    if not many:
        raise ValueError("order_strength needs at least one result")
    n = many[0].n
    if any(r.n != n for r in many):
        raise ValueError("all results must have the same number of players")
    if len(many) == 1:
        j_values = many[0].J
        per_image = None
    else:
        j_values = relative_strength(np.stack([r.strength for r in many]))
        per_image = np.stack([r.J for r in many])
    return go.Figure(
        figures.order_strength_curve(j_values, many[0].F, n, per_image=per_image, labels=labels)
    )


def salient_per_order(result: InteractionResult, *, tau: float | None = None) -> go.Figure:
    """Counts ``R^(k)`` of salient interactions per order ``k = |S|`` (SCIENCE.md §3).

    An interaction ``I(S)`` (``S ≠ ∅``) is salient when ``|I(S)|`` is at least ``tau`` times
    the largest one; ``tau`` defaults to the result's own (``result.tau``). Positive ones are
    red bars upward, negative ones blue bars downward (the hover shows the count). A sparse
    model has few bars, mostly at low orders.
    """
    if tau is None or tau == result.tau:
        tau, positive, negative = result.tau, result.salient_positive, result.salient_negative
    else:
        counts = salient_counts(result.interactions, tau)
        positive, negative = counts.positive, counts.negative
    return go.Figure(figures.salient_by_order(positive, negative, tau))


def pair_interaction(result: InteractionResult, i: int, j: int) -> go.Figure:
    """The multi-order interaction ``I^(m)(i,j)`` of players ``i`` and ``j`` against ``m``.

    ``I^(m)(i,j)`` is the average interaction of the pair within contexts of ``m`` other
    players (SCIENCE.md §4): markers red where the pair cooperates (positive), blue where it
    competes (negative). ``m`` runs ``0 … n−2``.
    """
    n = result.n
    if not (0 <= i < n and 0 <= j < n) or i == j:
        raise ValueError(f"i and j must be two different players in 0 … {n - 1}, got {i}, {j}")
    return go.Figure(figures.pair_curve(result.multi_order[:, i, j], n, i, j))


def dashboard(result: InteractionResult) -> dict[str, go.Figure]:
    """The four charts the web page shows for one image, by name (``figures.FIGURE_NAMES``).

    ``"curve"`` (as :func:`order_strength`), ``"salient"`` (as :func:`salient_per_order`),
    ``"sparsity"`` (the normalised strengths ``|I(S)|/max|I|`` sorted descending on a log
    axis, with ``τ`` dashed: a sparse model drops steeply) and ``"average_output"`` (the
    mean output ``ū(m)`` of coalitions of ``m`` players, relative to the empty one; the title
    gives the monotonicity exponent ``p`` when finite).
    """
    built = figures.result_figures(result.arrays(), result.summary())
    return {name: go.Figure(figure) for name, figure in built.items()}
