"""Engine speed, measured side by side in one run (issue: the interaction engine).

    python bench/bench_engine.py [--quick] [--no-shapiq]

1. Harsanyi transform at n = 16, 20, 22 against a plain NumPy reshape-and-difference Möbius
   transform, and against shapiq's exact Möbius computation on the same table.
2. End-to-end ``analyze`` of the demo CNN at n = 12 and 16 against the bare batched forward
   passes over the same 2^n masked inputs.
3. The exact multi-order curve from a Harsanyi table at n = 16.
4. The AND-OR optimisation (10,000 steps) at n = 14, against a dense-matrix step (the lab's
   approach: the 2^n × 2^n Möbius matrix, four products a step), extrapolated from a few steps.

Prints a Markdown table and writes ``bench/results/engine.json``. Timings are medians of
repeats; ratios compare runs made in this same process, one after the other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptlens.and_or import and_or_interactions
from conceptlens.game import mask_range_coalitions
from conceptlens.images import load_image
from conceptlens.models.demo import write_demo_model
from conceptlens.models.loaders import load_model
from conceptlens.pairwise import multi_order
from conceptlens.pipeline import AnalysisRequest, run_analysis
from conceptlens.players import PatchGrid, Players, make_baseline, masked_inputs
from conceptlens.transforms import harsanyi

RESULTS = Path(__file__).parent / "results"


def timed(fn: Callable[..., object], *args: Any) -> float:
    """Seconds one call of ``fn(*args)`` takes."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def median_time(fn: Callable[..., object], *args: Any, repeats: int) -> float:
    return statistics.median(timed(fn, *args) for _ in range(repeats))


def numpy_moebius(v: np.ndarray) -> np.ndarray:
    """The reference: reshape to [2]*n and difference along one axis at a time."""
    n = v.size.bit_length() - 1
    a = v.copy()
    cube = a.reshape([2] * n)
    for axis in range(n):
        hi: list[slice | int] = [slice(None)] * n
        lo: list[slice | int] = [slice(None)] * n
        hi[axis], lo[axis] = 1, 0
        cube[tuple(hi)] -= cube[tuple(lo)]
    return a


def shapiq_moebius(v: np.ndarray) -> tuple[np.ndarray, float]:
    """shapiq's ExactComputer Möbius transform of the same table; returns (table, seconds)."""
    from shapiq import ExactComputer

    n = v.size.bit_length() - 1
    weights = 1 << np.arange(n)

    def game(coalitions: np.ndarray) -> np.ndarray:
        return v[coalitions.astype(np.int64) @ weights]

    computer = ExactComputer(game, n_players=n, evaluate_game=True)
    t0 = time.perf_counter()
    values = computer.moebius_transform  # a cached property: the O(3^n) loop runs here
    seconds = time.perf_counter() - t0
    out = np.zeros_like(v)
    for players, pos in values.interaction_lookup.items():
        out[sum(1 << p for p in players)] = values.values[pos]
    return out, seconds


