"""One call for the whole §7 analysis of a layer: features, disentanglers, every metric.

:func:`analyze_components` reads ``f`` at the layer for the training and test images,
trains ``Φ^(l)`` per order, and computes significance, effectiveness and over-fitting
(Shapley values through the network's tail) and, given exemplary models, reliability.
Models are torch modules or ONNX graphs (:class:`.onnx_graph.OnnxNetwork`, run by
onnxruntime through numpy on the CPU); the disentanglers train on the ``device`` given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from conceptlens.aliases import FloatArray, ProgressFn
from conceptlens.components.disentangler import (
    DEFAULT_ORDERS,
    TrainedOrder,
    train_disentanglers,
)
from conceptlens.components.features import (
    ComponentsError,
    FeatureFn,
    Network,
    extract,
    feature_extractor,
    tail_runner,
)
from conceptlens.components.metrics import (
    Effects,
    Reliability,
    Significance,
    effects,
    reliability,
    significance,
)
from conceptlens.components.reliable import CycleReliability, cycle_reliability
from conceptlens.components.shapley import MAX_PLAYERS

__all__ = ["ComponentsResult", "Data", "TrainingPlan", "analyze_components"]

Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""``(x_train [N, C, H, W], y_train [N], x_test, y_test)``: images in the model's input range."""


@dataclass(frozen=True)
class TrainingPlan:
    """Keyword arguments of :func:`.disentangler.train_disentanglers`, shared by every model."""

    orders: tuple[int, ...] = DEFAULT_ORDERS
    width: int = 32
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0
    warm_start: bool = True
    reliability: str = "cycle"
    """Estimator of reliability with exemplars: ``"cycle"`` (the paper's, :mod:`.reliable`)
    or ``"preview"`` (the fast closed form of :func:`.metrics.reliability` on separately
    trained disentanglers)."""


@dataclass
class ComponentsResult:
    """Everything :func:`analyze_components` measured; arrays are aligned with ``orders``."""

    layer: str
    orders: tuple[int, ...]
    feature_shape: tuple[int, ...]
    train_r2: FloatArray
    test_r2: FloatArray
    significance: Significance
    effects: Effects | None
    reliability: Reliability | None
    trained: list[TrainedOrder] = field(repr=False)
    reliability_estimator: str | None = None
    """``"cycle"`` or ``"preview"`` when reliability was measured."""
    head_r2: list[list[float]] | None = None
    """The cycle estimator's held-out ``R²`` of each head (target first), per order."""
    """The nets, e.g. for :func:`.maps.component_maps`; not part of :meth:`to_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: numbers and lists only, ``nan`` as ``None``."""
        out: dict[str, Any] = {
            "layer": self.layer,
            "orders": list(self.orders),
            "feature_shape": list(self.feature_shape),
            "train_r2": _plain(self.train_r2),
            "test_r2": _plain(self.test_r2),
            "seconds": [t.seconds for t in self.trained],
            "significance": _plain(vars(self.significance)),
            "effects": None if self.effects is None else _plain(vars(self.effects)),
            "reliability": None if self.reliability is None else _plain(vars(self.reliability)),
            "reliability_estimator": self.reliability_estimator,
            "reliability_head_r2": None if self.head_r2 is None else _plain(self.head_r2),
        }
        return out


