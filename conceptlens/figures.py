"""Plotly figures built from results — the dashboard's charts as JSON.

The web service (:mod:`backend.figures` re-exports this module) and the notebook helpers of
:mod:`conceptlens.plots` draw with these same builders.

Every public function takes plain arrays and returns a JSON-safe ``{"data", "layout"}`` dict
made with plotly's Python API, ready for ``Plotly.react(div, fig.data, fig.layout)`` in the
browser (the mode bar there does PNG/SVG export). Arrays are handed to plotly as plain lists
(non-finite entries as ``null``), so the JSON holds lists rather than plotly's base64 typed
arrays. Imports only numpy and plotly: never torch, never ``backend`` or ``worker``.

Colours are fixed across figures: positive interactions :data:`POSITIVE` (red), negative
:data:`NEGATIVE` (blue); measured curves :data:`MEASURED`, theory and thresholds
:data:`REFERENCE`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go

POSITIVE = "#d62728"
NEGATIVE = "#1f77b4"
MEASURED = "#2a2a2a"
REFERENCE = "#7f7f7f"
SELECTED = "#111111"
DEFAULT_TAU = 0.05

FIGURE_NAMES = ("curve", "salient", "sparsity", "average_output")
"""The figures :func:`result_figures` builds from one stored result alone."""

_FONT = {
    "family": "Inter, system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif",
    "size": 13,
    "color": MEASURED,
}
_NUMBER = ".6~g"  # d3-format for hover values: six significant digits, no trailing zeros

Figure = dict[str, Any]
FloatVector = npt.NDArray[np.float64]


# --- shared helpers -------------------------------------------------------------------------


def _vector(values: npt.ArrayLike, name: str) -> FloatVector:
    """``values`` as a 1-D float64 array; ``ValueError`` names ``name`` otherwise."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _same_length(reference: FloatVector, other: FloatVector, name: str) -> None:
    if other.shape != reference.shape:
        raise ValueError(f"{name} must have length {reference.size}, got shape {other.shape}")


def _plain(array: npt.NDArray[Any]) -> list[Any]:
    """Nested Python lists with ``None`` for NaN/±inf (valid JSON, gaps in plotly)."""
    out = np.asarray(array).astype(object)
    out[~np.isfinite(np.asarray(array, dtype=np.float64))] = None
    result: list[Any] = out.tolist()
    return result


def _orders(count: int, orders: npt.ArrayLike | None, name: str) -> npt.NDArray[np.int64]:
    """The orders ``m`` of ``count`` values: ``0 … count−1`` unless given explicitly."""
    if orders is None:
        return np.arange(count, dtype=np.int64)
    out = np.asarray(orders, dtype=np.int64)
    if out.shape != (count,):
        raise ValueError(f"orders must have length {count} like {name}, got shape {out.shape}")
    return out


def _is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _error_y(stderr: npt.ArrayLike | None, like: FloatVector) -> dict[str, Any] | None:
    """Symmetric error bars of one standard error, or ``None`` without ``stderr``."""
    if stderr is None:
        return None
    array = _vector(stderr, "stderr")
    _same_length(like, array, "stderr")
    return {"type": "data", "array": _plain(array), "visible": True, "thickness": 1, "width": 3}


def _sign_colours(values: FloatVector) -> list[str]:
    return [POSITIVE if v > 0 else NEGATIVE if v < 0 else REFERENCE for v in values.tolist()]