def bench_harsanyi(sizes: list[int], shapiq_sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        v = np.random.default_rng(n).normal(size=1 << n)
        np.testing.assert_allclose(harsanyi(v), numpy_moebius(v), atol=1e-8)
        repeats = 15 if n <= 16 else 5
        ours_s, ref_s = [], []
        for _ in range(repeats):  # interleaved so both see the same machine state
            ours_s.append(timed(harsanyi, v))
            ref_s.append(timed(numpy_moebius, v))
        ours, ref = statistics.median(ours_s), statistics.median(ref_s)
        row: dict[str, Any] = {
            "n": n,
            "ours_ms": ours * 1e3,
            "numpy_ms": ref * 1e3,
            "ratio": ours / ref,
        }
        if n in shapiq_sizes:
            table, seconds = shapiq_moebius(v)
            np.testing.assert_allclose(table, harsanyi(v), atol=1e-6)
            row["shapiq_s"] = seconds
            row["shapiq_ratio"] = ours / seconds
        rows.append(row)
    return rows


def bare_forward_seconds(model_path: Path, image: Path, rows: int, cols: int, batch: int) -> float:
    """The model's own compute: forward passes over pre-built masked inputs, nothing else."""
    model = load_model(model_path, device="cpu")
    c, h, w = model.input_shape
    x = load_image(image, channels=c, size=(h, w))
    players = Players(PatchGrid(rows, cols, h, w))
    base = make_baseline(x, "mean")
    n = players.n
    batches = []
    for start in range(0, 1 << n, batch):
        coal = mask_range_coalitions(start, min(start + batch, 1 << n), n, torch.device("cpu"))
        batches.append(masked_inputs(x, base, players.pixel_presence(coal)).contiguous())
    t0 = time.perf_counter()
    for inputs in batches:
        model.predict(inputs)
    return time.perf_counter() - t0


def bench_end_to_end(
    demo: Path, grids: list[tuple[int, int]], repeats: int
) -> list[dict[str, Any]]:
    manifest = json.loads((demo / "demo_model.json").read_text())
    image = demo / manifest["samples"][3]["file"]
    rows = []
    for fmt in ("safetensors", "onnx"):
        model_path = demo / manifest["files"][fmt]
        for r, c in grids:
            request = AnalysisRequest(
                model=model_path, image=image, grid=f"{r}x{c}", device="cpu", batch_size=2048
            )
            e2e, bare = [], []
            for _ in range(repeats):
                e2e.append(timed(run_analysis, request))
                bare.append(bare_forward_seconds(model_path, image, r, c, 2048))
            t_e2e, t_bare = statistics.median(e2e), statistics.median(bare)
            rows.append(
                {
                    "format": fmt,
                    "n": r * c,
                    "end_to_end_s": t_e2e,
                    "bare_forward_s": t_bare,
                    "ratio": t_e2e / t_bare,
                }
            )
    return rows


def bench_multi_order(n: int) -> dict[str, Any]:
    interactions = harsanyi(np.random.default_rng(0).normal(size=1 << n))
    multi_order(interactions)  # warm the per-n cache of masks sorted by order
    cold = np.random.default_rng(1).normal(size=1 << n)
    seconds = median_time(multi_order, cold, repeats=7)
    return {"n": n, "seconds": seconds, "pairs": n * (n - 1) // 2, "orders": n - 1}


def dense_moebius(n: int) -> torch.Tensor:
    """The 2^n × 2^n Möbius matrix (Kronecker power of [[1, 0], [−1, 1]]), float32."""
    m = torch.ones(1, 1)
    block = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    for _ in range(n):
        m = torch.kron(block, m)
    return m


def dense_step_seconds(v: torch.Tensor, mat: torch.Tensor, steps: int) -> float:
    """Sub-gradient steps of the same L1 objective with dense matrix products."""
    gamma = torch.zeros_like(v)
    rev = torch.arange(v.numel() - 1, -1, -1)
    t0 = time.perf_counter()
    for _ in range(steps):
        i_and = mat @ (0.5 * v + gamma)
        i_or = -(mat @ (0.5 * v - gamma)[rev])
        grad = mat.T @ torch.sign(i_and) + (mat.T @ torch.sign(i_or))[rev]
        gamma -= 1e-3 * grad.sign()
    return (time.perf_counter() - t0) / steps


def bench_and_or(
    demo: Path, n_rows: int, n_cols: int, steps: int, dense_steps: int
) -> dict[str, Any]:
    manifest = json.loads((demo / "demo_model.json").read_text())
    request = AnalysisRequest(
        model=demo / manifest["files"]["safetensors"],
        image=demo / manifest["samples"][3]["file"],
        grid=f"{n_rows}x{n_cols}",
        device="cpu",
    )
    v = run_analysis(request).v
    n = n_rows * n_cols
    t0 = time.perf_counter()
    result = and_or_interactions(v, steps=steps)
    ours = time.perf_counter() - t0
    row: dict[str, Any] = {
        "n": n,
        "steps": steps,
        "seconds": ours,
        "loss": result.loss,
        "loss_and_only": result.loss_and_only,
        "residual": result.residual,
    }
    if dense_steps:
        mat = dense_moebius(n)
        per_step = dense_step_seconds(torch.as_tensor(v, dtype=torch.float32), mat, dense_steps)
        row["dense_step_s"] = per_step
        row["dense_extrapolated_s"] = per_step * steps
        row["speedup"] = per_step * steps / ours
    return row


def markdown(results: dict[str, Any]) -> str:
    lines = ["### Harsanyi transform (median; ratio = ours / NumPy reference, target ≤ 1.2)", ""]
    lines += [
        "| n | ours (ms) | NumPy reference (ms) | ratio | shapiq exact Möbius (s) |",
        "|---|---|---|---|---|",
    ]
    for r in results["harsanyi"]:
        shap = f"{r['shapiq_s']:.2f}" if "shapiq_s" in r else "—"
        lines.append(
            f"| {r['n']} | {r['ours_ms']:.2f} | {r['numpy_ms']:.2f} | {r['ratio']:.2f} | {shap} |"
        )
    lines += ["", "### End-to-end analyze vs bare forward passes (target ratio ≤ 1.10)", ""]
    lines += [
        "| model format | n | analyze (s) | bare forward (s) | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in results["end_to_end"]:
        times = f"{r['end_to_end_s']:.2f} | {r['bare_forward_s']:.2f}"
        lines.append(f"| {r['format']} | {r['n']} | {times} | {r['ratio']:.3f} |")
    mo = results["multi_order"]
    lines += ["", f"### Exact multi-order curve at n = {mo['n']} (target ≤ 0.5 s)", ""]
    lines.append(f"{mo['pairs']} pairs × {mo['orders']} orders: {mo['seconds'] * 1e3:.1f} ms")
    ao = results["and_or"]
    lines += ["", f"### AND-OR, {ao['steps']} steps at n = {ao['n']}", ""]
    lines.append(
        f"ours {ao['seconds']:.1f} s (Σ|I| {ao['loss']:.2f} vs AND-only {ao['loss_and_only']:.2f}, "
        f"residual {ao['residual']:.1e})"
    )
    if "dense_step_s" in ao:
        lines.append(
            f"; dense-matrix steps {ao['dense_step_s'] * 1e3:.0f} ms each → "
            f"{ao['dense_extrapolated_s'] / 60:.1f} min for {ao['steps']} steps "
            f"(×{ao['speedup']:.0f})"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--no-shapiq", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    sizes = [12, 14] if args.quick else [16, 20, 22]
    shapiq_sizes = [] if args.no_shapiq else ([12] if args.quick else [12, 14, 16])
    sizes = sorted(set(sizes) | set(shapiq_sizes))
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp)
        write_demo_model(demo)
        results: dict[str, Any] = {
            "torch_threads": torch.get_num_threads(),
            "harsanyi": bench_harsanyi(sizes, shapiq_sizes),
            "end_to_end": bench_end_to_end(
                demo, [(2, 3)] if args.quick else [(3, 4), (4, 4)], 1 if args.quick else 5
            ),
            "multi_order": bench_multi_order(12 if args.quick else 16),
            "and_or": bench_and_or(
                demo,
                2,
                5 if args.quick else 7,
                500 if args.quick else 10_000,
                2 if args.quick else 3,
            ),
        }
    RESULTS.mkdir(exist_ok=True)
    if not args.quick:
        (RESULTS / "engine.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
