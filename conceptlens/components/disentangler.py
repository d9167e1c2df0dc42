"""Disentangler nets ``Φ^(l)`` and their training — SCIENCE.md §7 (seed 001).

``Φ^(l)`` maps the input image ``x`` to the target feature's shape with exactly ``l`` ReLU
layers and is trained with the MSE ``E_x‖Φ^(l)(x) − f(x)‖²`` to mimic ``f``; the feature
components are differences of nets of increasing ``l`` (:mod:`.metrics`).

Architecture (residual, after the paper's "ReLU + conv" blocks)::

    x → standardise → resample to the grid → stem conv 3×3
      → block 1 → … → block l → head → un-standardise            block: h ← h + conv3×3(ReLU(h))

* the *grid* is the feature map's ``H×W`` (a flat feature uses the input pooled to at most
  ``flat_grid × flat_grid``); the input reaches it losslessly by pixel-unshuffle when the
  sizes divide evenly (space-to-depth: 16×16×1 → 8×8×4), else by adaptive average pooling
  (or nearest upsampling), all linear;
* the *head* is a 3×3 conv to the feature's channels (stem and head together see 5×5 grid
  cells, which covers a DigitCNN ``conv2``/``relu2`` unit's 10×10-pixel receptive field, so
  ``Φ^(0)`` is not handicapped by a narrow view: on the demo's ``relu2`` its R² rose from
  0.55 with a 1×1 head to 0.69), or flatten + linear for a flat feature;
* the input is standardised by one scalar mean/std of the training images and the output
  un-standardised by the target's per-entry training mean and one scalar std: affine maps.

So ``Φ^(0)`` is purely linear (affine) in ``x``, and ``Φ^(l)`` has exactly ``l``
``nn.ReLU`` modules, one per residual block. Cost per image and block: ``9·width²·H·W``
multiply-adds (stem and head add about one block more).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from conceptlens.aliases import ProgressFn
from conceptlens.components.features import ComponentsError
from conceptlens.components.stats import r_squared

__all__ = [
    "DEFAULT_ORDERS",
    "Disentangler",
    "TrainedOrder",
    "predict",
    "predict_orders",
    "train_disentanglers",
]

DEFAULT_ORDERS = (0, 1, 2, 4, 8)
"""Numbers of ReLU layers ``l`` of the disentangler nets (the paper uses 0…8, 16, 32)."""


class _ResidualBlock(nn.Module):
    """``h ↦ h + conv3×3(ReLU(h))``: one ReLU layer."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(width, width, kernel_size=3, padding=1)
        with torch.no_grad():  # a new block starts as the identity
            for parameter in self.conv.parameters():
                parameter.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv(self.relu(h))


