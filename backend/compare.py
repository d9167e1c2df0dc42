"""Comparing runs and reading a multi-image analysis as a data set (issue 13 §2).

Pure functions over what is stored (summaries, interaction tables): no database, no HTTP.
Figures are plain Plotly JSON (``{"data", "layout"}``), styled like :mod:`backend.figures`.

* :func:`overlay_curves` — ``J^(m)`` of several analyses against the order ratio ``m/n`` (so
  analyses with different grids share one axis).
* :func:`salient_patches` / :func:`common_cells` — the patches of the salient sets of an
  image, and which of them cover the same part of the image as the other analysis's (grids
  may differ: two patches are in common when their rectangles overlap).
* :func:`dataset_view` — ``J^(m)`` and sparsity per true and per predicted label, and the
  images whose curve deviates most from the set's (mean absolute difference over orders).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from backend import results
from conceptlens import figures

Figure = dict[str, Any]

#: One colour per compared analysis (A, B), and for groups of a data set.
SERIES = ("#2a2a2a", "#ff7f0e")
GROUPS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
#: Many groups: the legend beside the plot, where it cannot cover the title.
_SIDE_LEGEND = {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"}
#: How many deviating images a data-set view lists.
DEVIATING = 8


def layout(title: str, x_title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    """The page's shared figure layout (:mod:`conceptlens.figures`), y axis from zero."""
    yaxis = {"rangemode": "tozero", **extra.pop("yaxis", {})}
    return figures._layout(title, x_title, y_title, yaxis=yaxis, **extra)


def _line(
    x: Sequence[float], y: Sequence[float], name: str, colour: str, **style: Any
) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": style.pop("mode", "lines+markers"),
        "x": [float(v) for v in x],
        "y": [None if not math.isfinite(float(v)) else float(v) for v in y],
        "name": name,
        "line": {
            "color": colour,
            "width": style.pop("width", 2),
            "dash": style.pop("dash", "solid"),
        },
        "marker": {"color": colour, "size": 6},
        **style,
    }


def curve_orders(summary: Mapping[str, Any], n: int) -> list[int]:
    """The orders ``m`` a summary's ``J`` is given at (sampled: its own; exact: 0 … n−2)."""
    orders = summary.get("orders")
    return [int(m) for m in orders] if orders else list(range(len(summary["J"])))


def overlay_curves(runs: Sequence[tuple[str, Mapping[str, Any], int]]) -> Figure:
    """``J^(m)`` of each ``(name, summary, n)`` against ``m/n``, with its theory ``F^(m)``
    dashed in the same colour (only once when every ``n`` is the same)."""
    traces = []
    same_n = len({n for _, _, n in runs}) == 1
    for k, (name, summary, n) in enumerate(runs):
        colour = SERIES[k % len(SERIES)]
        ratio = [m / n for m in curve_orders(summary, n)]
        hover = "m/n = %{x:.3f}<br>J = %{y:.4g}<extra>" + name + "</extra>"
        traces.append(_line(ratio, summary["J"], f"{name}: J(m)", colour, hovertemplate=hover))
        if summary.get("F") and (not same_n or k == 0):
            label = "theory F(m)" if same_n else f"{name}: theory F(m), n = {n}"
            f_colour = "#7f7f7f" if same_n else colour
            traces.append(_line(ratio, summary["F"], label, f_colour, mode="lines", dash="dash"))
    return {
        "data": traces,
        "layout": layout(
            "Order-strength curves J(m), overlaid", "order ratio m/n", "relative strength J(m)"
        ),
    }


def salient_share(summary: Mapping[str, Any]) -> list[float]:
    """Per order ``m = 0 … n``: the share of the ``C(n, m)`` sets that are salient."""
    pos = np.asarray(summary.get("salient_positive") or [], dtype=np.float64)
    neg = np.asarray(summary.get("salient_negative") or [], dtype=np.float64)
    counts = pos + neg
    n = counts.size - 1
    return [float(c) / math.comb(n, m) for m, c in enumerate(counts)]


