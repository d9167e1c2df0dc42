"""Notebook plots (:mod:`conceptlens.plots`) carry the result's own numbers, drawn by the
builders the web service re-exports (:mod:`backend.figures` is :mod:`conceptlens.figures`)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest

from conceptlens import figures, plots
from conceptlens.analysis import InteractionResult, interactions_from_logits
from conceptlens.games import UnanimityGame
from conceptlens.pairwise import relative_strength
from conceptlens.sparsity import salient_counts
from conceptlens.transforms import zeta

N = 6


def _result(seed: int = 0) -> InteractionResult:
    return interactions_from_logits(np.random.default_rng(seed).normal(size=(2**N, 3)))


def _trace(fig: go.Figure, name: str) -> go.Scatter:
    (trace,) = [t for t in fig.data if t.name == name]
    return trace


def test_order_strength_of_one_result_draws_its_j_and_f() -> None:
    result = _result()
    fig = plots.order_strength(result)
    assert isinstance(fig, go.Figure)
    j, f = _trace(fig, "J<sup>(m)</sup>"), _trace(fig, "theory F<sup>(m)</sup>")
    np.testing.assert_allclose(np.asarray(j.y, dtype=float), result.J, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(f.y, dtype=float), result.F, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(j.x, dtype=float), np.arange(N - 1) / N, atol=1e-12)


def test_order_strength_of_several_results_averages_strengths_like_the_service() -> None:
    results = [_result(seed) for seed in range(3)]
    fig = plots.order_strength(results, labels=["a", "b", "c"])
    expected = relative_strength(np.stack([r.strength for r in results]))
    j = _trace(fig, "J<sup>(m)</sup>")
    np.testing.assert_allclose(np.asarray(j.y, dtype=float), expected, rtol=0, atol=1e-12)
    per_image = [t for t in fig.data if t.legendgroup == "per_image"]
    assert [t.meta for t in per_image] == ["a", "b", "c"]
    for trace, result in zip(per_image, results, strict=True):
        np.testing.assert_allclose(np.asarray(trace.y, dtype=float), result.J, atol=1e-12)


def test_salient_per_order_counts_at_the_results_tau_or_another() -> None:
    # v = 3·[p0∧p1] − 2·[p2] + 0.01·[p3∧p4∧p5]: one salient term of each sign at τ = 0.05
    game = UnanimityGame(N, [[0, 1], [2], [3, 4, 5]], [3.0, -2.0, 0.01])
    result = interactions_from_logits(
        np.stack([zeta(game.harsanyi_table()), np.zeros(2**N)], axis=1), target=0, output="logit"
    )
    fig = plots.salient_per_order(result)
    positive, negative = (np.asarray(t.y, dtype=float) for t in fig.data)
    np.testing.assert_array_equal(positive, result.salient_positive)
    np.testing.assert_array_equal(-negative, result.salient_negative)
    assert positive.tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert (-negative).tolist() == [0, 1, 0, 0, 0, 0, 0]
    loose = plots.salient_per_order(result, tau=0.001)
    counts = salient_counts(result.interactions, 0.001)
    np.testing.assert_array_equal(np.asarray(loose.data[0].y, dtype=float), counts.positive)
    assert counts.positive[3] == 1
    assert "τ = 0.001" in loose.layout.title.text


def test_pair_interaction_draws_the_multi_order_row() -> None:
    result = _result()
    fig = plots.pair_interaction(result, 1, 4)
    np.testing.assert_allclose(
        np.asarray(fig.data[0].y, dtype=float), result.multi_order[:, 1, 4], atol=1e-12
    )
    with pytest.raises(ValueError, match="two different players"):
        plots.pair_interaction(result, 2, 2)


def test_dashboard_is_the_services_result_figures() -> None:
    result = _result()
    figs = plots.dashboard(result)
    assert set(figs) == set(figures.FIGURE_NAMES)
    assert all(isinstance(f, go.Figure) for f in figs.values())
    served = figures.result_figures(result.arrays(), result.summary())
    for name, fig in figs.items():
        assert fig.to_plotly_json()["data"] == go.Figure(served[name]).to_plotly_json()["data"]
    np.testing.assert_allclose(
        np.asarray(figs["average_output"].data[0].y, dtype=float), result.u_bar, atol=1e-12
    )


def test_backend_figures_re_exports_the_library_builders() -> None:
    from backend import figures as served

    for name in figures.__all__:
        assert getattr(served, name) is getattr(figures, name), name
    assert served.result_figures is figures.result_figures
    assert set(served.__all__) == set(figures.__all__)


def test_library_plots_import_neither_backend_nor_worker() -> None:
    code = (
        "import sys, conceptlens.plots\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('backend', 'worker')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
