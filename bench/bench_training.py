"""Training with the order losses (issue 12): throughput and what the presets do to J^(m).

    .venv/bin/python bench/bench_training.py [--reps 5 --epochs 6 --images 8]
                                 # ~10 min on 2 shared cores; writes results/training.json

1. **Throughput.** The digits CNN on the demo's 1,500 training digits, batch 32, one epoch
   per repetition through :func:`conceptlens.training.fit` under
   :func:`~conceptlens.training.reproducible` (one torch thread, deterministic kernels), for
   plain classification and for one and two order terms (4×4 grid, zero baseline, 1 and 2
   samples). A forward pre-hook on the model counts the images that go through it; the
   count is set against :func:`~conceptlens.order_loss.passes_per_batch` summed over the
   epoch's batches, and the epoch's time against the plain one. Repetitions interleave the
   configurations; ``os.getloadavg()`` is recorded before and after each one. A warm-up
   epoch of each configuration runs first (the first ``use_deterministic_algorithms`` call
   imports ``torch._inductor``, seconds).
2. **Presets.** Each of :data:`~conceptlens.training.PRESETS` trained ``--epochs`` epochs
   (batch 32, lr 1e-2, seed 0) by :func:`~conceptlens.training.train_model`; then exact
   ``J^(m)`` (SCIENCE.md §4) on a 4×4 grid (n = 16, all 2^16 masked inputs, zero baseline,
   log-odds of the label) over ``--images`` held-out digits (the first test digit of each
   class 0, 1, …), test accuracy on the 297 test digits and PGD adversarial accuracy
   (L∞, 10 steps, pixels clamped to [0, 1]) at ε = 0.05 and 0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conceptlens.game import mask_range_coalitions
from conceptlens.models.architectures import DigitCNN
from conceptlens.models.demo import load_digits_16, split_digits
from conceptlens.order_loss import OrderLossConfig, OrderTerm, passes_per_batch
from conceptlens.outputs import output_values
from conceptlens.pairwise import relative_strength, theory_curve
from conceptlens.players import PatchGrid, Players, masked_inputs
from conceptlens.reference import exact_strength
from conceptlens.training import (
    PRESETS,
    TrainConfig,
    adversarial_accuracy,
    fit,
    reproducible,
    train_model,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "training.json"
BATCH = 32
GRID = (4, 4)

THROUGHPUT: dict[str, OrderLossConfig | None] = {
    "plain": None,
    "L+ (1 term, 1 sample)": OrderLossConfig(grid=GRID, plus=OrderTerm(0.01, 0.0, 0.25)),
    "L+ and L− (2 terms, 1 sample)": OrderLossConfig(
        grid=GRID, plus=OrderTerm(0.01, 0.75, 1.0), minus=OrderTerm(0.01, 0.0, 0.25)
    ),
    "L+ (1 term, 2 samples)": OrderLossConfig(
        grid=GRID, plus=OrderTerm(0.01, 0.0, 0.25), samples=2
    ),
}


def say(text: str) -> None:
    print(text, flush=True)


def load() -> float:
    return os.getloadavg()[0]


def one_epoch(config: OrderLossConfig | None, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """One epoch of ``fit`` on a fresh seed-0 digits CNN; images counted by a hook."""
    seen = [0]
    with reproducible(0):
        model = DigitCNN()
        model.register_forward_pre_hook(
            lambda _m, args: seen.__setitem__(0, seen[0] + len(args[0]))
        )
        before = load()
        start = time.perf_counter()
        fit(model, x, y, epochs=1, batch_size=BATCH, lr=1e-2, seed=0, order=config)
        seconds = time.perf_counter() - start
    sizes = [len(b) for b in torch.arange(len(y)).split(BATCH)]
    return {
        "seconds": seconds,
        "passes_measured": seen[0],
        "passes_expected": sum(passes_per_batch(config, b) for b in sizes),
        "load_before": before,
        "load_after": load(),
    }


def throughput(x: torch.Tensor, y: torch.Tensor, reps: int) -> dict[str, Any]:
    for config in THROUGHPUT.values():  # warm-up
        one_epoch(config, x[:64], y[:64])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in THROUGHPUT}
    for rep in range(reps):
        names = list(THROUGHPUT) if rep % 2 == 0 else list(reversed(THROUGHPUT))
        for name in names:
            run = one_epoch(THROUGHPUT[name], x, y)
            runs[name].append(run)
            say(f"  rep {rep} {name:32s} {run['seconds']:.2f} s, {run['passes_measured']} passes")
    plain = statistics.median(r["seconds"] for r in runs["plain"])
    rows = []
    for name, rs in runs.items():
        seconds = statistics.median(r["seconds"] for r in rs)
        measured = {r["passes_measured"] for r in rs}
        expected = rs[0]["passes_expected"]
        rows.append(
            {
                "config": name,
                "reps": len(rs),
                "seconds_median": seconds,
                "seconds_min": min(r["seconds"] for r in rs),
                "seconds_max": max(r["seconds"] for r in rs),
                "passes_measured": sorted(measured),
                "passes_expected": expected,
                "passes_ratio": expected / len(y),
                "time_ratio": seconds / plain,
                "images_per_second": len(y) / seconds,
                "load_min": min(min(r["load_before"], r["load_after"]) for r in rs),
                "load_max": max(max(r["load_before"], r["load_after"]) for r in rs),
            }
        )
    return {"rows": rows, "runs": runs}


def exact_j(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Exact J^(m) over the images: all 2^16 masks at 4×4, zero baseline, log-odds."""
    players = Players(PatchGrid(*GRID, height=x.shape[2], width=x.shape[3]))
    n = players.n
    presence = players.pixel_presence(mask_range_coalitions(0, 1 << n, n, torch.device("cpu")))
    rows = []
    with torch.inference_mode():
        for xi, yi in zip(x, y, strict=True):
            base = torch.zeros_like(xi)
            logits = torch.cat(
                [model(masked_inputs(xi, base, p)) for p in presence.split(4096)]
            ).numpy()
            rows.append(exact_strength(output_values(logits, int(yi))))
    return relative_strength(rows)


