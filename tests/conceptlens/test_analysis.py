"""From a logit table to results, without forward passes; result files."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from conceptlens import analysis
from conceptlens.analysis import FORMAT, interactions_from_logits
from conceptlens.outputs import output_values
from conceptlens.pairwise import multi_order
from conceptlens.sparsity import sorted_strengths
from conceptlens.transforms import faithfulness_residual, harsanyi


@pytest.fixture
def logits() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(1 << 6, 4)).astype(np.float32)


def test_derived_results_match_their_definitions(logits: np.ndarray) -> None:
    result = interactions_from_logits(logits, target=2, output="log-prob", tau=0.1, k=5)
    v = output_values(logits, 2, "log-prob")
    np.testing.assert_allclose(result.v, v)
    np.testing.assert_allclose(result.interactions, harsanyi(v))
    np.testing.assert_allclose(result.multi_order, multi_order(harsanyi(v)))
    assert result.residual < 1e-9
    assert result.J.shape == result.F.shape == (5,)
    assert result.J.mean() == pytest.approx(1.0)
    assert len(result.top_masks) == 5 and 0 not in result.top_masks.tolist()


def test_predicted_target_is_the_class_with_all_players_present(logits: np.ndarray) -> None:
    result = interactions_from_logits(logits)
    assert result.target == int(np.argmax(logits[-1])) == result.prediction


def test_changing_target_or_output_reuses_the_table(logits: np.ndarray) -> None:
    a = interactions_from_logits(logits, target=0, output="logit")
    b = interactions_from_logits(logits, target=1, output="prob")
    np.testing.assert_allclose(a.v, logits[:, 0])
    assert not np.allclose(a.interactions, b.interactions)


def test_save_writes_npz_and_json_sidecar(tmp_path: Path, logits: np.ndarray) -> None:
    result = interactions_from_logits(logits, and_or_steps=50)
    npz, sidecar = result.save(tmp_path / "result.npz")
    data = np.load(npz)
    n = 6
    assert data["logits"].shape == (1 << n, 4)
    assert data["v"].shape == data["interactions"].shape == (1 << n,)
    assert data["multi_order"].shape == (n - 1, n, n)
    assert data["J"].shape == data["F"].shape == (n - 1,)
    assert data["and_interactions"].shape == data["or_interactions"].shape == (1 << n,)
    np.testing.assert_allclose(harsanyi(data["v"]), data["interactions"])
    summary = json.loads(sidecar.read_text())
    assert summary["format"] == FORMAT
    assert summary["n_players"] == n
    assert summary["and_or"]["residual"] < 1e-9
    assert summary["top_sets"][0]["players"] == [
        i for i in range(n) if (summary["top_sets"][0]["mask"] >> i) & 1
    ]


def test_rejects_a_table_that_is_not_over_subsets() -> None:
    with pytest.raises(ValueError, match="2\\*\\*n"):
        interactions_from_logits(np.zeros((12, 3)))


def test_the_analysis_holds_two_value_tables_at_its_peak() -> None:
    """Issue 14: an analysis's peak is the logit table plus two value tables (``v`` and the
    dividends). NumPy reports its allocations to tracemalloc; before the tables were made
    span by span, the residual, the counts, top-k and the sorted curve each made one to three
    more tables of 2^n float64 (6 in all). The allowance, 6 MiB (less than a table), is
    the multi-order's row blocks (``pairwise._BLOCK_VALUES``) and the spans."""
    n = 20
    logits = np.random.default_rng(0).normal(size=(1 << n, 10)).astype(np.float32)
    table_bytes = (1 << n) * 8
    tracemalloc.start()
    try:
        result = interactions_from_logits(logits, k=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 2 * table_bytes + (6 << 20), f"{peak / table_bytes:.2f} value tables"
    assert np.array_equal(result.interactions, harsanyi(result.v))  # the checked table's bits
    assert result.residual == faithfulness_residual(result.v, result.interactions)
    assert "sorted_strength" not in vars(result)  # made when first used …
    assert np.array_equal(result.sorted_strength, sorted_strengths(result.interactions))
    assert result.arrays()["sorted_strength"] is result.sorted_strength  # … then kept


@pytest.mark.parametrize("output", ["log-odds", "logit", "prob"])
@pytest.mark.parametrize("classes", [10, 1])
def test_a_large_analysis_holds_one_value_table_and_the_same_results(
    output: str, classes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From ``KEEP_VALUES_BELOW`` players on, ``v`` turns into the dividends in place and is
    made again from the logits when read: the peak is one value table (issue 14 bounds it
    by two), and every result is bit for bit what the two-table path gives. Lowered to
    n = 18 here (the default, 22, would take seconds); ``classes`` 1 is a binary model
    (``output_values`` chunks it as two classes)."""
    n = 18
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1 << n, classes)).astype(np.float32)
    kept = interactions_from_logits(logits, output=output, k=20)  # type: ignore[arg-type]
    monkeypatch.setattr(analysis, "KEEP_VALUES_BELOW", n)
    table_bytes = (1 << n) * 8
    tracemalloc.start()
    try:
        result = interactions_from_logits(logits, output=output, k=20)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= table_bytes + (6 << 20), f"{peak / table_bytes:.2f} value tables"
    assert kept.values is not None and result.values is None
    assert np.array_equal(result.interactions, kept.interactions)
    assert result.residual == kept.residual
    assert np.array_equal(result.v, kept.v)  # made again from the logits, the same bits
    for name, array in kept.arrays().items():
        assert np.array_equal(result.arrays()[name], array), name
    assert result.summary() == kept.summary()


def test_the_in_place_check_reports_a_nan() -> None:
    """A NaN in ``v`` (a model that returned one) shows as a NaN residual on both paths."""
    logits = np.random.default_rng(2).normal(size=(1 << 8, 3)).astype(np.float32)
    logits[5, 0] = np.nan
    kept = interactions_from_logits(logits, target=0, output="logit")
    assert np.isnan(kept.residual)
    original = analysis.KEEP_VALUES_BELOW
    analysis.KEEP_VALUES_BELOW = 8
    try:
        result = interactions_from_logits(logits, target=0, output="logit")
    finally:
        analysis.KEEP_VALUES_BELOW = original
    assert np.isnan(result.residual)
