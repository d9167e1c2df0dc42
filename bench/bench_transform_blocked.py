"""The cache-blocked Harsanyi transform against the pass-by-pass one (issue 14 §7).

Side by side in one process, interleaved repetitions, one torch thread: ``harsanyi``'s
butterflies applied tile by tile (``conceptlens.transforms._blocked``, what tables over
``BLOCK_MIN_BYTES`` get) and bit by bit over the whole table (``_bits``), on the same
float64 tables; plus one copy of the table (``torch.Tensor.copy_``), the memory-bandwidth
yardstick: the blocked transform reads and writes every value about twice, so about two
copies is its floor. Results must be bit-identical (checked every repetition).

Usage: ``python bench/bench_transform_blocked.py [--reps 7] [--sizes 20,22,24]``; writes
``bench/results/transform_blocked.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptlens import transforms

OUT = Path(__file__).parent / "results" / "transform_blocked.json"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run(n: int, rest: tuple[int, ...], reps: int) -> dict[str, Any]:
    v = np.random.default_rng(n).normal(size=(1 << n, *rest))
    times: dict[str, list[float]] = {"blocked": [], "pass_by_pass": [], "copy": []}
    source = torch.from_numpy(v)
    target = source.clone()  # touched once, so the copies below time bandwidth, not page faults
    for _ in range(reps):
        a, b = v.copy(), v.copy()
        t0 = time.perf_counter()
        transforms._blocked(torch.from_numpy(a), n, superset=False, sign=-1)
        times["blocked"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        transforms._bits(torch.from_numpy(b), range(n), superset=False, sign=-1)
        times["pass_by_pass"].append(time.perf_counter() - t0)
        if not np.array_equal(a, b):
            raise AssertionError(f"n = {n}: the blocked transform changed the result")
        t0 = time.perf_counter()
        target.copy_(source)
        times["copy"].append(time.perf_counter() - t0)
    med = {k: statistics.median(x) for k, x in times.items()}
    return {
        "n": n, "rest": list(rest), "bytes": v.nbytes, "reps": reps,
        "ms": {k: round(1000 * x, 2) for k, x in med.items()},
        "ms_range": {k: [round(1e3 * min(x), 2), round(1e3 * max(x), 2)] for k, x in times.items()},
        "speedup": round(med["pass_by_pass"] / med["blocked"], 2),
        "harsanyi_takes": "blocked" if v.nbytes > transforms.BLOCK_MIN_BYTES else "pass_by_pass",
        "blocked_in_copies": round(med["blocked"] / med["copy"], 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--sizes", default="20,22,24")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    before = uptime()
    cases = [(n, ()) for n in map(int, args.sizes.split(","))] + [(20, (3,))]
    rows = [run(n, rest, args.reps) for n, rest in cases]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    out = {
        "commit": head.stdout.strip(),
        "threads": 1,
        "cpus": os.cpu_count(),
        "uptime_before": before,
        "uptime_after": uptime(),
        "tile_bytes": transforms.TILE_BYTES,
        # harsanyi blocks only tables over this (a quarter of the largest cache, at most
        # 16 MiB; 2 MiB before session 14): the rows below show which path each size takes
        "block_min_bytes": transforms.BLOCK_MIN_BYTES,
        "largest_cache_bytes": transforms.largest_cache_bytes(),
        "low_bits": transforms.LOW_BITS,
        "rows": rows,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        print(r["n"], r["rest"], r["ms"], "speedup", r["speedup"], "copies",
              r["blocked_in_copies"], "harsanyi takes", r["harsanyi_takes"])  # fmt: skip
    print(before, "|", out["uptime_after"])


if __name__ == "__main__":
    main()
