"""The whole §7 analysis of a demo-model layer, end to end (a smoke run)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conceptlens.components import (
    ComponentsError,
    TrainingPlan,
    analyze_components,
    component_maps,
    feature_extractor,
)
from conceptlens.models import DigitCNN, train_demo_model

Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
QUICK = TrainingPlan(orders=(0, 1, 2), width=16, epochs=2)


def finite(values: object) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=float)).all())


@pytest.mark.parametrize("layer", ["conv2", "relu2"])
def test_demo_layer_gives_finite_metrics(demo_cnn: DigitCNN, digits: Digits, layer: str) -> None:
    seen: list[int] = []
    result = analyze_components(
        demo_cnn, layer, digits, plan=QUICK, progress=lambda done, total: seen.append(done)
    )
    assert result.feature_shape == (32, 8, 8) and result.orders == (0, 1, 2)
    assert seen == list(range(1, 7))
    s, e = result.significance, result.effects
    assert e is not None and result.reliability is None
    assert finite(s.component) and finite(s.cumulative) and finite(s.residual)
    assert finite(result.test_r2) and result.test_r2[-1] > 0.5
    for values in (e.shapley_train, e.shapley_test, e.shapley_gap, e.effectiveness):
        assert finite(values) and values.shape == (4,)
    assert abs(e.shapley_train.sum() - (e.values_train[-1] - e.values_train[0])) < 1e-9
    assert e.values_train[-1] < e.values_train[0]  # the real feature beats its mean
    json.dumps(result.to_dict())
    image = digits[2][0]
    maps = component_maps(result.trained, image, feature_extractor(demo_cnn, layer)(image[None]))
    assert maps.components.shape == (3, 8, 8)


@pytest.mark.parametrize("estimator", ["cycle", "preview"])
def test_reliability_with_an_exemplary_model(
    demo_cnn: DigitCNN, digits: Digits, estimator: str
) -> None:
    other, _ = train_demo_model(seed=1, epochs=3)
    plan = TrainingPlan(orders=(0, 1), width=8, epochs=1, reliability=estimator)
    result = analyze_components(
        demo_cnn, "pool2", digits, plan=plan, exemplars=[other], with_effects=False
    )
    r = result.reliability
    assert r is not None and result.effects is None
    assert finite(r.cumulative) and ((r.cumulative >= 0) & (r.cumulative <= 1.0 + 1e-6)).all()
    assert result.to_dict()["reliability"]["component"][0] == pytest.approx(r.component[0])
    assert result.to_dict()["reliability_estimator"] == estimator
    assert (result.head_r2 is not None) == (estimator == "cycle")


def test_missing_tail_fails_before_any_training(demo_cnn: DigitCNN, digits: Digits) -> None:
    calls: list[int] = []

    def record(done: int, total: int) -> None:
        calls.append(done)

    with pytest.raises(ComponentsError, match="unknown layer"):
        analyze_components(demo_cnn, "nope", digits, plan=QUICK)
    with pytest.raises(ComponentsError, match="at most 10"):
        analyze_components(demo_cnn, "relu2", digits, plan=TrainingPlan(orders=tuple(range(10))))
    nested = torch.nn.Sequential(torch.nn.Sequential(demo_cnn))
    with pytest.raises(ComponentsError, match="not available for this model because"):
        analyze_components(
            nested, "0.0.conv2", digits, plan=QUICK, progress=lambda d, t: calls.append(d)
        )
    assert calls == []
