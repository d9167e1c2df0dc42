"""Output functions on logit tables."""

from __future__ import annotations

import numpy as np
import pytest

from conceptlens.outputs import output_values, predicted_class


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
