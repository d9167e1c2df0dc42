"""Output functions on logit tables."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from conceptlens import outputs
from conceptlens.outputs import OUTPUTS, output_values, predicted_class


def test_output_kinds_agree_with_softmax() -> None:
    z = np.random.default_rng(0).normal(size=(50, 5)) * 4
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    for y in range(5):
        np.testing.assert_allclose(output_values(z, y, "prob"), p[:, y])
        np.testing.assert_allclose(output_values(z, y, "log-prob"), np.log(p[:, y]))
        np.testing.assert_allclose(output_values(z, y, "logit"), z[:, y])
        np.testing.assert_allclose(output_values(z, y, "log-odds"), np.log(p[:, y] / (1 - p[:, y])))


def test_log_odds_is_stable_for_confident_logits() -> None:
    z = np.array([[1000.0, 0.0, -5.0]])
    value = output_values(z, 0, "log-odds")
    assert np.isfinite(value).all()
    assert value[0] == pytest.approx(1000.0 - np.log1p(np.exp(-5.0)), abs=1e-9)


def test_single_logit_is_binary_log_odds() -> None:
    z = np.array([[0.7], [-2.0]])
    np.testing.assert_allclose(output_values(z, 1, "log-odds"), [0.7, -2.0])
    assert predicted_class(z[0]) == 1 and predicted_class(z[1]) == 0


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="3 classes"):
        output_values(np.zeros((1, 3)), 3)
    with pytest.raises(ValueError, match="unknown output"):
        output_values(np.zeros((1, 3)), 0, "odds")  # type: ignore[arg-type]


def reference_output_values(logits: np.ndarray, target: int, kind: str) -> np.ndarray:
    """The implementation before chunking (whole-table float64 copy), kept as the oracle."""
    z = np.asarray(logits, dtype=np.float64)
    if z.shape[-1] == 1:
        z = np.concatenate([np.zeros_like(z), z], axis=-1)
    zy = z[..., target]
    if kind == "logit":
        return zy

    def lse(a: np.ndarray) -> np.ndarray:
        top = a.max(axis=-1, keepdims=True)
        return (top + np.log(np.exp(a - top).sum(axis=-1, keepdims=True)))[..., 0]

    log_all = lse(z)
    if kind == "log-prob":
        return zy - log_all
    if kind == "prob":
        return np.exp(zy - log_all)
    others = z.copy()
    others[..., target] = -np.inf
    return zy - lse(others)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk_values", [1, 7, 30, 1000])
def test_chunked_equals_the_whole_table_formula(
    dtype: type, chunk_values: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bit-identical to the old formula for every kind and target, across chunk boundaries
    (row counts below, at and just past a multiple of the chunk, and a partial last chunk)."""
    monkeypatch.setattr(outputs, "CHUNK_VALUES", chunk_values)
    rng = np.random.default_rng(chunk_values)
    for classes in (1, 2, 3, 10):
        step = outputs.chunk_rows(2 if classes == 1 else classes)
        for rows in sorted({0, 1, step - 1, step, step + 1, 3 * step, 3 * step + 2, 64}):
            z: np.ndarray = (rng.normal(size=(rows, classes)) * 6).astype(dtype)
            z[::5, 0] += 200  # confident rows exercise the stable forms
            for target in range(2 if classes == 1 else classes):
                for kind in OUTPUTS:
                    got = output_values(z, target, kind)  # type: ignore[arg-type]
                    want = reference_output_values(z, target, kind)
                    assert got.dtype == np.float64 and got.shape == want.shape
                    np.testing.assert_array_equal(got, want)


def test_default_chunk_equals_the_whole_table_formula() -> None:
    step = outputs.chunk_rows(10)
    z = np.random.default_rng(1).normal(size=(2 * step + 3, 10)).astype(np.float32) * 5
    for kind in OUTPUTS:
        np.testing.assert_array_equal(
            output_values(z, 7, kind),  # type: ignore[arg-type]
            reference_output_values(z, 7, kind),
        )


def test_leading_dimensions_and_views_are_kept() -> None:
    z = np.random.default_rng(3).normal(size=(4, 5, 6))
    for kind in OUTPUTS:
        np.testing.assert_array_equal(
            output_values(z, 2, kind),  # type: ignore[arg-type]
            reference_output_values(z, 2, kind),
        )
        strided = z[:, ::2, :]  # not contiguous: reshape copies, values unchanged
        np.testing.assert_array_equal(
            output_values(strided, 1, kind),  # type: ignore[arg-type]
            reference_output_values(strided, 1, kind),
        )
    before = z.copy()
    output_values(z, 0, "log-odds")  # a float64 input is never written to
    np.testing.assert_array_equal(z, before)


def test_memory_is_the_output_plus_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """No full-size float64 copy: traced peak ≤ the output + a few chunk-sized temporaries.

    NumPy reports its data buffers to tracemalloc, so this is deterministic; the whole-table
    formula's peak was over 3× the float32 table (a float64 copy plus temporaries)."""
    monkeypatch.setattr(outputs, "CHUNK_VALUES", 1 << 12)
    z = np.random.default_rng(0).normal(size=(1 << 15, 10)).astype(np.float32)
    bound = (1 << 15) * 8 + 8 * 8 * outputs.CHUNK_VALUES  # output + 8 chunk temporaries
    assert bound < z.size * 8 // 4  # far below one float64 copy of the table
    for kind in OUTPUTS:
        tracemalloc.start()
        try:
            output_values(z, 3, kind)  # type: ignore[arg-type]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak <= bound, (kind, peak, bound)
    tracemalloc.start()
    try:
        reference_output_values(z, 3, "log-odds")
        _, old_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert old_peak > 3 * z.nbytes  # the check would have caught the old formula
