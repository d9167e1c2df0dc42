"""Threads per process (issue 14 §1): one thread against the default, side by side.

    .venv/bin/python bench/bench_threads.py [--reps 9 --process-reps 7] [--append]
                                 # ~3 min; writes (or with --append adds to) results/threads.json

Three parts, each interleaving the settings it compares and reporting medians (and the
range) of ``--reps`` repetitions, wall time and CPU time (all threads); ``uptime`` is
printed before and after:

1. the Harsanyi transform at n = 20 (``conceptlens.transforms.harsanyi``, a float64 table
   of 2^20 values, copy included) with 1 thread against the default (one per core), on
   the machine as found and with a neighbour process of ours spinning on one core;
2. one analysis's forward passes (``conceptlens.game.logit_table`` over all 2^n masks, the
   demo CNN, batch 1024) at n = 12 and 14, safetensors (torch) and ONNX, 1 against 2
   threads (an ONNX session takes its thread count when it is created, so each setting
   loads its own);
3. the same total work — ``--analyses`` analyses (forward passes at n = 12 and the
   transform) — in one process against two, each process with 1 or default threads;
   processes are started (``spawn``) and warmed up first, then released together, and the
   figure is the time from the first start to the last finish (``--process-reps`` times).

The thread settings are made with :mod:`conceptlens.threads`, as the workers make them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conceptlens.game import MaskedModelGame, logit_table
from conceptlens.models.demo import DEMO_FILES, write_demo_model
from conceptlens.models.loaders import LoadedModel, load_model
from conceptlens.players import PatchGrid, Players
from conceptlens.threads import blas_threads, configure_process, limit_threads
from conceptlens.transforms import harsanyi

OUT = Path(__file__).resolve().parent / "results" / "threads.json"
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
BATCH = 1024


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all threads of this process) of ``fn()``."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
    wall = [w for w, _ in samples]
    cpu = [c for _, c in samples]
    return {
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "max_s": max(wall),
        "cpu_median_s": statistics.median(cpu),
        "samples_s": wall,
        "cpu_samples_s": cpu,
    }


def _kernel(spec: str, demo: str) -> Callable[[], Any]:
    """``harsanyi`` or ``logit_table:<format>:<n>``, ready to run (model loaded)."""
    if spec == "harsanyi":
        v = np.random.default_rng(0).standard_normal(1 << 20)
        return partial(harsanyi, v)
    _, fmt, n = spec.split(":")
    model = load_model(Path(demo) / DEMO_FILES[fmt], input_shape=(1, 16, 16))
    return partial(logit_table, game_of(model, int(n)))


def _runner(spec: str, demo: str, threads: int, conn: Any) -> None:
    """A process with ``threads`` threads (set at its start, as a worker's) that runs the
    kernel once per request and answers wall and CPU seconds."""
    configure_process(threads)  # before the model loads: ONNX sessions keep their threads
    fn = _kernel(spec, demo)
    fn()  # warm
    conn.send(torch.get_num_threads())
    while conn.recv():
        conn.send(timed(fn))


def interleaved(spec: str, demo: Path, reps: int) -> dict[str, dict[str, Any]]:
    """The kernel in one process per thread count (1 and one per core), run in turn
    ``reps`` times, 50 ms apart (pool threads that spin after a kernel do not spill over
    into the next one's CPU time)."""
    ctx = mp.get_context("spawn")
    names = {1: "1 thread", CORES: f"{CORES} threads"}
    procs, conns = [], {}
    for t in names:
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_runner, args=(spec, str(demo), t, theirs), daemon=True)
        proc.start()
        procs.append(proc)
        conns[t] = ours
    try:
        for t, conn in conns.items():
            assert conn.recv() == t
        samples: dict[int, list[tuple[float, float]]] = {t: [] for t in names}
        for _ in range(reps):
            for t, conn in conns.items():
                time.sleep(0.05)
                conn.send(True)
                samples[t].append(conn.recv())
    finally:
        for conn in conns.values():
            conn.send(False)
        for proc in procs:
            proc.join(timeout=30)
    return {names[t]: summary(s) for t, s in samples.items()}


# ---------------------------------------------------------------- 1. the transform


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(range(10_000))


def part_transform(demo: Path, reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": 20, "table": "float64 [2^20], copy included"}
    out["load before"] = os.getloadavg()[0]
    out["as found"] = interleaved("harsanyi", demo, reps)
    print("  as found:", _line(out["as found"]), flush=True)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    neighbour = ctx.Process(target=_spin, args=(stop,), daemon=True)
    neighbour.start()
    time.sleep(1.0)
    try:
        out["one core busy"] = interleaved("harsanyi", demo, reps)
    finally:
        stop.set()
        neighbour.join(timeout=5)
    print("  one core busy:", _line(out["one core busy"]), flush=True)
    return out


# ---------------------------------------------------------------- 2. forward passes


def image() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.random.default_rng(0).random((1, 16, 16), dtype=np.float32))
    return x, torch.zeros_like(x)


def game_of(model: LoadedModel, n: int) -> MaskedModelGame:
    x, base = image()
    players = Players(PatchGrid(4, 4, 16, 16), cells=range(n))
    return MaskedModelGame(
        model.predict, x, players, base, device=torch.device("cpu"), batch_size=BATCH
    )


def part_forward(demo: Path, reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"batch_size": BATCH, "load before": os.getloadavg()[0]}
    for fmt in ("safetensors", "onnx"):
        for n in (12, 14):
            out[f"{fmt} n={n}"] = interleaved(f"logit_table:{fmt}:{n}", demo, reps)
            print(f"  {fmt} n={n}:", _line(out[f"{fmt} n={n}"]), flush=True)
    return out


# ---------------------------------------------------------------- 3. processes


def _analysis(game: MaskedModelGame) -> None:
    values = logit_table(game)[:, 0].astype(np.float64)
    harsanyi(values, inplace=True)


def _worker(demo: str, threads: int, count: int, barrier: Any, queue: Any) -> None:
    configure_process(threads)
    model = load_model(Path(demo) / DEMO_FILES["safetensors"], input_shape=(1, 16, 16))
    game = game_of(model, 12)
    _analysis(game)  # warm
    barrier.wait()
    start, cpu = time.monotonic(), time.process_time()
    for _ in range(count):
        _analysis(game)
    queue.put((start, time.monotonic(), time.process_time() - cpu, torch.get_num_threads()))


def run_processes(demo: Path, processes: int, threads: int, analyses: int) -> tuple[float, float]:
    """Seconds from the first start to the last finish, and CPU seconds of all processes."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    queue = ctx.Queue()
    share = [analyses // processes + (i < analyses % processes) for i in range(processes)]
    procs = [
        ctx.Process(target=_worker, args=(str(demo), threads, k, barrier, queue)) for k in share
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    assert all(r[3] == threads for r in results), results
    wall = max(r[1] for r in results) - min(r[0] for r in results)
    return wall, sum(r[2] for r in results)


def part_processes(demo: Path, reps: int, analyses: int) -> dict[str, Any]:
    configs = {
        f"1 process x {CORES} threads": (1, CORES),
        "1 process x 1 thread": (1, 1),
        f"{CORES} processes x 1 thread": (CORES, 1),
        f"{CORES} processes x {CORES} threads": (CORES, CORES),
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    load = os.getloadavg()[0]
    for _ in range(reps):
        for name, (procs, threads) in configs.items():
            samples[name].append(run_processes(demo, procs, threads, analyses))
    out: dict[str, Any] = {
        "load before": load,
        "work": f"{analyses} analyses: logit_table of the demo CNN (safetensors) at n = 12, "
        "batch 1024, then harsanyi of one class's values",
        **{name: summary(s) for name, s in samples.items()},
    }
    base = out[f"1 process x {CORES} threads"]["median_s"]
    out["speed-up over 1 process x default threads"] = {
        name: base / out[name]["median_s"] for name in configs
    }
    return out


def _line(result: dict[str, dict[str, Any]]) -> str:
    return ", ".join(
        f"{name} {1e3 * r['median_s']:.1f} ms ({1e3 * r['min_s']:.1f}–{1e3 * r['max_s']:.1f}; "
        f"CPU {1e3 * r['cpu_median_s']:.1f} ms)"
        for name, r in result.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--process-reps", type=int, default=3)
    parser.add_argument("--analyses", type=int, default=8)
    parser.add_argument("--skip-processes", action="store_true")
    parser.add_argument(
        "--append", action="store_true", help="add this run to the runs already in the file"
    )
    args = parser.parse_args()

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": CORES,
        "torch": torch.__version__,
        "default_threads": torch.get_num_threads(),
        "native_pools": blas_threads(),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "reps": args.reps,
        "uptime_before": uptime(),
    }
    print(report["uptime_before"], flush=True)
    print(f"{CORES} cores, torch {torch.__version__}, default threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp)
        with limit_threads(1):
            write_demo_model(demo, seed=0, n_samples=1)
        print("1. harsanyi, n = 20", flush=True)
        report["harsanyi"] = part_transform(demo, args.reps)
        print("2. logit_table (forward passes)", flush=True)
        report["logit_table"] = part_forward(demo, args.reps)
        if not args.skip_processes:
            print(f"3. {args.analyses} analyses in 1 or {CORES} processes", flush=True)
            report["processes"] = part_processes(demo, args.process_reps, args.analyses)
            report["processes"]["reps"] = args.process_reps
            for name, r in report["processes"].items():
                if isinstance(r, dict) and "median_s" in r:
                    print(
                        f"  {name}: {r['median_s']:.2f} s ({r['min_s']:.2f}–{r['max_s']:.2f}; "
                        f"CPU {r['cpu_median_s']:.2f} s)"
                    )
            speed = report["processes"]["speed-up over 1 process x default threads"]
            print("  speed-up:", json.dumps({k: round(v, 2) for k, v in speed.items()}))

    report["uptime_after"] = uptime()
    print(report["uptime_after"])
    runs = json.loads(OUT.read_text())["runs"] if args.append and OUT.exists() else []
    OUT.write_text(json.dumps({"runs": [*runs, report]}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
