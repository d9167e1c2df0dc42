"""AND-OR split, 10,000 steps at n = 14: the engine against the dense-matrix step, in one run.

    python bench/bench_and_or.py [--reps 3] [--steps 10000] [--dense-steps 20] [--table v.npy]

The game: the demo CNN's log-odds table on a 2×7 grid (sample 3, mean baseline), as in
``bench_engine.py``; ``--table`` takes any saved ``[2**14]`` table instead. Timed, each
``--reps`` times, interleaved, median reported with every repetition kept:

- ``pdhg``: ``and_or_interactions(v, steps, tol=0)`` (all steps run; the default method);
- ``adam``: the same with ``method="adam"`` (the lab's optimiser on our butterflies);
- ``pdhg default tol``: the default stopping rule, to show ``steps_used``;
- ``previous``: the implementation this change replaced (``git show <rev>:conceptlens/and_or.py``,
  default ``33ee90d``), once, with torch's default threads as it ran;
- ``dense``: the lab's approach, four products with a dense ``2^n × 2^n`` float32 Möbius
  matrix a step (``i_and = M(½v+γ)``, ``i_or = −M R(½v−γ)``, ``Mᵀ s_and + R Mᵀ s_or``, a sign
  step), ``--dense-steps`` steps timed and extrapolated to ``steps`` (× steps/dense-steps),
  with torch's default threads. float32 halves its memory traffic (1 GiB matrix): kind to it.

Prints ``uptime`` before and after and writes ``bench/results/and_or.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from conceptlens.and_or import AndOrResult, and_or_interactions  # noqa: E402


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def demo_table(rows: int, cols: int) -> np.ndarray:
    from conceptlens.models.demo import write_demo_model
    from conceptlens.pipeline import AnalysisRequest, run_analysis

    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp)
        write_demo_model(demo)
        manifest = json.loads((demo / "demo_model.json").read_text())
        request = AnalysisRequest(
            model=demo / manifest["files"]["safetensors"],
            image=demo / manifest["samples"][3]["file"],
            grid=f"{rows}x{cols}",
            device="cpu",
        )
        return np.asarray(run_analysis(request).v, dtype=np.float64)


def previous_module(rev: str) -> Any:
    """The ``and_or`` module as it was at ``rev``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{rev}:conceptlens/and_or.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "and_or_previous.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("and_or_previous", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def dense_moebius(n: int) -> torch.Tensor:
    """``M[S, T] = (−1)^{|S|−|T|} [T ⊆ S]`` as a dense float32 matrix (Kronecker power)."""
    factor = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float32)
    mat = torch.ones((1, 1), dtype=torch.float32)
    for _ in range(n):
        mat = torch.kron(mat, factor)
    return mat


def dense_step_seconds(v: np.ndarray, steps: int) -> tuple[float, list[float]]:
    """Seconds per step of the lab's dense-matrix sub-gradient step (median, and each step)."""
    n = int(v.size).bit_length() - 1
    mat = dense_moebius(n)
    table = torch.as_tensor(v, dtype=torch.float32)
    gamma = torch.zeros_like(table)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        i_and = mat @ (0.5 * table + gamma)
        i_or = -(mat @ (0.5 * table - gamma).flip(0))
        grad = mat.T @ torch.sign(i_and) + (mat.T @ torch.sign(i_or)).flip(0)
        gamma -= 1e-3 * grad.sign()
        times.append(time.perf_counter() - t0)
    del mat
    return statistics.median(times), times


def summary(result: Any, seconds: list[float]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "seconds_median": statistics.median(seconds),
        "seconds": seconds,
        "loss": result.loss,
        "loss_and_only": result.loss_and_only,
        "residual": result.residual,
    }
    if isinstance(result, AndOrResult):
        row |= {
            "bound": result.bound,
            "gap": result.gap,
            "steps_used": result.steps_used,
            "converged": result.converged,
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--dense-steps", type=int, default=20)
    parser.add_argument("--table", type=Path, help="a saved [2**n] table instead of the demo")
    parser.add_argument("--previous", default="33ee90d", help="git revision of the old code")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load_before = uptime()
    print("before:", load_before, flush=True)
    v = np.load(args.table) if args.table else demo_table(2, 7)
    game = str(args.table) if args.table else "demo CNN, 2x7 grid, sample 3, mean baseline"
    n = int(v.size).bit_length() - 1
    steps = args.steps
    runs: dict[str, Callable[[], AndOrResult]] = {
        "pdhg": lambda: and_or_interactions(v, steps=steps, tol=0, polish=False),
        "adam": lambda: and_or_interactions(v, steps=steps, tol=0, method="adam", polish=False),
        "pdhg default tol": lambda: and_or_interactions(v, steps=steps, polish=False),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    results: dict[str, AndOrResult] = {}
    for rep in range(args.reps):
        for name, run in runs.items():
            t0 = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - t0)
            print(f"rep {rep} {name}: {times[name][-1]:.2f} s", flush=True)
    rows = {name: summary(results[name], times[name]) for name in runs}

    old = previous_module(args.previous)
    t0 = time.perf_counter()
    previous = old.and_or_interactions(v, steps=steps)
    rows["previous"] = summary(previous, [time.perf_counter() - t0])
    rows["previous"]["revision"] = args.previous
    print(f"previous ({args.previous}): {rows['previous']['seconds_median']:.2f} s", flush=True)

    per_step, dense_times = dense_step_seconds(v, args.dense_steps)
    dense_total = per_step * steps
    print(f"dense: {per_step * 1e3:.1f} ms a step → {dense_total:.0f} s for {steps}", flush=True)
    load_after = uptime()
    print("after:", load_after)
    ours = rows["pdhg"]["seconds_median"]
    out: dict[str, Any] = {
        "game": game,
        "n": n,
        "steps": steps,
        "reps": args.reps,
        "torch_threads_default": torch.get_num_threads(),
        "threads_engine": 1,
        "cpus": os.cpu_count(),
        "uptime_before": load_before,
        "uptime_after": load_after,
        "runs": rows,
        "dense": {
            "steps_timed": args.dense_steps,
            "step_s_median": per_step,
            "step_s": dense_times,
            "extrapolated_s": dense_total,
            "dtype": "float32",
        },
        "speedup_vs_dense": dense_total / ours,
        "speedup_vs_previous": rows["previous"]["seconds_median"] / ours,
    }
    for name, row in rows.items():
        extra = f", bound {row['bound']:.1f}, gap {row['gap']:.3f}" if "bound" in row else ""
        used = f", steps used {row['steps_used']}" if "steps_used" in row else ""
        print(
            f"{name:>17}: {row['seconds_median']:6.2f} s  Σ|I| {row['loss']:.1f}"
            f" (AND only {row['loss_and_only']:.1f}){extra}{used}"
        )
    print(f"dense extrapolated {dense_total:.0f} s: ×{out['speedup_vs_dense']:.0f} (pdhg)")
    print(f"previous code: ×{out['speedup_vs_previous']:.1f} slower than pdhg")
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "and_or.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
