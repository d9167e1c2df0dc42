"""The headline ratios of bench/README.md in one short run, to check them on any machine.

    .venv/bin/python bench/bench_headline.py [--reps 3] [--quick] [--json PATH]
                                 # 88 s on the 2-core machine; writes results/headline.json

Issue 14: "a bench/ script that runs the headline ratios in under 5 minutes". Everything
runs in this one process with **one thread** (``conceptlens.threads.configure_process(1)``,
as a worker does: torch, onnxruntime sessions, BLAS/OpenMP pools, ``OMP_NUM_THREADS``) and
glibc's heap reused (``conceptlens.memory.reuse_heap``, as the ``conceptlens`` command and
the workers run; the first run of 2026-12-01 had the default allocator).
Each figure compares runs made side by side, repetition by repetition (interleaved), and
reports medians of ``--reps`` (the transform, a few milliseconds a call, gets 5 × ``--reps``);
``uptime`` is printed before and after.

1. **Harsanyi transform** (``conceptlens.transforms.harsanyi``) / the plain NumPy
   reshape-and-difference Möbius transform (``bench_engine.numpy_moebius``), float64 tables
   at n = 20 and 22, one warm-up each, results compared; goal ≤ 0.5.
2. **End-to-end analysis** / its bare forward passes, as in bench/README "End-to-end
   ``analyze``": ``run_analysis`` of the demo CNN (batch 2048, mean baseline, sample 3)
   against only the model's ``predict`` over the same 2^n masked inputs, pre-built
   (``bench_engine.bare_forward_seconds``), at n = 12 (3×4) and 16 (4×4), for the ONNX,
   TorchScript and safetensors files of ``write_demo_model``; one warm-up each (at n ≤ 16);
   goal ≤ 1.10. ``--end-to-end 20`` runs only this part, at n = 20 (writes
   ``results/headline_end_to_end.json``).
3. **AND-OR interactions** at n = 14 (the demo CNN's table, 2×7 grid): seconds per step of
   the dense-matrix step (the lab's approach, ``bench_and_or.dense_step_seconds``: the
   2^14 × 2^14 float32 Möbius matrix, 1 GiB, four products a step, here on one thread) /
   seconds per step of the engine (``and_or_interactions``, PDHG, ``tol=0``, all steps
   run); 1,000 engine steps and 3 dense steps a repetition (the matrix is rebuilt each
   repetition, not timed); goal ≥ 150.

``--quick`` is a smoke test, not a measurement: transform n = 12 and 14, end-to-end n = 10
and 12, AND-OR n = 12 (a 64 MiB matrix), 200 engine steps, 1 repetition.

Time, on the 2-core machine: the default run took 88 s in all (2026-12-01, load average
1.0–1.2); the quick run 11 s (load 1.5–2.2). Single timings of its parts: imports and the
demo model's training ~8 s; the transform < 5 s;
end-to-end ~85 s (at n = 16 one analysis plus its bare passes took 1.6 s for ONNX, 7.6 s
for TorchScript, 9.4 s for safetensors; 3 repetitions and a warm-up, n = 12 ~1/16 of that);
AND-OR ~15 s (a 1 GiB matrix built in ~4 s each repetition, dense steps of ~0.2 s,
1,000 engine steps in ~0.3 s).

Left to the longer scripts: end-to-end at n = 20 (minutes of forward passes), the full
10,000-step AND-OR run and its extrapolated dense run (``bench_and_or.py``), peak memory
at n = 24 (``bench_peak_memory.py``), and two Celery worker
processes against one (≥ 1.7×, ``bench_threads.py``, ``bench_sampled_service.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_engine
from bench_and_or import dense_step_seconds, uptime
from bench_engine import numpy_moebius, timed
from bench_issue14 import median_interleaved

from conceptlens.and_or import and_or_interactions
from conceptlens.memory import reuse_heap
from conceptlens.models.demo import write_demo_model
from conceptlens.models.loaders import load_model
from conceptlens.pipeline import AnalysisRequest, run_analysis
from conceptlens.threads import blas_threads, configure_process
from conceptlens.transforms import harsanyi

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "headline.json"
FORMATS = ("onnx", "torchscript", "safetensors")
BATCH = 2048
SAMPLE = 3
GOALS = {"transform": ("≤", 0.5), "end_to_end": ("≤", 1.10), "and_or": ("≥", 150.0)}
GOAL_TEXT = {"transform": "≤ 0.5", "end_to_end": "≤ 1.10", "and_or": "≥ 150"}


def met(kind: str, value: float) -> bool:
    sign, goal = GOALS[kind]
    return value <= goal if sign == "≤" else value >= goal


def grid_of(n: int) -> tuple[int, int]:
    """A near-square grid of ``n`` patches (rows ≤ columns)."""
    rows = max(r for r in range(1, int(n**0.5) + 1) if n % r == 0)
    return rows, n // rows


def bench_transform(sizes: list[int], reps: int) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        v = np.random.default_rng(n).normal(size=1 << n)
        np.testing.assert_allclose(harsanyi(v), numpy_moebius(v), atol=1e-8)
        t = median_interleaved(
            {
                "ours": functools.partial(harsanyi, v),
                "numpy": functools.partial(numpy_moebius, v),
            },
            reps,
        )
        rows.append(
            {
                "n": n,
                "reps": reps,
                "ours_ms": t["ours"] * 1e3,
                "numpy_ms": t["numpy"] * 1e3,
                "ratio": t["ours"] / t["numpy"],
            }
        )
        print(f"transform n={n}: {rows[-1]['ratio']:.2f}", flush=True)
    return rows


@contextlib.contextmanager
def loads_with_shape(shape: tuple[int, int, int]) -> Iterator[None]:
    """Make ``bench_engine.bare_forward_seconds`` load models with an input shape (TorchScript
    files record none; ``run_analysis`` takes it from the image)."""
    with_shape = functools.partial(load_model, input_shape=shape)
    bench_engine.load_model = with_shape
    try:
        yield
    finally:
        bench_engine.load_model = load_model


def bench_end_to_end(demo: Path, sizes: list[int], reps: int) -> list[dict[str, Any]]:
    manifest = json.loads((demo / "demo_model.json").read_text())
    image = demo / manifest["samples"][SAMPLE]["file"]
    shape = (1, 16, 16)
    rows = []
    for fmt in FORMATS:
        model_path = demo / manifest["files"][fmt]
        for n in sizes:
            r, c = grid_of(n)
            request = AnalysisRequest(
                model=model_path, image=image, grid=f"{r}x{c}", device="cpu", batch_size=BATCH
            )
            e2e: list[float] = []
            bare: list[float] = []
            with loads_with_shape(shape):
                # a warm-up (first-call costs) at n ≤ 16: a minute less per format at n = 20
                wr, wc = grid_of(min(n, 16))
                run_analysis(replace(request, grid=f"{wr}x{wc}"))
                bench_engine.bare_forward_seconds(model_path, image, wr, wc, BATCH)
                for _ in range(reps):
                    e2e.append(timed(run_analysis, request))
                    bare.append(bench_engine.bare_forward_seconds(model_path, image, r, c, BATCH))
            t_e2e, t_bare = statistics.median(e2e), statistics.median(bare)
            rows.append(
                {
                    "format": fmt,
                    "n": n,
                    "reps": reps,
                    "analyze_s": t_e2e,
                    "bare_forward_s": t_bare,
                    "analyze_samples_s": e2e,
                    "bare_samples_s": bare,
                    "ratio": t_e2e / t_bare,
                }
            )
            print(f"end-to-end {fmt} n={n}: {t_e2e / t_bare:.3f}", flush=True)
    return rows


def bench_and_or(demo: Path, n: int, steps: int, dense_steps: int, reps: int) -> dict[str, Any]:
    manifest = json.loads((demo / "demo_model.json").read_text())
    r, c = grid_of(n)
    request = AnalysisRequest(
        model=demo / manifest["files"]["safetensors"],
        image=demo / manifest["samples"][SAMPLE]["file"],
        grid=f"{r}x{c}",
        device="cpu",
    )
    v = np.asarray(run_analysis(request).v, dtype=np.float64)
    and_or_interactions(v, steps=min(steps, 100), tol=0, polish=False)  # warm-up
    engine: list[float] = []
    dense: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = and_or_interactions(v, steps=steps, tol=0, polish=False)
        engine.append((time.perf_counter() - t0) / steps)
        dense.append(dense_step_seconds(v, dense_steps)[0])
    t_engine, t_dense = statistics.median(engine), statistics.median(dense)
    print(f"AND-OR n={n}: ×{t_dense / t_engine:.0f}", flush=True)
    return {
        "n": n,
        "grid": f"{r}x{c}",
        "reps": reps,
        "engine_steps": steps,
        "dense_steps": dense_steps,
        "engine_step_ms": t_engine * 1e3,
        "dense_step_ms": t_dense * 1e3,
        "engine_step_samples_ms": [x * 1e3 for x in engine],
        "dense_step_samples_ms": [x * 1e3 for x in dense],
        "loss": result.loss,
        "loss_and_only": result.loss_and_only,
        "ratio": t_dense / t_engine,
    }


def table(results: dict[str, Any]) -> str:
    def row(kind: str, figure: str, value: float, shown: str) -> tuple[str, str, str, str]:
        return figure, shown, GOAL_TEXT[kind], "yes" if met(kind, value) else "NO"

    rows = [("figure", "measured", "goal", "met?")]
    for r in results.get("transform", []):
        rows.append(
            row("transform", f"Harsanyi / NumPy, n = {r['n']}", r["ratio"], f"{r['ratio']:.2f}")
        )
    for r in results["end_to_end"]:
        name = f"analyze / bare passes, {r['format']}, n = {r['n']}"
        rows.append(row("end_to_end", name, r["ratio"], f"{r['ratio']:.3f}"))
    if "and_or" in results:
        ao = results["and_or"]
        name = f"AND-OR dense step / engine step, n = {ao['n']}"
        rows.append(row("and_or", name, ao["ratio"], f"×{ao['ratio']:.0f}"))
    widths = [max(len(line[i]) for line in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--end-to-end",
        type=int,
        nargs="+",
        metavar="N",
        help="only the end-to-end ratios, at these n (e.g. 20: about 9 minutes at --reps 2)",
    )
    parser.add_argument(
        "--json", type=Path, help=f"default {DEFAULT_JSON} (not written by --quick)"
    )
    args = parser.parse_args()
    configure_process(1)
    heap = reuse_heap()  # as the conceptlens command and the workers do (conceptlens.memory)
    reps = 1 if args.quick else args.reps
    started = time.perf_counter()
    before = uptime()
    print("before:", before, flush=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp)
        write_demo_model(demo)
        results: dict[str, Any] = {
            "quick": args.quick,
            "commit": head.stdout.strip(),
            "cpus": os.cpu_count(),
            "threads": 1,
            "heap_reused": heap,
            "native_threads": blas_threads(),
            "uptime_before": before,
        }
        if args.end_to_end:
            results["end_to_end"] = bench_end_to_end(demo, args.end_to_end, reps)
        else:
            results["transform"] = bench_transform([12, 14] if args.quick else [20, 22], 5 * reps)
            sizes = [10, 12] if args.quick else [12, 16]
            results["end_to_end"] = bench_end_to_end(demo, sizes, reps)
            results["and_or"] = bench_and_or(
                demo, 12 if args.quick else 14, 200 if args.quick else 1000, 3, reps
            )
    results["uptime_after"] = uptime()
    results["seconds"] = time.perf_counter() - started
    results["all_met"] = (
        all(met("transform", r["ratio"]) for r in results.get("transform", []))
        and all(met("end_to_end", r["ratio"]) for r in results["end_to_end"])
        and ("and_or" not in results or met("and_or", results["and_or"]["ratio"]))
    )
    print(table(results))
    if args.quick:
        print("(--quick: tiny sizes, a smoke test; the goals are for the default sizes)")
    print("after:", results["uptime_after"])
    print(f"{results['seconds']:.0f} s in all", flush=True)
    default = (
        DEFAULT_JSON.with_name("headline_end_to_end.json") if args.end_to_end else DEFAULT_JSON
    )
    out = args.json or (None if args.quick else default)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
