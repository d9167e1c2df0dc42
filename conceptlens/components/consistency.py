"""Knowledge consistency between two models — SCIENCE.md §8 (seed 004, Liang et al.).

The feature ``f_A`` of model A at a layer is reconstructed from the feature ``f_B`` of model
B (same images) by a sum of branches of increasing non-linearity, the *fuzziness orders*
``k = 0, 1, 2``::

    f_A = x^(0) + x^(1) + x^(2) + ε,      x^(k) = g_k(f_B)

``x^(k)`` is the component of ``f_A`` consistent with B at order ``k`` and ``ε`` the
inconsistent rest. This module's estimator (the choices are documented in docs/science.md):

* ``g_0`` is **affine** and fitted in closed form (ridge least squares with a negligible
  penalty, in float64): for a feature map it is a convolution over a 5×5 window of ``f_B``
  (resampled to ``f_A``'s grid as the disentangler resamples its input) with a free
  intercept per entry of ``f_A``; when ``f_A`` is flat it is a full affine map of the whole
  of ``f_B`` (pooled to 4×4 positions when that exceeds :data:`MAX_LINEAR_INPUTS` values).
  For maps that is exactly the set of functions the disentangler ``Φ^(0)`` of
  :mod:`.disentangler` can represent (stem 3×3 + head 3×3 = a 5×5 view), so ``x^(0)`` is the
  *best* linear reconstruction on the fitting images, not an approximation of it.
* ``g_k`` for ``k ≥ 1`` is a :class:`~.disentangler.Disentangler` with ``k`` ReLU layers
  taking ``f_B`` as its input, trained (Adam, MSE) on what the lower orders left,
  ``f_A − Σ_{j<k} x^(j)``, its head starting at zero so it starts by adding nothing. If after
  training it fits those images worse than its constant (the residual's per-entry mean),
  the branch is replaced by that constant. The fit is *stage-wise* (each order explains
  what lower orders could not), where the paper trains the branches jointly.

What it guarantees, on the fitting images: the mean square of what is left after order
``k`` never increases with ``k``, so ``MS(ε) ≤ MS(f_A − x^(0))``, and each ``k ≥ 1`` part
has ``MS(x^(k) − mean) ≤ 4·MS(residual before k)`` (triangle inequality). Hence when ``f_A``
is an affine function of ``f_B`` inside the window, ``x^(0) = f_A`` up to rounding and the
``k = 1, 2`` parts and ``ε`` have variance ≈ 0; when ``f_A`` is independent of ``f_B``,
``x^(0)`` only fits noise (≈ ``Din/rows`` of the variance on the fitting images, ≈ 0 or
below on held-out images) and ``ε`` carries almost all of the variance on held-out images.

Variances are :func:`.stats.variance` (per entry over images, averaged over entries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from conceptlens.aliases import ProgressFn
from conceptlens.components.disentangler import (
    Disentangler,
    _fit,
    _Plan,
    _reproducible,
    _resampler,
    predict,
)
from conceptlens.components.features import ComponentsError, Network, extract, feature_extractor
from conceptlens.components.pipeline import _on_device_of
from conceptlens.components.stats import variance

__all__ = [
    "CONSISTENCY_ORDERS",
    "ConsistencyPlan",
    "ConsistencyResult",
    "Direction",
    "fit_consistency",
    "knowledge_consistency",
]

CONSISTENCY_ORDERS = (0, 1, 2)
"""The fuzziness orders of the paper's experiments."""
WINDOW = 5
"""Side of the window of ``f_B`` an entry of ``x^(0)`` sees (= ``Φ^(0)``'s 5×5 view)."""
MAX_LINEAR_INPUTS = 4096
"""Largest number of inputs of the closed-form linear branch (its Gram matrix is this²)."""
RIDGE = 1e-9
"""Ridge penalty of the linear branch, relative to the mean diagonal of its Gram matrix."""
CHUNK = 64
"""Images whose windows the linear branch holds at once (64 × 64 positions × 800 inputs of
float64: 26 MB on the demo's relu2)."""


@dataclass(frozen=True)
class ConsistencyPlan:
    """Settings of one fit: orders (0 first), the non-linear branches' width and training."""

    orders: tuple[int, ...] = CONSISTENCY_ORDERS
    width: int = 16
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0


