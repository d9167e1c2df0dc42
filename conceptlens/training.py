"""Training a registered architecture with the order losses, and its PGD robustness —
SCIENCE.md §5 (seed 000's "breaking the representation bottleneck" experiment).

:func:`train_model` trains ``Loss_cls + λ1·L+(r1, r2) + λ2·L−(r1, r2)``
(:mod:`conceptlens.order_loss`) with the demo model's recipe (Adam, one-cycle learning rate,
mini-batches in a seeded order; :func:`conceptlens.models.demo.train_demo_model` is this loop
with no order loss). :func:`adversarial_accuracy` scores a model under L∞ PGD, seed 000's
second table. :data:`PRESETS` are the four runs of the bottleneck experiment.

Everything is deterministic under the seed on the CPU: weights, batch order and the order
losses' coalitions (their own generator) come from the seed, kernels are deterministic and
run on one thread, and the global torch state is restored afterwards (:func:`reproducible`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from conceptlens.models.architectures import ARCHITECTURES
from conceptlens.order_loss import OrderLossConfig, OrderTerm, order_loss_terms, passes_per_batch

__all__ = [
    "PRESETS",
    "EpochRecord",
    "TrainConfig",
    "accuracy",
    "adversarial_accuracy",
    "fit",
    "pgd_batch",
    "reproducible",
    "train_model",
]

ORDER_STREAM = 0x0DE5
"""Stream id that derives the order losses' generator seed from the training seed."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        architecture: key of :data:`~conceptlens.models.architectures.ARCHITECTURES`.
        epochs: passes over the training images.
        batch_size: images per mini-batch (the last one of an epoch may be smaller).
        lr: peak learning rate of Adam under a one-cycle schedule.
        seed: weights (unless fine-tuning), batch order and order-loss coalitions.
        order: the order losses, or None for plain classification.
    """

    architecture: str = "digit_cnn"
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-2
    seed: int = 0
    order: OrderLossConfig | None = None

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            known = ", ".join(sorted(ARCHITECTURES))
            raise ValueError(f"unknown architecture {self.architecture!r}; choose one of {known}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be positive, got {self.lr}")


@dataclass
class EpochRecord:
    """What one epoch did.

    ``loss`` is the weighted total, ``loss_cls`` the cross-entropy, ``loss_plus`` /
    ``loss_minus`` the unweighted ``L+ = −E|Δu|`` / ``L− = +E|Δu|`` (None when off), each
    the mean over the epoch's images. Accuracies are measured after the epoch in eval mode
    on all training and test images. ``seconds``: wall time of the epoch's steps and the
    two accuracy passes. ``passes``: images through the model for the training losses
    (:func:`~conceptlens.order_loss.passes_per_batch` summed over the batches; the
    accuracy passes are not counted).
    """

    epoch: int
    loss: float
    loss_cls: float
    loss_plus: float | None
    loss_minus: float | None
    train_accuracy: float
    test_accuracy: float
    seconds: float
    passes: int

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the fields."""
        return dataclasses.asdict(self)


@dataclass
class _EpochSums:
    images: int = 0
    loss: float = 0.0
    loss_cls: float = 0.0
    terms: dict[str, float] = dataclasses.field(default_factory=dict)
    passes: int = 0


#: Held for the whole of a :func:`reproducible` block. The seed, the deterministic flag and
#: the thread count are global to the process: two trainings at once in one process (the
#: embedded worker's threads) drew their initial weights from each other's seeded stream
#: and left the deterministic flag on for good (each restoring what the other had set).
_GLOBAL_STATE = threading.RLock()


@contextmanager
def reproducible(seed: int, *, device: str | torch.device = "cpu") -> Iterator[None]:
    """Seed torch, force deterministic kernels and one CPU thread; restore all of it afterwards.

    One thread makes the result independent of the machine's core count (the reduction
    order of convolution gradients depends on it) and avoids oversubscription. On a GPU the
    deterministic flag only warns where cuBLAS/cuDNN have no deterministic kernel (results
    there are reproducible only as far as the kernels are). One block at a time per process
    (:data:`_GLOBAL_STATE`): a second thread waits; separate worker processes do not.
    """
    with _GLOBAL_STATE:
        yield from _reproducible(seed, device)


def _reproducible(seed: int, device: str | torch.device) -> Iterator[None]:
    dev = torch.device(device)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    forked = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True, warn_only=dev.type != "cpu")
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.set_num_threads(threads)


def accuracy(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch: int = 1024
) -> float:
    """Share of ``images`` whose arg-max logit is the label (the model as it is: use eval mode)."""
    if len(labels) == 0:
        return float("nan")
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(labels), batch):
            logits = model(images[start : start + batch])
            correct += int((logits.argmax(dim=1) == labels[start : start + batch]).sum())
    return correct / len(labels)


