"""Figures from stored results: valid plotly JSON whose traces carry exactly the inputs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest

from backend import figures
from backend.figures import NEGATIVE, POSITIVE

ROOT = Path(__file__).resolve().parents[2]
N = 6


def _arrays(n: int = N) -> dict[str, np.ndarray]:
    """A small stored result's arrays (shapes as the engine writes them)."""
    rng = np.random.default_rng(0)
    interactions = rng.normal(size=2**n)
    strength = np.abs(interactions[1:]) / np.abs(interactions[1:]).max()
    return {
        "interactions": interactions,
        "J": np.linspace(1.5, 0.5, n - 1),
        "F": np.linspace(2.0, 0.2, n - 1),
        "salient_positive": np.array([0, 2, 5, 3, 1, 0, 0]),
        "salient_negative": np.array([0, 1, 4, 6, 0, 1, 0]),
        "sorted_strength": -np.sort(-strength),
        "u_bar": np.arange(n + 1, dtype=np.float64) ** 2,
    }


SUMMARY = {"tau": 0.05, "p": 2.0, "n_players": N}


def _valid(fig: dict[str, Any]) -> dict[str, Any]:
    """Fails unless ``fig`` round-trips through plotly and strict JSON, with plain lists."""
    go.Figure(fig)
    text = json.dumps(fig, allow_nan=False)
    assert "bdata" not in text  # lists, not plotly's base64 typed arrays
    return fig


def _trace(fig: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in fig["data"] if t.get("name") == name)


def _all_figures() -> dict[str, dict[str, Any]]:
    out = figures.result_figures(_arrays(), SUMMARY)
    out["pair"] = figures.pair_curve([0.5, -0.2, 0.1, 0.0, -1.0], N, 1, 2)
    out["heatmap"] = figures.patch_heatmap(
        np.arange(6.0) - 2, 2, 3, selected=4, title="Shapley", colorbar_title="I"
    )
    out["strength"] = figures.interaction_strength_by_order([1.0, 2.0], [0.5, 0.0])
    return out


@pytest.mark.parametrize("name", [*figures.FIGURE_NAMES, "pair", "heatmap", "strength"])
def test_every_figure_is_valid_json_with_the_shared_layout(name: str) -> None:
    fig = _valid(_all_figures()[name])
    layout = fig["layout"]
    assert layout["autosize"] is True
    assert "width" not in layout
    assert layout["template"]["layout"]["plot_bgcolor"] == "white"
    assert layout["title"]["text"]
    assert layout["xaxis"]["title"]["text"] and layout["yaxis"]["title"]["text"]
    assert all("hovertemplate" in trace for trace in fig["data"])


def test_result_figures_builds_the_named_figures() -> None:
    assert set(figures.result_figures(_arrays(), SUMMARY)) == set(figures.FIGURE_NAMES)


def test_result_figures_falls_back_when_the_summary_is_empty() -> None:
    fig = figures.result_figures(_arrays(), {})
    assert _trace(fig["curve"], "J<sup>(m)</sup>")["x"] == [m / N for m in range(N - 1)]
    assert "p =" not in fig["average_output"]["layout"]["title"]["text"]


def test_order_strength_curve_plots_J_and_dashed_F_against_m_over_n() -> None:
    a = _arrays()
    fig = _valid(figures.order_strength_curve(a["J"], a["F"], N))
    J, F = _trace(fig, "J<sup>(m)</sup>"), _trace(fig, "theory F<sup>(m)</sup>")
    for trace, expected in ((J, a["J"]), (F, a["F"])):
        assert trace["x"] == [m / N for m in range(N - 1)]
        assert trace["customdata"] == list(range(N - 1))
        assert trace["y"] == expected.tolist()
    assert J["mode"] == "lines+markers"
    assert F["line"]["dash"] == "dash"
    assert fig["layout"]["yaxis"]["title"]["text"] == "relative strength J<sup>(m)</sup>"


def test_order_strength_curve_adds_thin_translucent_per_image_lines() -> None:
    a = _arrays()
    per_image = np.stack([a["J"] * 0.9, a["J"] * 1.1])
    fig = _valid(
        figures.order_strength_curve(a["J"], a["F"], N, per_image=per_image, labels=["a", "b"])
    )
    lines = [t for t in fig["data"] if t.get("legendgroup") == "per_image"]
    assert [t["y"] for t in lines] == per_image.tolist()
    assert [t["meta"] for t in lines] == ["a", "b"]
    assert [t["showlegend"] for t in lines] == [True, False]
    assert all(t["opacity"] < 1 and t["line"]["width"] <= 1 for t in lines)


def test_order_strength_curve_takes_sampled_orders_and_error_bars() -> None:
    fig = _valid(
        figures.order_strength_curve(
            [1.2, 0.8], [1.1, 0.9], 256, orders=[25, 127], stderr=[0.1, 0.05]
        )
    )
    J = _trace(fig, "J<sup>(m)</sup>")
    assert J["x"] == [25 / 256, 127 / 256]
    assert J["error_y"]["array"] == [0.1, 0.05]