@dataclass
class Direction:
    """``f_target`` reconstructed from ``f_source``: the parts and their variances.

    ``parts_*`` are ``[K + 1, N, *feature]``: ``x^(k)`` for each order, then ``ε``.
    """

    orders: tuple[int, ...]
    feature_shape: tuple[int, ...]
    parts_train: torch.Tensor = field(repr=False)
    parts_test: torch.Tensor = field(repr=False)
    f_train: torch.Tensor = field(repr=False)
    f_test: torch.Tensor = field(repr=False)

    def variances(self, split: str = "test") -> dict[str, Any]:
        """``Var[f]``, ``Var[x^(k)]`` per order, ``Var[ε]``, and the cumulative ``R²`` of
        orders ``≤ k`` (``1 − MS(f − Σ_{j≤k} x^(j)) / Var[f]``) on ``split``."""
        parts, f = (self.parts_test, self.f_test) if split == "test" else (
            self.parts_train, self.f_train)  # fmt: skip
        total = variance(f)
        cumulative, r2 = torch.zeros_like(f), []
        for k in range(len(self.orders)):
            cumulative = cumulative + parts[k]
            error = float((f - cumulative).pow(2).mean())
            r2.append(1.0 - error / total if total > 0 else float("nan"))
        return {
            "feature": total,
            "consistent": [variance(parts[k]) for k in range(len(self.orders))],
            "inconsistent": variance(parts[-1]),
            "cumulative_r2": r2,
        }

    def channel_variances(self, split: str = "test") -> torch.Tensor:
        """``[K + 2, C]``: per channel (or unit) of the feature, ``Var`` of ``f``, each
        ``x^(k)`` and ``ε`` (entries of a channel pooled)."""
        parts, f = (self.parts_test, self.f_test) if split == "test" else (
            self.parts_train, self.f_train)  # fmt: skip
        rows = [f, *parts]
        return torch.stack([_per_channel(t) for t in rows])


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    centred = t - t.mean(dim=0)
    sq = centred.pow(2)
    return sq.mean(dim=(0, *range(2, t.dim()))) if t.dim() > 2 else sq.mean(dim=0)