def _layout(title: str, x_title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    """The one layout every figure shares; ``xaxis`` / ``yaxis`` in ``extra`` are merged in."""
    layout: dict[str, Any] = {
        "template": "plotly_white",
        "autosize": True,
        "font": _FONT,
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        "margin": {"l": 64, "r": 24, "t": 72, "b": 56},
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
        "hovermode": "closest",
        "hoverlabel": {"namelength": -1},
        "xaxis": {"title": {"text": x_title}, "automargin": True},
        "yaxis": {"title": {"text": y_title}, "automargin": True},
    }
    for axis in ("xaxis", "yaxis"):
        layout[axis].update(extra.pop(axis, {}))
    layout.update(extra)
    return layout


def _integer_axis(span: float) -> dict[str, Any]:
    """An axis of whole numbers (orders, counts, ranks) spanning ``span`` units: ticks only
    on whole numbers — every one up to 10 units, every other one up to 20, Plotly's own
    steps (whole above 20 units) beyond — and labels without decimals."""
    axis: dict[str, Any] = {"tickformat": ",d"}
    if span <= 10:
        axis.update(tick0=0, dtick=1)
    elif span <= 20:
        axis.update(tick0=0, dtick=2)
    return axis


def _zero_line() -> dict[str, Any]:
    return {"zeroline": True, "zerolinecolor": REFERENCE, "zerolinewidth": 1}


def _figure(traces: Sequence[go.Scatter | go.Bar | go.Heatmap], layout: dict[str, Any]) -> Figure:
    """The figure as JSON-safe dicts (what ``Plotly.react`` takes)."""
    figure: Figure = json.loads(go.Figure(data=list(traces), layout=layout).to_json())
    return figure


def _curve(
    x: npt.ArrayLike,
    y: FloatVector,
    *,
    name: str,
    colour: str,
    hover: str,
    mode: str = "lines+markers",
    dash: str = "solid",
    width: float = 2,
    marker: dict[str, Any] | None = None,
    **style: Any,
) -> go.Scatter:
    """A line trace of ``y`` against ``x`` (lists, not numpy, in the JSON)."""
    return go.Scatter(
        x=_plain(np.asarray(x)),
        y=_plain(y),
        mode=mode,
        name=name,
        line={"color": colour, "width": width, "dash": dash},
        marker=marker or {"color": colour, "size": 6},
        hovertemplate=hover,
        **style,
    )


def _signed_bars(
    positive: npt.ArrayLike,
    negative: npt.ArrayLike,
    *,
    title: str,
    y_title: str,
    value: str,
    whole: bool = False,
) -> Figure:
    """Per-order bars: ``positive`` upward in red, ``negative`` drawn downward in blue.

    Both inputs are non-negative amounts (counts, summed strengths) per order ``k = 0 … n``;
    the negative trace plots ``−negative`` and keeps the amount itself for the hover text.
    ``whole``: the amounts are counts (whole-number ticks on the value axis too).
    """
    pos, neg = _vector(positive, "positive"), _vector(negative, "negative")
    _same_length(pos, neg, "negative")
    if (pos < 0).any() or (neg < 0).any():
        raise ValueError("positive and negative amounts must be non-negative")
    k = np.arange(pos.size)
    traces = [
        go.Bar(
            x=_plain(k),
            y=_plain(sign * amount),
            customdata=_plain(amount),
            name=f"{label} I(S)",
            marker={"color": colour},
            hovertemplate=f"order k = %{{x}}<br>{label} {value}: %{{customdata:{_NUMBER}}}"
            "<extra></extra>",
        )
        for label, sign, amount, colour in (
            ("positive", 1.0, pos, POSITIVE),
            ("negative", -1.0, neg, NEGATIVE),
        )
    ]
    yaxis = _zero_line()
    if whole:
        yaxis.update(_integer_axis(float(pos.max(initial=0) + neg.max(initial=0))))
    layout = _layout(
        title,
        "order k = |S|",
        y_title,
        xaxis=_integer_axis(k.size - 1),
        yaxis=yaxis,
        barmode="relative",
        bargap=0.15,
    )
    return _figure(traces, layout)


# --- figures --------------------------------------------------------------------------------


def order_strength_curve(
    J: npt.ArrayLike,
    F: npt.ArrayLike,
    n: int,
    *,
    per_image: npt.ArrayLike | None = None,
    labels: Sequence[str] | None = None,
    orders: npt.ArrayLike | None = None,
    stderr: npt.ArrayLike | None = None,
    f_log_axis: bool = False,
    reference: Mapping[str, Any] | None = None,
) -> Figure:
    """The order-strength curve ``J^(m)`` with the theory ``F^(m)`` — SCIENCE.md §4.

    Draws ``J^(m)`` (markers and lines) and ``F^(m)`` (dashed) against ``m/n``, for
    ``m = 0 … n−2`` or the sampled ``orders`` when given. ``per_image`` (``[images, len(J)]``)
    adds each image's own curve as a thin translucent line, named by ``labels`` on hover;
    ``stderr`` adds error bars of that size to ``J`` (the caller says how many standard
    errors). With
    ``f_log_axis``, ``F`` gets its own logarithmic axis on the right: at large ``n`` it spans
    tens of decades where ``J`` spans a few-fold, so it can only predict an ordering.
    ``reference`` (``mean``, ``lo``, ``hi``) draws the null reference — the same curve for
    the model's own values shuffled among the subsets — as a shaded band with its mean:
    averaging over ``C(n−2, m)`` contexts makes a U shape by itself, so the network's
    structure is what differs from the band.
    """
    j_values, f_values = _vector(J, "J"), _vector(F, "F")
    _same_length(j_values, f_values, "F")
    m = _orders(j_values.size, orders, "J")
    ratio = m / n
    traces = _per_image_traces(per_image, labels, ratio, m)
    if reference is not None:
        traces += _reference_traces(reference, ratio, m)
    traces.append(
        _curve(
            ratio,
            f_values,
            name="theory F<sup>(m)</sup>",
            colour=REFERENCE,
            hover=_ratio_hover("F<sup>(m)</sup>"),
            customdata=_plain(m),
            mode="lines",
            dash="dash",
        )
    )
    if f_log_axis:
        traces[-1]["yaxis"] = "y2"
        traces[-1]["name"] = "theory F<sup>(m)</sup> (right axis, log)"
    traces.append(
        _curve(
            ratio,
            j_values,
            name="J<sup>(m)</sup>",
            colour=MEASURED,
            hover=_ratio_hover("J<sup>(m)</sup>"),
            customdata=_plain(m),
            error_y=_error_y(stderr, j_values),
        )
    )
    layout = _layout(
        f"Order-strength curve (n = {n})",
        "order ratio m/n",
        "relative strength J<sup>(m)</sup>",
        yaxis={"rangemode": "tozero"},
        # up to five legend entries wrap to three rows on a half-width card and ran into the
        # title: the title sits at the top of the figure, the legend below it
        margin={"l": 64, "r": 24, "t": 132, "b": 56},
    )
    layout["title"].update({"y": 0.99, "yanchor": "top"})
    if f_log_axis:
        layout["yaxis2"] = {
            "title": {"text": "F<sup>(m)</sup> (log)"},
            "type": "log",
            "exponentformat": "power",
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
        }
    return _figure(traces, layout)


def _reference_traces(
    reference: Mapping[str, Any], ratio: FloatVector, m: npt.NDArray[np.int64]
) -> list[go.Scatter]:
    lo, hi, mean = (_vector(reference[k], k) for k in ("lo", "hi", "mean"))
    name = str(reference.get("name") or "values shuffled")
    _same_length(ratio, mean, "reference")
    band = {"x": _plain(ratio), "mode": "lines", "line": {"width": 0}, "hoverinfo": "skip"}
    return [
        go.Scatter(**band, y=_plain(lo), showlegend=False, legendgroup="reference"),
        go.Scatter(
            **band, y=_plain(hi), fill="tonexty", fillcolor="rgba(148, 103, 189, 0.18)",
            name=f"null reference: {name} (90 % band)", legendgroup="reference",
        ),
        go.Scatter(
            x=_plain(ratio), y=_plain(mean), customdata=_plain(m), mode="lines",
            line={"color": "rgba(148, 103, 189, 0.9)", "width": 1, "dash": "dot"},
            name=f"null reference: {name}", legendgroup="reference",
            hovertemplate=_ratio_hover("reference J<sup>(m)</sup>"),
        ),
    ]  # fmt: skip


def _ratio_hover(quantity: str) -> str:
    """Hover text for a curve against ``m/n`` that carries ``m`` in ``customdata``."""
    return (
        f"m = %{{customdata}}<br>m/n = %{{x:.4~g}}<br>{quantity} = %{{y:{_NUMBER}}}<extra></extra>"
    )


def _per_image_traces(
    per_image: npt.ArrayLike | None,
    labels: Sequence[str] | None,
    ratio: FloatVector,
    m: npt.NDArray[np.int64],
) -> list[go.Scatter]:
    """One thin translucent line per image; a single legend entry toggles them all."""
    if per_image is None:
        return []
    curves = np.asarray(per_image, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[1] != ratio.size:
        raise ValueError(f"per_image must have shape [images, {ratio.size}], got {curves.shape}")
    names = list(labels) if labels is not None else [f"image {k + 1}" for k in range(len(curves))]
    if len(names) != len(curves):
        raise ValueError(f"labels must name {len(curves)} images, got {len(names)}")
    return [
        go.Scatter(
            x=_plain(ratio),
            y=_plain(curve),
            customdata=_plain(m),
            mode="lines",
            name="per image",
            legendgroup="per_image",
            showlegend=k == 0,
            meta=label,
            opacity=0.35,
            line={"color": MEASURED, "width": 1},
            hovertemplate="%{meta}<br>" + _ratio_hover("J<sup>(m)</sup>"),
        )
        for k, (curve, label) in enumerate(zip(curves, names, strict=True))
    ]


def salient_by_order(positive: npt.ArrayLike, negative: npt.ArrayLike, tau: float) -> Figure:
    """Counts ``R^(k)`` of salient interactions per order ``k = 0 … n`` — SCIENCE.md §3.

    Positive interactions are red bars upward, negative ones blue bars downward (plotted as
    ``−count``; the hover text shows the count itself).
    """
    return _signed_bars(
        positive,
        negative,
        title=f"Salient interactions per order (τ = {tau:g})",
        y_title="count R<sup>(k)</sup>",
        value="count",
        whole=True,
    )


def interaction_strength_by_order(
    strength_by_order_pos: npt.ArrayLike, strength_by_order_neg: npt.ArrayLike
) -> Figure:
    """Summed strength ``Σ_{|S|=k} |I(S)|`` per order, split by sign — SCIENCE.md §3.

    Same drawing as :func:`salient_by_order`: positive upward, negative downward.
    """
    return _signed_bars(
        strength_by_order_pos,
        strength_by_order_neg,
        title="Interaction strength per order",
        y_title="Σ<sub>|S|=k</sub> |I(S)|",
        value="strength",
    )


def sparsity_curve(sorted_strength: npt.ArrayLike, tau: float, *, max_points: int = 2000) -> Figure:
    """Normalised strengths ``|I(S)| / max_{S≠∅}|I(S)|``, descending, on a log axis — §3.

    ``sorted_strength`` is already normalised and sorted (the stored array). Plotted against
    rank ``1 … N``; above ``max_points`` values the ranks are sampled by :func:`_rank_sample`
    (the first and last always kept). A dashed line marks ``τ``; the title counts the salient
    interactions among all ``N``. Exact zeros have no place on the log axis and are not drawn.

    Example:
        >>> fig = sparsity_curve(np.geomspace(1, 1e-6, 10_000), 0.05, max_points=100)
        >>> x = fig["data"][0]["x"]
        >>> len(x) <= 100, x[0], x[-1]
        (True, 1, 10000)
    """
    strength = _vector(sorted_strength, "sorted_strength")
    keep = _rank_sample(strength.size, max_points)
    total = strength.size
    salient = int((strength >= tau).sum())
    curve = _curve(
        keep + 1,
        strength[keep],
        name="|I(S)| / max |I|",
        colour=MEASURED,
        hover=f"rank %{{x:,d}}<br>strength %{{y:{_NUMBER}}}<extra></extra>",
        mode="lines",
    )
    threshold = _curve(
        [1, max(total, 1)],
        np.array([tau, tau]),
        name=f"τ = {tau:g}",
        colour=REFERENCE,
        hover="τ = %{y}<extra></extra>",
        mode="lines",
        dash="dash",
        width=1.5,
    )
    layout = _layout(
        f"Sparsity: {salient:,} of {total:,} salient (τ = {tau:g})",
        "rank",
        "|I(S)| / max |I|",
        xaxis=_integer_axis(total - 1),
        yaxis={"type": "log", "exponentformat": "power"},
    )
    return _figure([curve, threshold], layout)


def _rank_sample(count: int, max_points: int) -> npt.NDArray[np.int64]:
    """At most ``max_points`` increasing indices into ``count`` values, first and last kept.

    Log-spaced ranks keep the steep head of a sorted curve, evenly spaced ones its long tail
    (half the budget each); duplicates are merged.

    Example:
        >>> _rank_sample(5, 10).tolist()
        [0, 1, 2, 3, 4]
        >>> idx = _rank_sample(1_000_000, 50)
        >>> len(idx) <= 50, int(idx[0]), int(idx[-1])
        (True, 0, 999999)
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if count <= max_points:
        return np.arange(count, dtype=np.int64)
    half = max_points // 2
    ranks = np.concatenate([np.geomspace(1, count, max_points - half), np.linspace(1, count, half)])
    return np.unique(np.rint(ranks).astype(np.int64)) - 1


def pair_curve(
    values: npt.ArrayLike,
    n: int,
    i: int,
    j: int,
    *,
    stderr: npt.ArrayLike | None = None,
    orders: npt.ArrayLike | None = None,
) -> Figure:
    """The multi-order interaction ``I^(m)(i,j)`` of one pair against ``m`` — SCIENCE.md §4.

    ``m = 0 … n−2`` (or the sampled ``orders``); markers red where positive and blue where
    negative, a zero line, ``m/n`` on hover and optional error bars of ``stderr``.
    """
    y = _vector(values, "values")
    m = _orders(y.size, orders, "values")
    curve = _curve(
        m,
        y,
        name=f"I<sup>(m)</sup>({i}, {j})",
        colour=REFERENCE,
        hover=f"m = %{{x}}<br>m/n = %{{customdata:.4~g}}<br>I<sup>(m)</sup> = %{{y:{_NUMBER}}}"
        "<extra></extra>",
        customdata=_plain(m / n),
        marker={"color": _sign_colours(y), "size": 7},
        error_y=_error_y(stderr, y),
    )
    layout = _layout(
        f"Multi-order interaction of players i = {i}, j = {j} (n = {n})",
        "order m = |S|",
        f"I<sup>(m)</sup>({i}, {j})",
        xaxis=_integer_axis(float(m.max(initial=0) - m.min(initial=0))),
        yaxis=_zero_line(),
        showlegend=False,
    )
    return _figure([curve], layout)


def patch_heatmap(
    values: npt.ArrayLike,
    rows: int,
    cols: int,
    *,
    selected: int | None = None,
    title: str,
    colorbar_title: str,
) -> Figure:
    """A ``rows×cols`` heat map of one value per patch (player ``r*cols + c``) — §1, §4.

    ``values`` is flat (row-major, ``rows*cols``) or ``[rows, cols]``; NaN cells stay blank.
    Signed data get a red–white–blue scale centred at 0 (``zmid = 0``); one-signed data run
    from white at 0 to red (positive) or blue (negative). Row 0 is at the top, cells are
    square, and the ``selected`` patch (a player index) is outlined.
    """
    grid = np.asarray(values, dtype=np.float64).reshape(rows, cols)
    players = np.arange(rows * cols).reshape(rows, cols)
    heatmap = go.Heatmap(
        z=_plain(grid),
        x=list(range(cols)),
        y=list(range(rows)),
        customdata=_plain(players),
        colorbar={"title": {"text": colorbar_title}},
        hovertemplate=f"patch %{{customdata}} (row %{{y}}, col %{{x}})<br>value %{{z:{_NUMBER}}}"
        "<extra></extra>",
        hoverongaps=False,
        **_colour_scale(grid),
    )
    square = {"showgrid": False, "zeroline": False, "constrain": "domain", "ticks": ""}
    layout = _layout(
        title,
        "column",
        "row",
        xaxis=square,
        yaxis={**square, "autorange": "reversed", "scaleanchor": "x", "scaleratio": 1},
        shapes=_outline(selected, rows, cols),
    )
    return _figure([heatmap], layout)


def _colour_scale(grid: FloatVector) -> dict[str, Any]:
    """Colour scale keywords for :class:`go.Heatmap`: diverging at 0 when signs are mixed."""
    finite = grid[np.isfinite(grid)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if low < 0 < high:
        return {"colorscale": [[0, NEGATIVE], [0.5, "#ffffff"], [1, POSITIVE]], "zmid": 0}
    if high <= 0 < -low:
        return {"colorscale": [[0, NEGATIVE], [1, "#ffffff"]], "zmax": 0}
    return {"colorscale": [[0, "#ffffff"], [1, POSITIVE]], "zmin": 0}


def _outline(selected: int | None, rows: int, cols: int) -> list[dict[str, Any]]:
    """A rectangle around the ``selected`` patch's cell, or nothing."""
    if selected is None:
        return []
    if not 0 <= selected < rows * cols:
        raise ValueError(f"selected must be a patch in 0 … {rows * cols - 1}, got {selected}")
    r, c = divmod(selected, cols)
    return [
        {
            "type": "rect",
            "xref": "x",
            "yref": "y",
            "x0": c - 0.5,
            "x1": c + 0.5,
            "y0": r - 0.5,
            "y1": r + 0.5,
            "line": {"color": SELECTED, "width": 3},
        }
    ]


def average_output_curve(u_bar: npt.ArrayLike, p: float | None) -> Figure:
    """The monotonicity check ``ū(m) = E_{|S|=m}[v(S) − v(∅)]`` for ``m = 0 … n`` — §3.

    The title states the smallest exponent ``p`` with ``ū(m') ≥ (m'/m)^p ū(m)`` when finite.
    """
    u = _vector(u_bar, "u_bar")
    m = np.arange(u.size)
    title = "Average output by order"
    if _is_finite(p):
        title += f" (p = {p:.3g})"
    curve = _curve(
        m,
        u,
        name="ū(m)",
        colour=MEASURED,
        hover=f"m = %{{x}}<br>ū(m) = E<sub>|S|=m</sub>[v(S) − v(∅)] = %{{y:{_NUMBER}}}"
        "<extra></extra>",
    )
    layout = _layout(
        title,
        "order m = |S|",
        "ū(m)",
        xaxis=_integer_axis(u.size - 1),
        yaxis=_zero_line(),
        showlegend=False,
    )
    return _figure([curve], layout)


def result_figures(
    arrays: Mapping[str, npt.NDArray[Any]], summary: Mapping[str, Any]
) -> dict[str, Figure]:
    """The :data:`FIGURE_NAMES` figures of one stored result (``arrays`` + ``summary``).

    ``arrays`` holds ``J``, ``F``, ``salient_positive``, ``salient_negative``,
    ``sorted_strength`` and ``u_bar``; ``summary`` holds ``tau``, ``p`` and ``n_players``
    (each falls back, when missing, to the default τ, no ``p`` and ``len(u_bar) − 1``).
    """
    n = int(summary.get("n_players") or len(arrays["u_bar"]) - 1)
    tau = float(summary.get("tau") or DEFAULT_TAU)
    p = summary.get("p")
    return {
        "curve": order_strength_curve(
            arrays["J"], arrays["F"], n, reference=summary.get("reference")
        ),
        "salient": salient_by_order(arrays["salient_positive"], arrays["salient_negative"], tau),
        "sparsity": sparsity_curve(arrays["sorted_strength"], tau),
        "average_output": average_output_curve(arrays["u_bar"], None if p is None else float(p)),
    }


# --- feature components of different complexity (SCIENCE.md §7) ----------------------------

COMPONENT_FIGURES = ("significance", "reliability", "effects")


def _order_labels(orders: Sequence[int]) -> list[str]:
    return [f"l = {order}" for order in orders]


def _bars(x: Sequence[str], y: npt.ArrayLike, *, name: str, colour: str, hover: str) -> go.Bar:
    return go.Bar(
        x=list(x), y=_plain(np.asarray(y, dtype=np.float64)), name=name,
        marker={"color": colour}, hovertemplate=hover,
    )  # fmt: skip


def significance_bars(
    orders: Sequence[int],
    component: npt.ArrayLike,
    cumulative: npt.ArrayLike,
    test_r2: npt.ArrayLike,
    residual: float | None,
) -> Figure:
    """``ρ^(l) = Var[c^(l)]/Var[f]`` per order as bars, the cumulative ``Var[Φ^(l)]/Var[f]`` as
    a line, the held-out ``R²`` of each disentangler on hover; the residual share in the title."""
    labels = _order_labels(orders)
    r2 = _plain(np.asarray(test_r2, dtype=np.float64))
    traces = [
        go.Bar(
            x=labels,
            y=_plain(np.asarray(component, dtype=np.float64)),
            customdata=r2,
            name="ρ<sup>(l)</sup> of the component",
            marker={"color": MEASURED},
            hovertemplate=f"%{{x}}<br>ρ = %{{y:{_NUMBER}}}<br>held-out R² of Φ = "
            f"%{{customdata:{_NUMBER}}}<extra></extra>",
        ),
        go.Scatter(
            x=labels,
            y=_plain(_vector(cumulative, "cumulative")),
            mode="lines+markers",
            name="cumulative Var[Φ<sup>(l)</sup>]/Var[f]",
            line={"color": REFERENCE, "dash": "dash", "width": 2},
            marker={"color": REFERENCE, "size": 6},
            hovertemplate=f"%{{x}}<br>cumulative %{{y:{_NUMBER}}}<extra></extra>",
        ),
    ]
    title = "Significance of the components by complexity"
    if residual is not None and _is_finite(residual):
        title += f" (residual {residual:.3f})"
    return _figure(traces, _layout(title, "order l (ReLU layers)", "share of Var[f]"))


def reliability_bars(
    orders: Sequence[int], component: npt.ArrayLike, estimator: str | None = None
) -> Figure:
    """The share of each order's component the exemplary models reproduce (§7), titled with
    the estimator that measured it (``"cycle"``, the paper's, or the ``"preview"``)."""
    labels = _order_labels(orders)
    trace = _bars(
        labels, component, name="reliable share", colour=MEASURED,
        hover=f"%{{x}}<br>reliable share %{{y:{_NUMBER}}}<extra></extra>",
    )  # fmt: skip
    title = "Reliability of the components" + (
        {"cycle": " (cycle estimator)", "preview": " (fast preview)"}.get(estimator or "", "")
    )
    return _figure([trace], _layout(title, "order l", "reliable share"))


def effects_bars(
    players: Sequence[str], shapley_train: npt.ArrayLike, shapley_gap: npt.ArrayLike
) -> Figure:
    """Shapley values of the components on the training loss (effectiveness: negative = the
    component lowers the loss) and on the test−train loss gap (over-fitting)."""
    traces = [
        _bars(
            players, shapley_train, name="on the training loss", colour=NEGATIVE,
            hover=f"%{{x}}<br>φ on training loss %{{y:{_NUMBER}}}<extra></extra>",
        ),
        _bars(
            players, shapley_gap, name="on the test − train gap", colour=POSITIVE,
            hover=f"%{{x}}<br>φ on the loss gap %{{y:{_NUMBER}}}<extra></extra>",
        ),
    ]  # fmt: skip
    layout = _layout(
        "Effectiveness and over-fitting (Shapley values)", "component", "Shapley value",
        yaxis=_zero_line(), barmode="group",
    )  # fmt: skip
    return _figure(traces, layout)


def compare_significance(series: Sequence[tuple[str, Sequence[int], npt.ArrayLike]]) -> Figure:
    """``ρ^(l)`` of several analyses side by side (e.g. a model trained on 200 samples
    against one trained on all, as in the paper's experiment 2)."""
    palette = (MEASURED, POSITIVE, NEGATIVE, REFERENCE)
    traces = [
        _bars(
            _order_labels(orders),
            rho,
            name=name,
            colour=palette[k % len(palette)],
            hover=f"{name}<br>%{{x}}: ρ = %{{y:{_NUMBER}}}<extra></extra>",
        )
        for k, (name, orders, rho) in enumerate(series)
    ]
    layout = _layout(
        "Significance by order, compared", "order l", "ρ<sup>(l)</sup>", barmode="group"
    )
    return _figure(traces, layout)


def component_figures(metrics: Mapping[str, Any]) -> dict[str, Figure]:
    """The :data:`COMPONENT_FIGURES` a finished component analysis has (missing ones left out)."""
    if metrics.get("kind") == "consistency":
        return consistency_figures(metrics)
    orders = metrics["orders"]
    sig = metrics["significance"]
    out = {
        "significance": significance_bars(
            orders, sig["component"], sig["cumulative"], metrics["test_r2"], sig.get("residual")
        )
    }
    if metrics.get("reliability"):
        out["reliability"] = reliability_bars(
            orders, metrics["reliability"]["component"], metrics.get("reliability_estimator")
        )
    if metrics.get("effects"):
        fx = metrics["effects"]
        out["effects"] = effects_bars(fx["players"], fx["shapley_train"], fx["shapley_gap"])
    return out


def component_maps_figure(
    image: npt.ArrayLike,
    feature: npt.ArrayLike,
    components: npt.ArrayLike,
    residual: npt.ArrayLike,
    orders: Sequence[int],
    channel: int,
    *,
    most_activated: bool = True,
) -> Figure:
    """The image, the target feature's channel, each order's component ``c^(l)`` and the
    residual, side by side as square heat maps (one shared diverging scale for the maps)."""
    from plotly.subplots import make_subplots

    comps = np.asarray(components, dtype=np.float64)
    maps = [np.asarray(feature, dtype=np.float64), *comps, np.asarray(residual, dtype=np.float64)]
    titles = [
        "image",
        f"f (channel {channel}{', most activated' if most_activated else ''})",
        *[f"c<sup>({o})</sup>" for o in orders],
        "residual",
    ]
    fig = make_subplots(rows=1, cols=len(maps) + 1, subplot_titles=titles, horizontal_spacing=0.015)
    fig.add_trace(
        go.Heatmap(z=_plain(np.asarray(image, dtype=np.float64)), colorscale="gray",
                   showscale=False, hovertemplate="%{z:.3f}<extra>image</extra>"),
        row=1, col=1,
    )  # fmt: skip
    bound = float(max(np.nanmax(np.abs(m)) for m in maps)) or 1.0
    for k, grid in enumerate(maps):
        fig.add_trace(
            go.Heatmap(z=_plain(grid), colorscale="RdBu", reversescale=True, zmin=-bound,
                       zmax=bound, showscale=k == len(maps) - 1,
                       hovertemplate=f"%{{z:{_NUMBER}}}<extra>{titles[k + 1]}</extra>"),
            row=1, col=k + 2,
        )  # fmt: skip
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_yaxes(autorange="reversed", showticklabels=False, constrain="domain")
    for col in range(1, len(maps) + 2):  # each map keeps square pixels in its own cell
        fig.update_yaxes(scaleanchor=f"x{col if col > 1 else ''}", row=1, col=col)
    layout = _layout("Component maps by order", "", "", margin={"l": 16, "r": 16, "t": 72, "b": 16})
    fig.update_layout(**{k: v for k, v in layout.items() if k not in ("xaxis", "yaxis")})
    figure: Figure = json.loads(fig.to_json())
    return figure


# --- knowledge consistency between two models (SCIENCE.md §8) -------------------------------

CONSISTENCY_FIGURES = ("parts", "cumulative")
_DIRECTIONS = (("a_from_b", "A from B", NEGATIVE), ("b_from_a", "B from A", POSITIVE))


def consistency_parts(metrics: Mapping[str, Any], split: str = "test") -> Figure:
    """``Var[x^(k)]/Var[f]`` of each order's consistent part and ``Var[ε]/Var[f]`` of the
    inconsistent rest, both directions side by side, on a log axis (the parts differ by
    orders of magnitude); the absolute variances on hover."""
    labels = [*(f"k = {k}" for k in metrics["orders"]), "inconsistent"]
    traces = []
    for key, name, colour in _DIRECTIONS:
        v = metrics[key][split]
        total = v["feature"] or float("nan")
        absolute = [*v["consistent"], v["inconsistent"]]
        share = [x / total if x is not None else None for x in absolute]
        traces.append(
            go.Bar(
                x=labels,
                y=[_positive(x) for x in share],
                name=name,
                customdata=[[_finite(x), v["feature"]] for x in absolute],
                marker={"color": colour},
                hovertemplate=f"{name} · %{{x}}<br>share of Var[f] %{{y:{_NUMBER}}}<br>"
                f"Var = %{{customdata[0]:{_NUMBER}}} of %{{customdata[1]:{_NUMBER}}}"
                "<extra></extra>",
            )
        )
    where = "held-out" if split == "test" else "fitting"
    layout = _layout(
        f"Variance of each part, as a share of the feature's ({where} images)",
        "part of the feature", "Var[part] / Var[f] (log scale)",
        yaxis={"type": "log", "exponentformat": "power"}, barmode="group",
    )  # fmt: skip
    return _figure(traces, layout)


def consistency_cumulative(metrics: Mapping[str, Any]) -> Figure:
    """The share of the feature reconstructed by orders ``≤ k`` (cumulative ``R²``) against
    ``k``, per direction: solid on held-out images, dashed on the fitting images."""
    orders = list(metrics["orders"])
    traces = []
    for key, name, colour in _DIRECTIONS:
        for split, dash, where in (("test", "solid", "held-out"), ("train", "dash", "fitting")):
            r2 = np.asarray(
                [np.nan if x is None else x for x in metrics[key][split]["cumulative_r2"]],
                dtype=np.float64,
            )
            traces.append(
                _curve(
                    orders,
                    r2,
                    name=f"{name} ({where})",
                    colour=colour,
                    dash=dash,
                    hover=f"{name}, {where}<br>orders ≤ %{{x}}: R² = %{{y:{_NUMBER}}}"
                    "<extra></extra>",
                )
            )
    layout = _layout(
        "Reconstructed share of the feature, by order",
        "orders ≤ k", "R² of x<sup>(0)</sup> + … + x<sup>(k)</sup>",
        xaxis=_integer_axis(max(orders)),
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.32, "yanchor": "top"},
        margin={"l": 64, "r": 24, "t": 56, "b": 120},
    )  # fmt: skip
    return _figure(traces, layout)


def consistency_figures(metrics: Mapping[str, Any]) -> dict[str, Figure]:
    """The :data:`CONSISTENCY_FIGURES` of a finished knowledge-consistency analysis."""
    return {"parts": consistency_parts(metrics), "cumulative": consistency_cumulative(metrics)}


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _positive(value: Any) -> float | None:
    """A share for a log axis: ``None`` (a gap) where it is not a positive number."""
    return float(value) if value is not None and math.isfinite(value) and value > 0 else None


__all__ = [
    "COMPONENT_FIGURES",
    "CONSISTENCY_FIGURES",
    "DEFAULT_TAU",
    "FIGURE_NAMES",
    "MEASURED",
    "NEGATIVE",
    "POSITIVE",
    "REFERENCE",
    "SELECTED",
    "Figure",
    "average_output_curve",
    "compare_significance",
    "component_figures",
    "component_maps_figure",
    "consistency_cumulative",
    "consistency_figures",
    "consistency_parts",
    "effects_bars",
    "interaction_strength_by_order",
    "order_strength_curve",
    "pair_curve",
    "patch_heatmap",
    "reliability_bars",
    "result_figures",
    "salient_by_order",
    "significance_bars",
    "sparsity_curve",
]