def presets(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    images: int,
) -> list[dict[str, Any]]:
    test_x, test_y = test
    picks = [int((test_y == c).nonzero()[0]) for c in range(images)]
    out = []
    for name, order in PRESETS.items():
        before = load()
        start = time.perf_counter()
        model, records = train_model(TrainConfig(epochs=epochs, order=order), *train, *test)
        train_seconds = time.perf_counter() - start
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            start = time.perf_counter()
            j = exact_j(model, test_x[picks], test_y[picks])
            j_seconds = time.perf_counter() - start
            adv = {
                str(eps): adversarial_accuracy(model, test_x, test_y, eps=eps, steps=10)
                for eps in (0.05, 0.1)
            }
        finally:
            torch.set_num_threads(threads)
        row = {
            "preset": name,
            "order": None if order is None else _describe(order),
            "epochs": epochs,
            "test_accuracy": records[-1].test_accuracy,
            "train_accuracy": records[-1].train_accuracy,
            "adversarial_accuracy": adv,
            "J": j.tolist(),
            "J_low_m0_3": float(j[:4].mean()),
            "J_middle_m5_9": float(j[5:10].mean()),
            "J_high_m11_14": float(j[11:].mean()),
            "train_seconds": train_seconds,
            "j_seconds": j_seconds,
            "records": [r.as_dict() for r in records],
            "load_before": before,
            "load_after": load(),
        }
        out.append(row)
        say(
            f"  {name:17s} acc {row['test_accuracy']:.3f} adv {adv} "
            f"J low/mid/high {row['J_low_m0_3']:.2f}/{row['J_middle_m5_9']:.2f}/"
            f"{row['J_high_m11_14']:.2f}  J={np.round(j, 2).tolist()}"
        )
    return out


def _describe(order: OrderLossConfig) -> dict[str, Any]:
    return {
        "grid": list(order.grid),
        "baseline": order.baseline,
        "samples": order.samples,
        **{name: {"weight": t.weight, "r1": t.r1, "r2": t.r2} for name, t in order.terms().items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--skip-presets", action="store_true")
    args = parser.parse_args()
    train_x, train_y, test_x, test_y = split_digits(*load_digits_16())
    say(f"uptime: load {os.getloadavg()}")
    say("throughput (one epoch of the 1,500 training digits, batch 32):")
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "load_start": os.getloadavg(),
        "throughput": throughput(train_x, train_y, args.reps),
    }
    for row in result["throughput"]["rows"]:
        say(
            f"  {row['config']:32s} {row['seconds_median']:.2f} s  ×{row['time_ratio']:.2f} time, "
            f"passes {row['passes_measured']} vs {row['passes_expected']} expected "
            f"(×{row['passes_ratio']:.0f}), load {row['load_min']:.1f}–{row['load_max']:.1f}"
        )
    if not args.skip_presets:
        say(f"presets ({args.epochs} epochs, exact J at 4×4 on {args.images} test digits):")
        result["presets"] = presets((train_x, train_y), (test_x, test_y), args.epochs, args.images)
        result["theory_F"] = theory_curve(GRID[0] * GRID[1]).tolist()
    result["load_end"] = os.getloadavg()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    say(f"wrote {OUT}")


if __name__ == "__main__":
    main()