def overlay_sparsity(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> Figure:
    """The share of salient sets per order ratio ``m/n`` of one image in each run."""
    traces = []
    for k, (name, summary) in enumerate(runs):
        share = salient_share(summary)
        n = len(share) - 1
        ratio = [m / n for m in range(len(share))]
        hover = "m/n = %{x:.3f}<br>salient share = %{y:.3g}<extra>" + name + "</extra>"
        traces.append(_line(ratio, share, name, SERIES[k % len(SERIES)], hovertemplate=hover))
    return {
        "data": traces,
        "layout": layout(
            "Share of salient sets per order", "order ratio m/n", "salient sets / all sets"
        ),
    }


def salient_patches(
    arrays: Mapping[str, np.ndarray], params: Mapping[str, Any], tau: float, top_k: int
) -> dict[str, Any]:
    """The ``top_k`` strongest salient sets (``|I(S)| ≥ τ · max |I|``) of one image, as grid
    cells, and the cells that occur in any of them."""
    rows, cols = int(params["grid_rows"]), int(params["grid_cols"])
    cells = params.get("players") or list(range(rows * cols))
    found = results.interactions(arrays, tau=tau, top_k=top_k)
    sets = [
        {
            "cells": [int(cells[p]) for p in row["players"]],
            "value": row["value"],
            "order": row["order"],
            "strength": row["strength"],
        }
        for row in found["data"]
    ]
    patches = sorted({c for s in sets for c in s["cells"]})
    return {
        "grid_rows": rows,
        "grid_cols": cols,
        "tau": tau,
        "total": found["total"],
        "sets": sets,
        "cells": patches,
    }


def _overlap(a: int, parts_a: int, b: int, parts_b: int) -> bool:
    """Whether interval ``[a, a+1)/parts_a`` and ``[b, b+1)/parts_b`` overlap (length > 0)."""
    return a * parts_b < (b + 1) * parts_a and b * parts_a < (a + 1) * parts_b


def common_cells(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[int]:
    """The cells of ``mine`` (a :func:`salient_patches` result) that cover part of the
    image some cell of ``theirs`` covers: with equal grids, the cells both name."""
    ra, ca = mine["grid_rows"], mine["grid_cols"]
    rb, cb = theirs["grid_rows"], theirs["grid_cols"]
    out = []
    for cell in mine["cells"]:
        r, c = divmod(cell, ca)
        for other in theirs["cells"]:
            r2, c2 = divmod(other, cb)
            if _overlap(r, ra, r2, rb) and _overlap(c, ca, c2, cb):
                out.append(cell)
                break
    return out


# --- a multi-image analysis as a data set ---------------------------------------------------


def relative(strengths: Sequence[Sequence[float]]) -> list[float]:
    """``J^(m)`` of a group: its images' mean strength per order over its mean (as the set's
    curve is computed); zeros when every strength is zero."""
    per_order = np.atleast_2d(np.asarray(strengths, dtype=np.float64)).mean(axis=0)
    scale = per_order.mean()
    return (per_order / scale if scale > 0 else np.zeros_like(per_order)).tolist()


def dataset_view(
    images: Sequence[Mapping[str, Any]], set_curve: Sequence[float], n: int
) -> dict[str, Any]:
    """Groups by true and by predicted label, and the images farthest from the set's curve.

    Each of ``images`` has ``item_id``, ``image_id``, ``true`` (a label name or ``None``),
    ``predicted`` (a name) and ``summary`` (an exact item summary: ``strength``, ``J``,
    ``salient_positive``, ``salient_negative``). ``set_curve`` is the analysis's ``J^(m)``.
    An image's deviation is the mean over orders of ``|J_image(m) − J_set(m)|``.
    """
    target = np.asarray(set_curve, dtype=np.float64)
    rows = []
    for image in images:
        summary = image["summary"]
        curve = np.asarray(summary["J"], dtype=np.float64)
        share = salient_share(summary)
        rows.append(
            {
                "item_id": image["item_id"],
                "image_id": image["image_id"],
                "true": image["true"],
                "predicted": image["predicted"],
                "J": curve.tolist(),
                "deviation": float(np.abs(curve - target).mean()),
                "salient_share": _overall_share(summary),
                "share_by_order": share,
            }
        )
    out: dict[str, Any] = {"n_players": n, "images": len(rows), "J": target.tolist()}
    for by in ("true", "predicted"):
        out[by] = _groups(rows, by, images)
    ranked = sorted(rows, key=lambda r: -r["deviation"])[:DEVIATING]
    out["deviating"] = [{k: v for k, v in r.items() if k != "share_by_order"} for r in ranked]
    out["figures"] = {
        "true_curve": _group_curves(out["true"], target, n, "true label"),
        "predicted_curve": _group_curves(out["predicted"], target, n, "predicted label"),
        "true_sparsity": _group_sparsity(out["true"], n, "true label"),
        "predicted_sparsity": _group_sparsity(out["predicted"], n, "predicted label"),
        "deviating": _deviating_curves(ranked, target, n),
    }
    return out


def _overall_share(summary: Mapping[str, Any]) -> float:
    """Salient sets among all ``2^n − 1`` non-empty sets."""
    pos = summary.get("salient_positive") or []
    neg = summary.get("salient_negative") or []
    n = len(pos) - 1
    return float(sum(pos[1:]) + sum(neg[1:])) / float(2**n - 1) if n > 0 else 0.0


def _groups(
    rows: Sequence[Mapping[str, Any]], by: str, images: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Per label (in the order first seen, unlabelled images left out): how many images, the
    group's ``J^(m)``, its mean salient share overall and per order."""
    strength = {img["item_id"]: img["summary"]["strength"] for img in images}
    members: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row[by] is not None:
            members.setdefault(str(row[by]), []).append(row)
    return [
        {
            "label": label,
            "images": len(group),
            "J": relative([strength[r["item_id"]] for r in group]),
            "salient_share": float(np.mean([r["salient_share"] for r in group])),
            "share_by_order": np.mean([r["share_by_order"] for r in group], axis=0).tolist(),
        }
        for label, group in sorted(members.items(), key=lambda kv: _label_key(kv[0]))
    ]


def _order_axis(n: int) -> dict[str, Any]:
    """Whole-number ticks on an order axis (each order up to 12)."""
    return {"tickformat": ",d", **({"tick0": 0, "dtick": 1} if n <= 12 else {})}


def _label_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _group_curves(
    groups: Sequence[Mapping[str, Any]], target: np.ndarray, n: int, by: str
) -> Figure:
    traces = [
        _line(
            list(range(len(g["J"]))), g["J"], f"{g['label']} ({g['images']})",
            GROUPS[k % len(GROUPS)], width=1.5,
            hovertemplate="m = %{x}<br>J = %{y:.4g}<extra>" + f"{by} {g['label']}</extra>",
        )
        for k, g in enumerate(groups)
    ]  # fmt: skip
    traces.append(
        _line(
            list(range(target.size)), target.tolist(), "all images", "#2a2a2a", width=3,
            hovertemplate="m = %{x}<br>J = %{y:.4g}<extra>all images</extra>",
        )
    )  # fmt: skip
    return {
        "data": traces,
        "layout": layout(
            f"J(m) by {by} (n = {n})", "order m", "relative strength J(m)",
            xaxis=_order_axis(n), legend=_SIDE_LEGEND,
        ),
    }  # fmt: skip


def _group_sparsity(groups: Sequence[Mapping[str, Any]], n: int, by: str) -> Figure:
    traces = [
        _line(
            list(range(len(g["share_by_order"]))), g["share_by_order"],
            f"{g['label']} ({100 * g['salient_share']:.1f} % salient)", GROUPS[k % len(GROUPS)],
            width=1.5,
            hovertemplate="order %{x}<br>salient share %{y:.3g}<extra>"
            + f"{by} {g['label']}</extra>",
        )
        for k, g in enumerate(groups)
    ]  # fmt: skip
    return {
        "data": traces,
        "layout": layout(
            f"Share of salient sets per order, by {by}", "order |S|", "salient sets / all sets",
            xaxis=_order_axis(n), legend=_SIDE_LEGEND,
        ),
    }  # fmt: skip


def _deviating_curves(ranked: Sequence[Mapping[str, Any]], target: np.ndarray, n: int) -> Figure:
    traces = [
        _line(
            list(range(len(r["J"]))), r["J"],
            f"#{k + 1}: true {r['true'] if r['true'] is not None else '–'}, "
            f"predicted {r['predicted']} (Δ {r['deviation']:.3g})",
            GROUPS[k % len(GROUPS)], width=1.5,
        )
        for k, r in enumerate(ranked)
    ]  # fmt: skip
    traces.append(
        _line(list(range(target.size)), target.tolist(), "all images", "#2a2a2a", width=3)
    )
    return {
        "data": traces,
        "layout": layout(
            "The images farthest from the set's J(m)", "order m", "relative strength J(m)",
            xaxis=_order_axis(n), legend=_SIDE_LEGEND,
        ),
    }  # fmt: skip