def analyze_components(
    module: Network,
    layer: str,
    data: Data,
    *,
    plan: TrainingPlan | None = None,
    exemplars: Sequence[Network] = (),
    with_effects: bool = True,
    include_residual: bool = True,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> ComponentsResult:
    """Disentangle ``f`` at ``layer`` of ``module`` into components and measure them (§7).

    Significance on the training images; effectiveness and over-fitting (``with_effects``)
    need the network after the layer (:func:`.features.tail_runner`, checked before any
    training); reliability runs when ``exemplars`` (models of the same task with the same
    layer) are given: their own disentanglers are trained on the same images with the same
    ``plan``, maps are fitted on the training images and scored on the test images.
    ``module`` and ``exemplars`` may be torch modules or ONNX graphs, mixed (features of
    ONNX graphs are computed on the CPU; ``layer`` is then a node output).

    ``progress(done, total)`` counts epochs over all models and orders; it may raise to
    cancel. Cost: ``1 + len(exemplars)`` × the cost of
    :func:`~.disentangler.train_disentanglers`, plus ``2·2^P`` tail passes for the effects.
    """
    plan = plan or TrainingPlan()
    players = len(plan.orders) + include_residual
    if with_effects and players > MAX_PLAYERS:
        raise ComponentsError(f"Shapley values over {players} components: at most {MAX_PLAYERS}")
    if plan.reliability not in ("cycle", "preview"):
        raise ComponentsError(f"no reliability estimator {plan.reliability!r}")
    example = data[0][:8].to(_device_of(module))
    tail = tail_runner(module, layer, example=example) if with_effects else None
    cycle = plan.reliability == "cycle" and bool(exemplars)
    trainings = 1 + (1 if cycle else len(exemplars))
    ticker = _Ticker(progress, trainings * len(plan.orders) * plan.epochs)
    if cycle:
        target = _fit_model(module, layer, data, plan, device, ticker)
        measured = _cycle(target, exemplars, layer, data, plan, device, ticker)
        result = _result(module, layer, data, plan, tail, include_residual, target, [])
        result.reliability, result.head_r2 = measured.reliability, measured.head_r2
        result.reliability_estimator = "cycle"
        return result
    target, *others = (
        _fit_model(model, layer, data, plan, device, ticker) for model in (module, *exemplars)
    )
    result = _result(module, layer, data, plan, tail, include_residual, target, others)
    result.reliability_estimator = "preview" if others else None
    return result


def _cycle(
    target: _Fitted,
    exemplars: Sequence[Network],
    layer: str,
    data: Data,
    plan: TrainingPlan,
    device: torch.device | str,
    ticker: _Ticker,
) -> CycleReliability:
    """The paper's estimator: the exemplars' features, then one multi-head training."""
    x_train, _, x_test, _ = data
    features_train, features_test = [target.f_train], [target.f_test]
    for model in exemplars:
        fx = _on_device_of(model, feature_extractor(model, layer))
        features_train.append(extract(fx, x_train))
        features_test.append(extract(fx, x_test))
    return cycle_reliability(
        x_train, features_train, x_test, features_test, orders=plan.orders, width=plan.width,
        epochs=plan.epochs, lr=plan.lr, batch_size=plan.batch_size, seed=plan.seed,
        device=device, progress=ticker.next_block(len(plan.orders) * plan.epochs),
    )  # fmt: skip


def _result(
    module: Network,
    layer: str,
    data: Data,
    plan: TrainingPlan,
    tail: FeatureFn | None,
    include_residual: bool,
    target: _Fitted,
    others: list[_Fitted],
) -> ComponentsResult:
    return ComponentsResult(
        layer=layer,
        orders=tuple(plan.orders),
        feature_shape=tuple(target.f_train.shape[1:]),
        train_r2=np.array([t.train_r2 for t in target.trained]),
        test_r2=np.array([t.test_r2 for t in target.trained]),
        significance=significance(target.phis_train, target.f_train, plan.orders),
        effects=None
        if tail is None
        else _effects(target, data, _on_device_of(module, tail), plan, include_residual),
        reliability=reliability(
            target.phis_train,
            target.phis_test,
            [o.phis_train for o in others],
            [o.phis_test for o in others],
        )
        if others
        else None,
        trained=target.trained,
    )


@dataclass
class _Fitted:
    """One model's features and its trained disentanglers' outputs, on the CPU."""

    trained: list[TrainedOrder]
    f_train: torch.Tensor
    f_test: torch.Tensor
    phis_train: torch.Tensor
    phis_test: torch.Tensor


def _effects(
    target: _Fitted, data: Data, tail: FeatureFn, plan: TrainingPlan, include_residual: bool
) -> Effects:
    _, y_train, _, y_test = data
    return effects(
        (target.phis_train, target.f_train, y_train),
        (target.phis_test, target.f_test, y_test),
        tail,
        plan.orders,
        include_residual=include_residual,
    )


def _fit_model(
    model: Network,
    layer: str,
    data: Data,
    plan: TrainingPlan,
    device: torch.device | str,
    ticker: _Ticker,
) -> _Fitted:
    """Features of ``model`` at ``layer``, its disentanglers, and their outputs."""
    x_train, _, x_test, _ = data
    fx = _on_device_of(model, feature_extractor(model, layer))
    f_train, f_test = extract(fx, x_train), extract(fx, x_test)
    trained = train_disentanglers(
        x_train,
        f_train,
        x_test,
        f_test,
        orders=plan.orders,
        width=plan.width,
        epochs=plan.epochs,
        lr=plan.lr,
        batch_size=plan.batch_size,
        seed=plan.seed,
        device=device,
        warm_start=plan.warm_start,
        keep_outputs=True,
        progress=ticker.next_block(len(plan.orders) * plan.epochs),
    )
    outputs = _take_outputs(trained)
    phis_train = torch.stack([train for train, _ in outputs])
    phis_test = torch.stack([test for _, test in outputs])
    return _Fitted(trained, f_train, f_test, phis_train, phis_test)


def _take_outputs(trained: list[TrainedOrder]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The kept outputs, released from the results (they are stacked once, not kept twice)."""
    outputs = []
    for t in trained:
        assert t.outputs is not None
        outputs.append(t.outputs)
        t.outputs = None
    return outputs


def _on_device_of(module: Network, fn: FeatureFn) -> FeatureFn:
    """``fn`` fed on the module's device, answering on the CPU (ONNX graphs: the CPU)."""
    device = _device_of(module)

    def run(t: torch.Tensor) -> torch.Tensor:
        return fn(t.to(device)).cpu()

    return run


def _device_of(module: Network) -> torch.device:
    """Where the model takes its inputs: its parameters' device; the CPU for ONNX graphs."""
    if not isinstance(module, nn.Module):
        return torch.device("cpu")
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class _Ticker:
    """Turns per-model progress ``(done, block)`` into overall ``(offset + done, total)``."""

    def __init__(self, progress: ProgressFn | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.offset = 0

    def next_block(self, size: int) -> ProgressFn:
        offset = self.offset
        self.offset += size

        def report(done: int, _block: int) -> None:
            if self.progress is not None:
                self.progress(offset + done, self.total)

        return report


def _plain(value: Any) -> Any:
    """Arrays → lists, numpy scalars → floats, ``nan`` → ``None``, recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    return value