def _order_generator(seed: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), ORDER_STREAM]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def fit(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    order: OrderLossConfig | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[int, torch.nn.Module, _EpochSums], None] | None = None,
) -> None:
    """The training loop: Adam with a one-cycle learning rate peaking at ``lr``, mini-batches
    of ``batch_size`` in an order drawn from ``torch.Generator().manual_seed(seed)``.

    The loss is the cross-entropy plus each active order term times its weight; the order
    losses draw from their own generator (seeded from ``seed``), so they do not shift the
    batch order or the global RNG. ``on_batch(done, total)`` after each step;
    ``on_epoch(epoch, model, sums)`` after each epoch with the model in eval mode (it must
    not change it). Leaves the model in eval mode, its gradients cleared.
    """
    steps_per_epoch = -(-len(labels) // batch_size)
    total = epochs * steps_per_epoch
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=total)
    batch_order = torch.Generator().manual_seed(seed)
    coalitions = _order_generator(seed) if order is not None else None
    weights = {name: term.weight for name, term in (order.terms() if order else {}).items()}
    done = 0
    model.train()
    for epoch in range(1, epochs + 1):
        sums = _EpochSums(terms=dict.fromkeys(weights, 0.0))
        for batch in torch.randperm(len(labels), generator=batch_order).split(batch_size):
            index = batch.to(images.device)
            x, y = images[index], labels[index]
            loss_cls = F.cross_entropy(model(x), y)
            loss = loss_cls
            if order is not None and coalitions is not None:
                for name, value in order_loss_terms(model, x, y, order, coalitions).items():
                    loss = loss + weights[name] * value
                    sums.terms[name] += float(value.detach()) * len(batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            sums.images += len(batch)
            sums.loss += float(loss.detach()) * len(batch)
            sums.loss_cls += float(loss_cls.detach()) * len(batch)
            sums.passes += passes_per_batch(order, len(batch))
            done += 1
            if on_batch is not None:
                on_batch(done, total)
        if on_epoch is not None:
            model.eval()
            on_epoch(epoch, model, sums)
            model.train()
    optimiser.zero_grad(set_to_none=True)
    model.eval()


def train_model(
    config: TrainConfig,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    init_state: dict[str, torch.Tensor] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochRecord, torch.nn.Module], None] | None = None,
    device: str = "cpu",
) -> tuple[torch.nn.Module, list[EpochRecord]]:
    """Train ``config.architecture`` from scratch (or from ``init_state``: fine-tuning).

    Args:
        config: architecture, epochs, batch size, learning rate, seed, order losses.
        train_x, train_y: images ``[N, C, H, W]`` (float, the architecture's input shape)
            and integer labels ``[N]``; ``test_x``, ``test_y`` likewise (may be empty).
        init_state: a state_dict of the same architecture to start from.
        on_batch: ``(batches done, batches total)`` after every step; it may raise to stop
            (e.g. a cancelled job): the exception propagates, torch's state is restored.
        on_epoch: ``(record, model)`` after every epoch, model in eval mode; it must not
            change the model (copy its state_dict to keep a checkpoint).
        device: where to train (``"cpu"``, ``"cuda"``, …).

    Returns:
        ``(model, records)``: the model in eval mode on ``device``, one record per epoch.

    Same seed, data and config on the CPU → bit-identical weights and records (apart from
    ``seconds``). With ``order=None``, the digits CNN and the demo's recipe (12 epochs) this
    is exactly :func:`~conceptlens.models.demo.train_demo_model`. Cost: the classification
    pass plus ``2·samples`` masked passes per image and active term
    (:func:`~conceptlens.order_loss.passes_per_batch`), each with its backward pass.
    """
    spec = ARCHITECTURES[config.architecture]
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if len(x) and tuple(x.shape[1:]) != spec.input_shape:
            raise ValueError(
                f"{config.architecture} takes images of shape {spec.input_shape}, "
                f"the {name} images are {tuple(x.shape[1:])}"
            )
        if len(x) != len(y):
            raise ValueError(f"{len(x)} {name} images but {len(y)} labels")
    if len(train_y) == 0:
        raise ValueError("no training images")
    dev = torch.device(device)
    train_x, train_y = train_x.to(dev, torch.float32), train_y.to(dev, torch.int64)
    test_x, test_y = test_x.to(dev, torch.float32), test_y.to(dev, torch.int64)
    records: list[EpochRecord] = []
    started = [time.perf_counter()]

    def epoch_done(epoch: int, model: torch.nn.Module, sums: _EpochSums) -> None:
        n = max(sums.images, 1)
        record = EpochRecord(
            epoch=epoch,
            loss=sums.loss / n,
            loss_cls=sums.loss_cls / n,
            loss_plus=sums.terms["plus"] / n if "plus" in sums.terms else None,
            loss_minus=sums.terms["minus"] / n if "minus" in sums.terms else None,
            train_accuracy=accuracy(model, train_x, train_y),
            test_accuracy=accuracy(model, test_x, test_y),
            seconds=time.perf_counter() - started[0],
            passes=sums.passes,
        )
        records.append(record)
        if on_epoch is not None:
            on_epoch(record, model)
        started[0] = time.perf_counter()

    with reproducible(config.seed, device=dev):
        model = spec.build()
        if init_state is not None:
            model.load_state_dict(init_state)
        model.to(dev)
        fit(
            model,
            train_x,
            train_y,
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=config.seed,
            order=config.order,
            on_batch=on_batch,
            on_epoch=epoch_done,
        )
    return model, records