def test_order_strength_curve_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="F"):
        figures.order_strength_curve([1.0, 1.0], [1.0], 3)
    with pytest.raises(ValueError, match="per_image"):
        figures.order_strength_curve([1.0, 1.0], [1.0, 1.0], 3, per_image=[[1.0]])


def test_salient_by_order_draws_negative_counts_downward() -> None:
    a = _arrays()
    fig = _valid(figures.salient_by_order(a["salient_positive"], a["salient_negative"], 0.05))
    pos, neg = _trace(fig, "positive I(S)"), _trace(fig, "negative I(S)")
    assert pos["x"] == neg["x"] == list(range(N + 1))
    assert pos["y"] == a["salient_positive"].tolist()
    assert neg["y"] == (-a["salient_negative"]).tolist()
    assert neg["customdata"] == a["salient_negative"].tolist()  # hover shows the count
    assert (pos["marker"]["color"], neg["marker"]["color"]) == (POSITIVE, NEGATIVE)
    assert fig["layout"]["barmode"] == "relative"
    assert "τ = 0.05" in fig["layout"]["title"]["text"]


def test_signed_bars_reject_negative_amounts() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        figures.salient_by_order([1, 2], [-1, 0], 0.05)
    with pytest.raises(ValueError, match="length"):
        figures.interaction_strength_by_order([1.0, 2.0], [1.0])


def test_interaction_strength_by_order_splits_by_sign() -> None:
    fig = _valid(figures.interaction_strength_by_order([1.0, 2.5, 0.0], [0.5, 0.0, 3.0]))
    assert _trace(fig, "positive I(S)")["y"] == [1.0, 2.5, 0.0]
    assert _trace(fig, "negative I(S)")["y"] == [-0.5, -0.0, -3.0]


def test_sparsity_curve_keeps_every_point_when_few() -> None:
    strength = _arrays()["sorted_strength"]
    fig = _valid(figures.sparsity_curve(strength, 0.05))
    curve, threshold = fig["data"]
    assert curve["x"] == list(range(1, strength.size + 1))
    assert curve["y"] == strength.tolist()
    assert threshold["y"] == [0.05, 0.05]
    assert threshold["x"] == [1, strength.size]
    assert fig["layout"]["yaxis"]["type"] == "log"
    salient = int((strength >= 0.05).sum())
    assert f"{salient:,} of {strength.size:,}" in fig["layout"]["title"]["text"]


def test_sparsity_curve_downsamples_monotonically_keeping_first_and_last() -> None:
    strength = np.geomspace(1.0, 1e-7, 2**14 - 1)
    fig = _valid(figures.sparsity_curve(strength, 0.05, max_points=300))
    x, y = np.array(fig["data"][0]["x"]), np.array(fig["data"][0]["y"])
    assert 2 <= x.size <= 300
    assert x[0] == 1 and x[-1] == strength.size
    assert (np.diff(x) > 0).all()
    assert (np.diff(y) <= 0).all()
    np.testing.assert_array_equal(y, strength[x - 1])
    # head (log-spaced) and tail (evenly spaced) both sampled
    assert set(range(1, 11)) <= set(x.tolist())
    assert np.diff(x).max() < strength.size / 100


def test_sparsity_curve_rejects_a_budget_below_two() -> None:
    with pytest.raises(ValueError, match="max_points"):
        figures.sparsity_curve(np.ones(10), 0.05, max_points=1)


def test_pair_curve_plots_values_against_order_with_zero_line() -> None:
    values = [0.5, -0.2, 0.1, 0.0, -1.0]
    fig = _valid(figures.pair_curve(values, N, 1, 2, stderr=[0.1] * 5))
    (trace,) = fig["data"]
    assert trace["x"] == list(range(N - 1))
    assert trace["y"] == values
    assert trace["customdata"] == [m / N for m in range(N - 1)]
    assert trace["error_y"]["array"] == [0.1] * 5
    assert trace["marker"]["color"][:2] == [POSITIVE, NEGATIVE]
    assert fig["layout"]["yaxis"]["zeroline"] is True


def test_patch_heatmap_puts_row_zero_on_top_with_square_cells() -> None:
    values = np.arange(12.0) - 5.0  # signed
    fig = _valid(
        figures.patch_heatmap(values, 3, 4, selected=6, title="t", colorbar_title="strength")
    )
    (heat,) = fig["data"]
    assert heat["z"] == values.reshape(3, 4).tolist()  # z[0] is row 0 (players 0…3)
    assert heat["customdata"][1] == [4, 5, 6, 7]
    assert heat["zmid"] == 0
    assert heat["colorscale"][0][1] == NEGATIVE and heat["colorscale"][-1][1] == POSITIVE
    yaxis = fig["layout"]["yaxis"]
    assert yaxis["autorange"] == "reversed"
    assert yaxis["scaleanchor"] == "x"
    (outline,) = fig["layout"]["shapes"]  # player 6 = row 1, column 2
    assert (outline["x0"], outline["x1"], outline["y0"], outline["y1"]) == (1.5, 2.5, 0.5, 1.5)