def fit_consistency(
    source_train: torch.Tensor,
    target_train: torch.Tensor,
    source_test: torch.Tensor,
    target_test: torch.Tensor,
    *,
    plan: ConsistencyPlan | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> Direction:
    """Reconstruct ``target`` (``f_A``, ``[N, C, H, W]`` or ``[N, D]``) from ``source``
    (``f_B`` of the same images) by orders ``plan.orders`` (see the module docstring).

    Fitted on the training pair, applied to both. ``progress(done, total)`` after the linear
    branch and after every epoch of the others, ``total = 1 + (K − 1)·epochs``; it may raise
    to cancel. Deterministic for a seed on the CPU (one thread, deterministic kernels).
    Cost: a Gram matrix of ``rows × Din²`` (rows = images × positions) for ``k = 0``, then
    what :func:`~.disentangler.train_disentanglers` costs per order.
    """
    plan = plan or ConsistencyPlan()
    _check(source_train, target_train, source_test, target_test, plan)
    s_train, s_test = _as_maps(source_train), _as_maps(source_test)
    t_train, t_test = target_train.float(), target_test.float()
    total = 1 + (len(plan.orders) - 1) * plan.epochs

    def tick(done: int) -> None:
        if progress is not None:
            progress(done, total)

    linear = _LinearBranch(tuple(s_train.shape[1:]), tuple(t_train.shape[1:]))
    linear.fit(s_train, t_train)
    train_parts = [linear(s_train)]
    test_parts = [linear(s_test)]
    tick(1)
    run = _Plan(plan.width, plan.epochs, plan.lr, plan.batch_size, plan.seed,
                torch.device(device), False)  # fmt: skip
    with _reproducible(run.device):
        for i, order in enumerate(plan.orders[1:]):
            residual = t_train - sum(train_parts)
            offset = 1 + i * plan.epochs
            net = _branch(order, s_train, residual, run, lambda e, o=offset: tick(o + e))
            train_parts.append(predict(net, s_train.to(run.device)).cpu())
            test_parts.append(predict(net, s_test.to(run.device)).cpu())
    train_parts.append(t_train - sum(train_parts))
    test_parts.append(t_test - sum(test_parts))
    return Direction(
        orders=tuple(plan.orders),
        feature_shape=tuple(t_train.shape[1:]),
        parts_train=torch.stack(train_parts),
        parts_test=torch.stack(test_parts),
        f_train=t_train,
        f_test=t_test,
    )


def _check(
    s_train: torch.Tensor,
    t_train: torch.Tensor,
    s_test: torch.Tensor,
    t_test: torch.Tensor,
    plan: ConsistencyPlan,
) -> None:
    if len(s_train) != len(t_train) or len(s_test) != len(t_test):
        raise ComponentsError("each image needs the features of both models")
    if len(s_train) < 2 or len(s_test) < 1:
        raise ComponentsError("knowledge consistency needs ≥ 2 fitting and ≥ 1 held-out images")
    if s_train.shape[1:] != s_test.shape[1:] or t_train.shape[1:] != t_test.shape[1:]:
        raise ComponentsError("fitting and held-out features must have the same shapes")
    orders = list(plan.orders)
    if not orders or orders[0] != 0 or orders != sorted(set(orders)):
        raise ComponentsError(f"orders must start at 0 and increase; got {orders}")
    for t in (s_train, t_train):
        if t.dim() not in (2, 4):
            raise ComponentsError(
                f"a feature must be a map [C, H, W] or a vector [D]; got {list(t.shape[1:])}"
            )


def _as_maps(f: torch.Tensor) -> torch.Tensor:
    """A flat feature ``[N, D]`` as ``[N, D, 1, 1]``: the branches read feature maps."""
    f = f.float()
    return f[:, :, None, None] if f.dim() == 2 else f


class _LinearBranch:
    """``x^(0)``: the least-squares affine map of :data:`WINDOW`-wide windows of the
    resampled source, shared over positions, with a free intercept per target entry."""

    def __init__(self, source_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> None:
        c, h, w = source_shape
        self.target_shape = target_shape
        self.spatial = len(target_shape) == 3
        if self.spatial:
            grid = (target_shape[1], target_shape[2])
        else:  # a flat target reads the whole source when it fits, else the source pooled
            grid = (h, w) if c * h * w <= MAX_LINEAR_INPUTS else (min(h, 4), min(w, 4))
        self.resample, c_grid = _resampler(c, (h, w), grid)
        self.inputs = c_grid * WINDOW * WINDOW if self.spatial else c_grid * grid[0] * grid[1]
        if self.inputs > MAX_LINEAR_INPUTS:
            raise ComponentsError(
                f"the linear reconstruction would read {self.inputs} values per position "
                f"(at most {MAX_LINEAR_INPUTS}); choose a layer with fewer channels"
            )
        self.x_mean = torch.zeros(())
        self.y_mean = torch.zeros(())
        self.weight = torch.zeros(())

    def _rows(self, source: torch.Tensor) -> torch.Tensor:
        """``[N, P, Din]``: per image, the inputs each target position sees."""
        with torch.no_grad():
            g = self.resample(source).double()
        if not self.spatial:
            return g.reshape(len(g), 1, -1)
        windows = F.unfold(g, WINDOW, padding=WINDOW // 2)  # [N, Din, P]
        return windows.transpose(1, 2)

    def _targets(self, target: torch.Tensor) -> torch.Tensor:
        """``[N, P, Dout]``: a map's channels per position, or a vector at one position."""
        t = target.double()
        return t.flatten(2).transpose(1, 2) if self.spatial else t.reshape(len(t), 1, -1)

    def fit(self, source: torch.Tensor, target: torch.Tensor) -> None:
        """Least squares in two passes over chunks of images (means, then the Gram matrix), so
        memory holds one chunk's windows, not every image's."""
        pairs = list(zip(source.split(CHUNK), target.split(CHUNK), strict=True))
        x_sum = sum((self._rows(sb).sum(dim=0) for sb, _ in pairs), torch.zeros(()))
        y_sum = sum((self._targets(tb).sum(dim=0) for _, tb in pairs), torch.zeros(()))
        self.x_mean, self.y_mean = x_sum / len(source), y_sum / len(source)  # intercepts
        outputs = self.y_mean.shape[-1]
        gram = torch.zeros(self.inputs, self.inputs, dtype=torch.float64)
        cross = torch.zeros(self.inputs, outputs, dtype=torch.float64)
        for sb, tb in pairs:
            xc = (self._rows(sb) - self.x_mean).reshape(-1, self.inputs)
            yc = (self._targets(tb) - self.y_mean).reshape(-1, outputs)
            gram += xc.T @ xc
            cross += xc.T @ yc
        ridge = RIDGE * float(gram.diagonal().mean()) or RIDGE
        gram.diagonal().add_(ridge)
        self.weight = torch.linalg.solve(gram, cross)

    def __call__(self, source: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._apply(sb) for sb in source.split(CHUNK)])

    def _apply(self, source: torch.Tensor) -> torch.Tensor:
        y = (self._rows(source) - self.x_mean) @ self.weight + self.y_mean  # [N, P, Dout]
        if not self.spatial:
            return y.reshape(len(y), *self.target_shape).float()
        c, h, w = self.target_shape
        return y.transpose(1, 2).reshape(len(y), c, h, w).float()


def _branch(
    order: int,
    source: torch.Tensor,
    residual: torch.Tensor,
    run: _Plan,
    on_epoch: Any,
) -> nn.Module:
    """``g_order`` trained on ``residual``; its constant when it fits no better than that."""
    torch.default_generator.manual_seed(run.seed * 1_000_003 + 7919 * order)
    c, h, w = source.shape[1:]
    net = Disentangler((c, h, w), tuple(residual.shape[1:]), order=order, width=run.width)
    net = net.to(run.device)
    s, r = source.to(run.device), residual.to(run.device)
    net.fit_scales(s, r)
    with torch.no_grad():  # the head starts at zero: the branch starts as its constant
        for parameter in net.head.parameters():
            parameter.zero_()
    target = (r - net.f_shift) / net.f_scale
    _fit(net, s, target, run, order, on_epoch)
    fitted = float((predict(net, s) - r).pow(2).mean())
    constant = float((r - net.f_shift).pow(2).mean())
    if not math.isfinite(fitted) or fitted > constant:
        with torch.no_grad():
            for parameter in net.head.parameters():
                parameter.zero_()
    return net


@dataclass
class ConsistencyResult:
    """Both directions between models A and B at their layers."""

    layer_a: str
    layer_b: str
    a_from_b: Direction
    b_from_a: Direction

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: variances per split and direction (``nan`` as ``None``)."""

        def side(d: Direction) -> dict[str, Any]:
            return {
                "feature_shape": list(d.feature_shape),
                "train": _plain(d.variances("train")),
                "test": _plain(d.variances("test")),
            }

        return {
            "layer_a": self.layer_a,
            "layer_b": self.layer_b,
            "orders": list(self.a_from_b.orders),
            "a_from_b": side(self.a_from_b),
            "b_from_a": side(self.b_from_a),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return value


def knowledge_consistency(
    model_a: Network,
    layer_a: str,
    model_b: Network,
    layer_b: str,
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    *,
    inputs_b: tuple[torch.Tensor, torch.Tensor] | None = None,
    plan: ConsistencyPlan | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> ConsistencyResult:
    """§8 between ``model_a`` at ``layer_a`` and ``model_b`` at ``layer_b``: A from B, then
    B from A, each fitted on ``x_train`` and measured on both image sets.

    ``inputs_b``: the same images as ``(x_train, x_test)`` in model B's input space when it
    normalises them differently from A. Features are read on each model's device and fitted
    on ``device``. ``progress(done, total)`` counts both directions' steps (see
    :func:`fit_consistency`).
    """
    plan = plan or ConsistencyPlan()
    xb_train, xb_test = inputs_b if inputs_b is not None else (x_train, x_test)
    if len(xb_train) != len(x_train) or len(xb_test) != len(x_test):
        raise ComponentsError("both models need the same images")
    fa = _on_device_of(model_a, feature_extractor(model_a, layer_a))
    fb = _on_device_of(model_b, feature_extractor(model_b, layer_b))
    feats = [extract(fa, x_train), extract(fa, x_test), extract(fb, xb_train), extract(fb, xb_test)]
    a_train, a_test, b_train, b_test = (_on_cpu(t) for t in feats)
    per = 1 + (len(plan.orders) - 1) * plan.epochs

    def shifted(offset: int) -> ProgressFn:
        def report(done: int, _total: int) -> None:
            if progress is not None:
                progress(offset + done, 2 * per)

        return report

    a_from_b = fit_consistency(b_train, a_train, b_test, a_test, plan=plan, device=device,
                               progress=shifted(0))  # fmt: skip
    b_from_a = fit_consistency(a_train, b_train, a_test, b_test, plan=plan, device=device,
                               progress=shifted(per))  # fmt: skip
    return ConsistencyResult(layer_a, layer_b, a_from_b, b_from_a)


def _on_cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().cpu()
