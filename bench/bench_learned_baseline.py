"""Σ|I| with the learned baseline against the mean and zero baselines (issue 10 §3).

The demo CNN (PyTorch weights, seed 0), the first held-out digits, a 3×3 grid (9 players),
the predicted class's log-odds; the learned baseline starts from the mean baseline and
stays within ±radius of it; 100 steps. One thread. Prints and writes
``bench/results/learned_baseline.json``.

    .venv/bin/python bench/bench_learned_baseline.py [--images 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from conceptlens.learned_baseline import learn_baseline
from conceptlens.models.demo import load_digits_16, split_digits, train_demo_model
from conceptlens.players import PatchGrid, Players, make_baseline

RADII = (0.25, 0.5, 1.0)
OUT = Path(__file__).parent / "results" / "learned_baseline.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = [os.getloadavg()[0]]
    model, _ = train_demo_model(seed=0)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    _, _, x_test, _ = split_digits(*load_digits_16())
    players = Players(PatchGrid(3, 3, 16, 16))
    rows = []
    for k in range(args.images):
        x = x_test[k]
        target = int(model(x[None]).argmax())
        fixed = {
            kind: learn_baseline(model, x, players, make_baseline(x, kind), target=target,
                                 radius=0.0, steps=0).loss_before
            for kind in ("mean", "zero", "blur")
        }  # fmt: skip
        for radius in RADII:
            t0 = time.perf_counter()
            out = learn_baseline(model, x, players, make_baseline(x, "mean"), target=target,
                                 radius=radius, steps=args.steps)  # fmt: skip
            rows.append({"image": k, "radius": radius, "seconds": time.perf_counter() - t0,
                         "learned": out.loss_after, **fixed})  # fmt: skip
            print(f"image {k} radius {radius}: Σ|I| mean {fixed['mean']:.1f} zero "
                  f"{fixed['zero']:.1f} blur {fixed['blur']:.1f} learned {out.loss_after:.1f} "
                  f"({rows[-1]['seconds']:.1f} s)")  # fmt: skip
    load.append(os.getloadavg()[0])
    summary = {
        str(r): float(np.median([x["learned"] / x["mean"] for x in rows if x["radius"] == r]))
        for r in RADII
    }
    print("median Σ|I| learned / mean baseline by radius:", summary, "load", load)
    OUT.write_text(json.dumps({"rows": rows, "median_ratio": summary, "load": load,
                               "steps": args.steps, "threads": 1}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