def test_patch_heatmap_one_signed_data_start_at_zero_and_nan_is_blank() -> None:
    values = np.array([[0.0, 1.0], [np.nan, 3.0]])
    fig = _valid(figures.patch_heatmap(values, 2, 2, title="t", colorbar_title="c"))
    (heat,) = fig["data"]
    assert heat["z"] == [[0.0, 1.0], [None, 3.0]]
    assert "zmid" not in heat and heat["zmin"] == 0
    assert fig["layout"].get("shapes", []) == []


def test_patch_heatmap_rejects_a_selected_patch_off_the_grid() -> None:
    with pytest.raises(ValueError, match="selected"):
        figures.patch_heatmap(np.zeros(4), 2, 2, selected=4, title="t", colorbar_title="c")


def test_average_output_curve_plots_u_bar_with_p_in_title() -> None:
    u = _arrays()["u_bar"]
    fig = _valid(figures.average_output_curve(u, 2.0))
    (trace,) = fig["data"]
    assert trace["x"] == list(range(N + 1))
    assert trace["y"] == u.tolist()
    assert "p = 2" in fig["layout"]["title"]["text"]
    for p in (None, float("nan")):
        title = figures.average_output_curve(u, p)["layout"]["title"]["text"]
        assert "p =" not in title


def test_backend_figures_does_not_import_torch() -> None:
    code = "import backend.figures, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# axes of whole numbers: (figure, axis) for orders, counts and ranks
INTEGER_AXES = [
    ("salient", "xaxis"), ("salient", "yaxis"), ("sparsity", "xaxis"), ("average_output", "xaxis"),
    ("pair", "xaxis"), ("strength", "xaxis"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "axis"), INTEGER_AXES)
def test_integer_axes_tick_only_on_whole_numbers(name: str, axis: str) -> None:
    """No "0.5" on an axis of orders, counts or ranks: whole-number labels, and on a short
    axis (where Plotly would step by 0.5 or 0.2) an explicit whole step from 0."""
    layout = _all_figures()[name]["layout"][axis]
    assert layout["tickformat"] == ",d"
    assert layout.get("dtick") in (None, 1, 2)  # none: over 20 units, Plotly's whole steps
    if "dtick" in layout:
        assert layout["tick0"] == 0


def test_integer_axes_step_by_whole_numbers_at_every_length() -> None:
    for n in (1, 2, 5, 10, 11, 20, 21, 24):
        fig = figures.salient_by_order(np.ones(n + 1), np.zeros(n + 1), 0.05)
        dtick = fig["layout"]["xaxis"].get("dtick")
        assert dtick is None if n > 20 else dtick == (1 if n <= 10 else 2), (n, dtick)
    tiny = figures.sparsity_curve(np.array([1.0, 0.5, 0.1]), 0.05)  # 3 ranks: 1, 2, 3
    assert tiny["layout"]["xaxis"]["dtick"] == 1
    counts = figures.salient_by_order([0, 40, 3], [0, 0, 1], 0.05)["layout"]["yaxis"]
    assert counts["tickformat"] == ",d" and "dtick" not in counts  # 41 units: Plotly's steps


def _visible(text: str) -> str:
    """The characters Plotly draws for a title (tags such as <sup> draw nothing)."""
    return re.sub(r"<[^>]+>", "", text)


@pytest.mark.parametrize("name", [*figures.FIGURE_NAMES, "pair", "strength"])
def test_axis_titles_fit_beside_a_small_chart(name: str) -> None:
    """A vertical y-axis title longer than the plot is tall ran up into the chart's title
    (sparsity, salient per order): at 13 px, 22 characters fit the ~200 px plot of a 300 px
    card. The chart title stays above the plot, clear of the legend, within the top margin."""
    layout = _all_figures()[name]["layout"]
    assert len(_visible(layout["yaxis"]["title"]["text"])) <= 22, layout["yaxis"]["title"]
    assert layout["margin"]["t"] >= 64
    assert layout["legend"]["yanchor"] == "bottom" and layout["legend"]["y"] >= 1.0


def test_the_reliability_chart_names_its_estimator() -> None:
    from backend.figures import reliability_bars

    for estimator, words in (("cycle", "cycle estimator"), ("preview", "fast preview")):
        title = reliability_bars([0, 1], [0.9, 0.5], estimator)["layout"]["title"]
        assert words in str(title)
    assert "(" not in str(reliability_bars([0], [1.0])["layout"]["title"])  # older jobs