def pgd_batch(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Adversarial images ``x + δ`` for a batch: L∞ PGD raising each image's cross-entropy.

    The batched form of :func:`conceptlens.stability.pgd_attack` (one image, one target,
    no pixel range): random start uniform in ``[−ε, ε]`` (from ``generator``, on the CPU),
    then ``steps`` sign-gradient steps of ``step_size`` (default ``2.5·ε/steps``), each
    projected into the ε-ball and, with ``clamp=(lo, hi)``, into the valid pixel range
    (None: no range, e.g. for normalised inputs). Gradients w.r.t. ``δ`` only; the model's
    parameters accumulate nothing and its mode is left as it is. Returns detached images.
    """
    if eps < 0 or steps < 0:
        raise ValueError("eps and steps must not be negative")
    x = x.detach()
    if eps == 0 or steps == 0:
        return x.clone()
    size = 2.5 * eps / steps if step_size is None else step_size
    noise = torch.rand(x.shape, generator=generator, dtype=torch.float64)
    delta = ((noise * 2 - 1) * eps).to(device=x.device, dtype=x.dtype)

    def project(d: torch.Tensor) -> torch.Tensor:
        d = d.clamp(-eps, eps)
        return d if clamp is None else (x + d).clamp(*clamp) - x

    delta = project(delta)
    with torch.enable_grad():
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, delta)
            delta = project(delta.detach() + size * grad.sign())
    return (x + delta).detach()


def adversarial_accuracy(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    batch: int = 256,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    seed: int = 0,
) -> float:
    """Share of images classified correctly both clean and under L∞ PGD of budget ``eps``.

    :func:`pgd_batch` per batch of ``batch`` images (random starts from a generator seeded
    with ``seed``); ``clamp`` keeps attacked raw pixels in ``[0, 1]`` (pass None when the
    model takes normalised inputs). Counting an image only when its clean prediction is
    also right (``δ = 0`` is inside the ball) makes eps = 0 give the clean accuracy exactly
    and the score never exceed it. Use the model in eval mode. Cost: ``steps + 1`` forward
    and ``steps`` backward passes per image.
    """
    if len(y) == 0:
        return float("nan")
    generator = torch.Generator().manual_seed(int(seed))
    correct = 0
    for start in range(0, len(y), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        attacked = pgd_batch(
            model,
            xb,
            yb,
            eps=eps,
            steps=steps,
            step_size=step_size,
            clamp=clamp,
            generator=generator,
        )
        with torch.inference_mode():
            clean_ok = model(xb).argmax(dim=1) == yb
            adv_ok = model(attacked).argmax(dim=1) == yb
        correct += int((clean_ok & adv_ok).sum())
    return correct / len(y)


PRESETS: dict[str, OrderLossConfig | None] = {
    "normal": None,
    "encourage low": OrderLossConfig(
        grid=(4, 4), plus=OrderTerm(0.01, 0.0, 0.25), minus=OrderTerm(0.01, 0.75, 1.0)
    ),
    "encourage middle": OrderLossConfig(grid=(4, 4), plus=OrderTerm(0.03, 0.25, 0.5)),
    "encourage high": OrderLossConfig(
        grid=(4, 4), plus=OrderTerm(0.03, 0.75, 1.0), minus=OrderTerm(0.03, 0.0, 0.25)
    ),
}
"""The bottleneck experiment's four runs, for the digits CNN (4×4 grid, zero baseline, one
sample per image and term):

- ``normal``: classification only;
- ``encourage low``: ``0.01·L+(0, 0.25) + 0.01·L−(0.75, 1)`` — the output should change much
  between 0 and 4 present patches and little between 12 and 16;
- ``encourage middle``: ``0.03·L+(0.25, 0.5)`` — much change between 4 and 8 patches;
- ``encourage high``: ``0.03·L+(0.75, 1) + 0.03·L−(0, 0.25)``, seed 000's "penalise low-order
  and boost high-order" recipe of its adversarial table.

How they were chosen: a small search on the demo digits (6 epochs, seed 0, exact ``J^(m)``
at 4×4 on 4 test digits; ``bench/README.md`` has the preset table on 8). ``L+`` is
unbounded below, and λ = 0.1 already cost 20–30 points of test accuracy (λ = 1 left ~0.2),
so the weights stay ≤ 0.03. Pairing ``L+`` at one end with ``L−`` at the other moved
``J`` more at the same accuracy than ``L+`` alone (λ = 0.01: ``J^(0)`` 3.3 against 2.2;
λ = 0.03 at the low end collapsed the model to chance). The middle is the hard one:
``L+(0.25, 0.75)`` and ``L+(0.375, 0.625)`` raised orders 10–13 instead, and
``L+(0.25, 0.5)`` peaks at orders 7–10 at λ = 0.03 but at 11–12 at λ = 0.02, with test
accuracy down to about 0.82–0.94. Other architectures and data need their own weights.
"""
