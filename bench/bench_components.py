"""Feature-components job against the disentangler nets' own forward/backward passes.

    python bench/bench_components.py [--epochs 30] [--repeats 1] [--device cpu|cuda] [--json PATH]

The job is :func:`~conceptlens.components.analyze_components` on the demo model's
``relu2`` (orders 0, 1, 2, 4, 8, width 32, batches of 64, 1,500 training images): feature
extraction, disentangler training, scoring, significance and the exact Shapley effects
(2·2^6 tail passes), then the component maps of one image. The bare run builds the same
nets and runs only their forward and backward passes (MSE loss) on the same number of
batches of the same size, on one thread like the job. Everything else — optimiser steps,
batch indexing, scoring, metrics — is the job's overhead; target ≤ 10% of the job's time.
The job's fixed costs (extraction, metrics, Shapley tail passes, maps: about 0.45 s, plus
scoring each net once) do not grow with the epochs, so the share outside the nets is
measured at the default 30 epochs (about 45–60 s for one job and one bare run); at
``--epochs 5`` it was 22%. Runs are interleaved; medians of
``--repeats``. Prints Markdown tables. ``--device cuda`` trains the nets (job and bare run)
and runs the demo model (feature extraction, Shapley tail passes) there, as a GPU worker does.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from conceptlens.components import (
    Disentangler,
    TrainingPlan,
    analyze_components,
    component_maps,
    extract,
    feature_extractor,
)
from conceptlens.models.demo import load_digits_16, split_digits, train_demo_model

LAYER = "relu2"
ORDERS = (0, 1, 2, 4, 8)
WIDTH = 32
BATCH = 64


def run_job(
    model: torch.nn.Module, data: tuple[torch.Tensor, ...], epochs: int, device: torch.device
) -> dict:
    """Seconds of the whole job, and each order's training seconds per epoch."""
    plan = TrainingPlan(orders=ORDERS, width=WIDTH, epochs=epochs, batch_size=BATCH)
    x_train, y_train, x_test, y_test = data
    t0 = time.perf_counter()
    result = analyze_components(
        model, LAYER, (x_train, y_train, x_test, y_test), plan=plan, device=device
    )
    image = x_test[0]
    feature = feature_extractor(model, LAYER)(image[None].to(device)).cpu()
    component_maps(result.trained, image, feature)
    total = time.perf_counter() - t0
    return {
        "total": total,
        "training": sum(t.seconds for t in result.trained),
        "per_epoch": [t.seconds / epochs for t in result.trained],
        "test_r2": result.test_r2.tolist(),
        "rho": result.significance.component.tolist(),
    }


def run_bare(x: torch.Tensor, f: torch.Tensor, epochs: int, device: torch.device) -> list[float]:
    """Seconds per epoch of only forward + backward passes, per order (one CPU thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [_bare_order(order, x, f, epochs, device) / epochs for order in ORDERS]
    finally:
        torch.set_num_threads(threads)


def _bare_order(
    order: int, x: torch.Tensor, f: torch.Tensor, epochs: int, device: torch.device
) -> float:
    torch.manual_seed(order)
    net = Disentangler((1, 16, 16), tuple(f.shape[1:]), order=order, width=WIDTH)
    net.fit_scales(x, f)
    net, x, f = net.to(device), x.to(device), f.to(device)
    target = (f - net.f_shift) / net.f_scale
    steps = epochs * math.ceil(len(x) / BATCH)
    batches = [torch.randperm(len(x))[:BATCH] for _ in range(steps)]
    inputs = [(x[b], target[b]) for b in batches]  # indexing is not part of the bare passes
    t0 = time.perf_counter()
    for xb, tb in inputs:
        F.mse_loss(net.standardised(xb), tb).backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def table(job: list[dict], bare: list[list[float]]) -> str:
    per_epoch_job = [statistics.median(r["per_epoch"][k] for r in job) for k in range(len(ORDERS))]
    per_epoch_bare = [statistics.median(b[k] for b in bare) for k in range(len(ORDERS))]
    lines = [
        "| order l | ReLU layers | parameters | job s/epoch | bare fwd+bwd s/epoch | "
        "test R² | ρ^(l) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, order in enumerate(ORDERS):
        params = sum(
            p.numel() for p in Disentangler((1, 16, 16), (32, 8, 8), order=order).parameters()
        )
        lines.append(
            f"| {order} | {order} | {params:,} | {per_epoch_job[k]:.3f} | "
            f"{per_epoch_bare[k]:.3f} | {job[0]['test_r2'][k]:.3f} | {job[0]['rho'][k]:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=TrainingPlan().epochs)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="where the nets train: cpu or cuda")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    device = torch.device(args.device)

    model, _ = train_demo_model(seed=0)
    model = model.to(device)
    data = split_digits(*load_digits_16())
    x_train = data[0]
    f_train = extract(feature_extractor(model, LAYER), x_train.to(device)).cpu()
    job: list[dict] = []
    bare: list[list[float]] = []
    for _ in range(args.repeats):  # interleaved
        job.append(run_job(model, data, args.epochs, device))
        bare.append(run_bare(x_train, f_train, args.epochs, device))

    job_total = statistics.median(r["total"] for r in job)
    training = statistics.median(r["training"] for r in job)
    bare_total = statistics.median(sum(b) * args.epochs for b in bare)
    outside = (job_total - bare_total) / job_total
    print(
        f"Demo DigitCNN, layer {LAYER}, {len(x_train)} training images, width {WIDTH}, "
        f"batch {BATCH}, {args.epochs} epochs per order, nets on {device}, "
        f"median of {args.repeats}.\n"
    )
    print(table(job, bare))
    print(
        "\n| whole job (s) | training loops incl. scoring (s) | rest: extraction, metrics, "
        "Shapley, maps (s) | nets' forward+backward (s) | share outside the nets |\n"
        "|---|---|---|---|---|\n"
        f"| {job_total:.2f} | {training:.2f} | {job_total - training:.2f} | {bare_total:.2f} "
        f"| **{outside:.1%}** |"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"job": job, "bare": bare, "share_outside": outside}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
