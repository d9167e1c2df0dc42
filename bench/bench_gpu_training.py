"""Training with the order losses on CUDA against the CPU, side by side in one run.

    PYTHONPATH=. python3 bench/bench_gpu_training.py [--reps 3] [--json PATH]   # needs CUDA

The digits CNN on the demo's 1,500 training digits, batch 32, one epoch per repetition by
:func:`conceptlens.training.train_model` (under ``reproducible``: deterministic kernels; one
thread on the CPU), for plain classification and for the two-term order loss of
``bench_training.py`` (4×4 grid, ``L+`` and ``L−``, one sample each). Devices interleave;
each configuration is warmed up once per device first (CUDA context, cuDNN autotuning,
the deterministic flag's import). Prints a Markdown table of medians with the repetitions
and ``os.getloadavg()``; the test accuracy after the epoch is printed beside each device so
that the two runs can be seen to do the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conceptlens.models.demo import load_digits_16, split_digits
from conceptlens.order_loss import OrderLossConfig, OrderTerm
from conceptlens.training import TrainConfig, train_model

GRID = (4, 4)
CONFIGS: dict[str, OrderLossConfig | None] = {
    "plain": None,
    "L+ and L− (2 terms, 1 sample)": OrderLossConfig(
        grid=GRID, plus=OrderTerm(0.01, 0.75, 1.0), minus=OrderTerm(0.01, 0.0, 0.25)
    ),
}


def epoch(order: OrderLossConfig | None, data: tuple[torch.Tensor, ...], device: str) -> dict:
    config = TrainConfig(epochs=1, batch_size=32, lr=1e-2, seed=0, order=order)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    _, records = train_model(config, *data, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    return {
        "seconds": time.perf_counter() - start,
        "test_accuracy": records[-1].test_accuracy,
        "passes": records[-1].passes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")
    data = split_digits(*load_digits_16())
    small = tuple(t[:64] for t in data)
    for order in CONFIGS.values():
        for device in ("cpu", "cuda"):
            epoch(order, small, device)
    runs: dict[tuple[str, str], list[dict]] = {}
    load_before = os.getloadavg()[0]
    for rep in range(args.reps):
        devices = ("cpu", "cuda") if rep % 2 == 0 else ("cuda", "cpu")
        for name, order in CONFIGS.items():
            for device in devices:
                run = epoch(order, data, device)
                runs.setdefault((name, device), []).append(run)
                print(f"rep {rep} {name:32s} {device:4s} {run['seconds']:.2f} s", flush=True)
    load_after = os.getloadavg()[0]
    print(
        f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"{args.reps} repetitions, load {load_before:.2f} → {load_after:.2f}\n"
    )
    print(
        "| training | CPU, 1 thread (s/epoch) | CUDA (s/epoch) | CUDA speed-up "
        "| test acc. CPU | test acc. CUDA |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    table: list[dict[str, Any]] = []
    for name in CONFIGS:
        cpu = statistics.median(r["seconds"] for r in runs[(name, "cpu")])
        cuda = statistics.median(r["seconds"] for r in runs[(name, "cuda")])
        acc = [runs[(name, d)][0]["test_accuracy"] for d in ("cpu", "cuda")]
        print(
            f"| {name} | {cpu:.2f} | {cuda:.3f} | {cpu / cuda:.1f}× | {acc[0]:.3f} | {acc[1]:.3f} |"
        )
        table.append({"training": name, "cpu_s": cpu, "cuda_s": cuda, "accuracy": acc})
    if args.json:
        args.json.write_text(
            json.dumps(
                {"table": table, "runs": {f"{k[0]} / {k[1]}": v for k, v in runs.items()}}, indent=1
            )
        )


if __name__ == "__main__":
    main()