class Disentangler(nn.Module):
    """``Φ^(l)``: ``[B, C, H, W]`` images → the feature's shape, with ``l = order`` ReLU layers.

    Args:
        input_shape: ``(C, H, W)`` of one image.
        feature_shape: ``(C', H', W')`` of a feature map or ``(D,)`` of a flat feature.
        order: ``l``, the number of residual blocks (= ReLU layers); 0 is linear.
        width: channels inside the net.
        flat_grid: largest grid side the input is pooled to for a flat feature.

    Example:
        >>> net = Disentangler((1, 16, 16), (32, 8, 8), order=2, width=8)
        >>> net(torch.zeros(3, 1, 16, 16)).shape, sum(isinstance(m, nn.ReLU) for m in net.modules())
        (torch.Size([3, 32, 8, 8]), 2)
    """

    x_shift: torch.Tensor
    x_scale: torch.Tensor
    f_shift: torch.Tensor
    f_scale: torch.Tensor

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        feature_shape: tuple[int, ...],
        *,
        order: int,
        width: int = 32,
        flat_grid: int = 4,
    ) -> None:
        super().__init__()
        if order < 0 or width < 1 or len(feature_shape) not in (1, 3):
            raise ComponentsError(
                f"a disentangler needs order ≥ 0, width ≥ 1 and a feature of shape [C, H, W] "
                f"or [D]; got order {order}, width {width}, feature {list(feature_shape)}"
            )
        c_in, h_in, w_in = input_shape
        grid = (
            (feature_shape[1], feature_shape[2])
            if len(feature_shape) == 3
            else (min(h_in, flat_grid), min(w_in, flat_grid))
        )
        self.order = order
        self.feature_shape = tuple(feature_shape)
        self.resample, c_grid = _resampler(c_in, (h_in, w_in), grid)
        self.stem = nn.Conv2d(c_grid, width, kernel_size=3, padding=1)
        self.blocks = nn.Sequential(*(_ResidualBlock(width) for _ in range(order)))
        self.head: nn.Module = (
            nn.Conv2d(width, feature_shape[0], kernel_size=3, padding=1)
            if len(feature_shape) == 3
            else nn.Sequential(nn.Flatten(), nn.Linear(width * grid[0] * grid[1], feature_shape[0]))
        )
        self.register_buffer("x_shift", torch.zeros(()))
        self.register_buffer("x_scale", torch.ones(()))
        self.register_buffer("f_shift", torch.zeros(feature_shape))
        self.register_buffer("f_scale", torch.ones(()))

    def standardised(self, x: torch.Tensor) -> torch.Tensor:
        """The net's output before un-standardising: ``(Φ(x) − f_shift) / f_scale``."""
        h = self.stem(self.resample((x - self.x_shift) / self.x_scale))
        return self.head(self.blocks(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardised(x) * self.f_scale + self.f_shift

    def fit_scales(self, x: torch.Tensor, f: torch.Tensor) -> None:
        """Set the affine in/out maps from training data: scalar input mean/std, per-entry
        target mean and the scalar ``√Var[f]``."""
        self.x_shift.fill_(float(x.mean()))
        self.x_scale.fill_(float(x.std()) or 1.0)
        self.f_shift.copy_(f.mean(dim=0))
        spread = float((f - f.mean(dim=0)).pow(2).mean().sqrt())
        self.f_scale.fill_(spread or 1.0)


def _resampler(
    channels: int, size: tuple[int, int], grid: tuple[int, int]
) -> tuple[nn.Module, int]:
    """A linear map from the input's ``H×W`` to the grid, and the channels it produces."""
    (h, w), (gh, gw) = size, grid
    if (h, w) == (gh, gw):
        return nn.Identity(), channels
    if h % gh == 0 and w % gw == 0 and h // gh == w // gw:
        r = h // gh
        return nn.PixelUnshuffle(r), channels * r * r
    if gh <= h and gw <= w:
        return nn.AdaptiveAvgPool2d(grid), channels
    return nn.Upsample(size=grid, mode="nearest"), channels


@dataclass
class TrainedOrder:
    """One trained ``Φ^(l)`` and how well it mimics ``f`` (``R²``, :func:`.stats.r_squared`)."""

    order: int
    net: Disentangler
    train_r2: float
    test_r2: float
    train_mse: float
    test_mse: float
    seconds: float
    """Wall time of this order's training and scoring."""
    outputs: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    """``(Φ^(l)(x_train), Φ^(l)(x_test))`` on the CPU, with ``keep_outputs=True`` only."""

    def predict(self, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
        """``Φ^(l)(x)`` in batches, without gradients, on the net's device."""
        return predict(self.net, x, batch_size=batch_size)


@dataclass(frozen=True)
class _Plan:
    """Hyper-parameters shared by every order of one :func:`train_disentanglers` call."""

    width: int
    epochs: int
    lr: float
    batch_size: int
    seed: int
    device: torch.device
    keep_outputs: bool


def predict(net: nn.Module, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """``net(x)`` in batches under ``inference_mode``, in eval mode. Cost: one forward pass."""
    device = next(net.parameters()).device
    net.eval()
    with torch.inference_mode():
        return torch.cat([net(batch.to(device)) for batch in x.split(batch_size)])


def predict_orders(
    trained: Sequence[TrainedOrder], x: torch.Tensor, *, batch_size: int = 512
) -> torch.Tensor:
    """``Φ^(l)(x)`` of every order, stacked: ``[L, N, *feature]`` (on the nets' device)."""
    return torch.stack([t.predict(x, batch_size=batch_size) for t in trained])


def train_disentanglers(
    x_train: torch.Tensor,
    f_train: torch.Tensor,
    x_test: torch.Tensor,
    f_test: torch.Tensor,
    *,
    orders: Sequence[int] = DEFAULT_ORDERS,
    width: int = 32,
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
    warm_start: bool = True,
    keep_outputs: bool = False,
    progress: ProgressFn | None = None,
) -> list[TrainedOrder]:
    """Train ``Φ^(l)`` for each ``l`` in ``orders`` to mimic ``f`` by MSE (SCIENCE.md §7).

    ``x_*`` are images ``[N, C, H, W]``, ``f_*`` the target feature ``[N, *feature]`` of the
    same images. Each order is trained with Adam (``lr`` decayed by a cosine to 0 over its
    steps, mini-batches of ``batch_size`` in a seeded order) on the MSE of the standardised
    feature (``f`` scaled by ``1/√Var[f]``), so the loss reads as ``1 − R²``.

    ``warm_start`` (the paper's code does this): ``Φ^(l)`` starts as a copy of the previous
    order's net, its extra residual blocks zero-initialised so that it starts *equal* to
    ``Φ^(l_prev)``; training then only adds what ``l`` ReLU layers can add, so the
    components ``c^(l)`` carry less refitting noise (on the demo's ``relu2``: ``ρ`` of
    orders 2–8 fell from about 0.02 to 0.006 each, R² within 0.01). Without it every order
    starts from its own seeded initialisation.

    Deterministic: weights and batch orders depend only on ``seed``, ``orders`` and the data.
    On the CPU training runs on one thread with deterministic kernels (restored afterwards),
    so the result does not depend on the machine's core count; the CPU RNG state is restored
    and the CUDA generators are not touched. On a GPU deterministic kernels are requested
    with ``warn_only``: on an H100 (torch 2.11, CUDA 13) two runs gave bit-identical nets,
    conv and flat features alike, without ``CUBLAS_WORKSPACE_CONFIG`` and with no warning
    (``tests/conceptlens/test_cuda.py``); test R² there was within 1e-4 of the CPU's on the demo.

    ``keep_outputs`` keeps each net's outputs on the training and test images (computed for
    scoring anyway) in :attr:`TrainedOrder.outputs`, so callers need not run the nets again.

    ``progress(done, total)`` is called after every epoch, ``total = len(orders) · epochs``;
    it may raise to cancel. Cost: ``epochs · N`` forward and backward passes per order, each
    about ``(l + 2) · 9·width²·H'·W'`` multiply-adds per image (×3 with the backward pass);
    on the demo (1,500 images, ``relu2``, width 32) 0.05 s per epoch at ``l = 0`` and 0.3 s
    at ``l = 8`` on one CPU thread.
    """
    _check_inputs(x_train, f_train, x_test, f_test, orders)
    plan = _Plan(width, epochs, lr, batch_size, seed, torch.device(device), keep_outputs)
    data = [t.to(plan.device, torch.float32) for t in (x_train, f_train, x_test, f_test)]
    total = len(orders) * epochs

    def on_epoch(done: int) -> None:
        if progress is not None:
            progress(done, total)

    out: list[TrainedOrder] = []
    with _reproducible(plan.device):
        for k, order in enumerate(orders):
            start = out[-1].net if out and warm_start else None
            tick = partial(_shifted, on_epoch, k * epochs)
            out.append(_train_order(order, plan, data, start, tick))
    return out


def _shifted(fn: Callable[[int], None], offset: int, epoch: int) -> None:
    fn(offset + epoch)


def _check_inputs(
    x_train: torch.Tensor,
    f_train: torch.Tensor,
    x_test: torch.Tensor,
    f_test: torch.Tensor,
    orders: Sequence[int],
) -> None:
    if x_train.dim() != 4 or x_test.shape[1:] != x_train.shape[1:]:
        raise ComponentsError("images must be batches [N, C, H, W] of one shape")
    if f_train.shape[1:] != f_test.shape[1:]:
        raise ComponentsError("train and test features must have the same shape")
    if len(x_train) != len(f_train) or len(x_test) != len(f_test) or len(x_train) < 2:
        raise ComponentsError("each image needs its feature, and training needs ≥ 2 images")
    if not orders or any(o < 0 for o in orders) or list(orders) != sorted(set(orders)):
        raise ComponentsError(f"orders must be distinct, increasing and ≥ 0; got {list(orders)}")


def _train_order(
    order: int,
    plan: _Plan,
    data: list[torch.Tensor],
    start: Disentangler | None,
    on_epoch: Callable[[int], None],
) -> TrainedOrder:
    """Build ``Φ^(order)`` from its own seed, fit its scales, train it, and score it."""
    x_train, f_train, x_test, f_test = data
    started = time.perf_counter()
    # the CPU generator alone: nets are built on the CPU, and torch.manual_seed would also
    # reseed every CUDA generator, which _reproducible does not restore
    torch.default_generator.manual_seed(_order_seed(plan.seed, order))
    net = Disentangler(
        (x_train.shape[1], x_train.shape[2], x_train.shape[3]),
        tuple(f_train.shape[1:]),
        order=order,
        width=plan.width,
    ).to(plan.device)
    net.fit_scales(x_train, f_train)
    if start is not None:
        net.load_state_dict(start.state_dict(), strict=False)
    target = (f_train - net.f_shift) / net.f_scale
    _fit(net, x_train, target, plan, order, on_epoch)
    pred_train, pred_test = predict(net, x_train), predict(net, x_test)
    return TrainedOrder(
        order=order,
        net=net,
        train_r2=r_squared(pred_train, f_train),
        test_r2=r_squared(pred_test, f_test),
        train_mse=float(F.mse_loss(pred_train, f_train)),
        test_mse=float(F.mse_loss(pred_test, f_test)),
        seconds=time.perf_counter() - started,
        outputs=(pred_train.cpu(), pred_test.cpu()) if plan.keep_outputs else None,
    )


def _fit(
    net: Disentangler,
    x: torch.Tensor,
    target: torch.Tensor,
    plan: _Plan,
    order: int,
    on_epoch: Callable[[int], None],
) -> None:
    """Adam on the standardised MSE with a per-step cosine decay of the learning rate."""
    steps_per_epoch = math.ceil(len(x) / plan.batch_size)
    total = max(1, plan.epochs * steps_per_epoch)
    fused = plan.device.type in ("cpu", "cuda")  # one kernel per step: 4× faster on the CPU
    optimiser = torch.optim.Adam(net.parameters(), lr=plan.lr, fused=fused or None)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    order_gen = torch.Generator().manual_seed(_order_seed(plan.seed, order))
    net.train()
    for epoch in range(plan.epochs):
        perm = torch.randperm(len(x), generator=order_gen).to(x.device)
        xs, ts = x[perm], target[perm]  # one gather per epoch; the batches are views
        for xb, tb in zip(xs.split(plan.batch_size), ts.split(plan.batch_size), strict=True):
            loss = F.mse_loss(net.standardised(xb), tb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
        on_epoch(epoch + 1)
    net.eval()


def _order_seed(seed: int, order: int) -> int:
    return seed * 1_000_003 + order


@contextmanager
def _reproducible(device: torch.device) -> Iterator[None]:
    """Fork the RNG, force deterministic kernels and (CPU) one thread; restore all afterwards."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
        if device.type == "cpu":
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.set_num_threads(threads)
