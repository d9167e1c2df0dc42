"""Issue 14, items 2–5: each change against the code it replaced, side by side in one run.

    python bench/bench_issue14.py [outputs] [logit-table] [cli] [pairwise] [--reps N]

- ``outputs``: ``output_values`` (row chunks) against the whole-table formula it replaced,
  on a float32 logit table ``[2^n, 10]``: time (median of ``--reps``, interleaved) and the
  traced peak of NumPy allocations above the input (``tracemalloc``; one call each).
- ``logit-table``: ``logit_table`` of the demo CNN (ONNX and safetensors) at n = 12, inline
  (few batches) against the threaded hand-off it used before, and the bare ``predict``.
- ``cli``: the start-up of ``conceptlens --help`` / ``gc --help`` / what ``analyze`` imports,
  as whole processes, and which heavy modules each one loads.
- ``pairwise``: ``pair_dividend_sums`` against the bit-matrix formulation it replaced.

Prints results, with ``uptime`` before and after, and writes ``bench/results/issue14.json``.
Run with one thread (``OMP_NUM_THREADS=1``) for figures comparable with the README.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


def load() -> str:
    return os.getloadavg().__repr__()


def median_interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds of each function, the functions interleaved repetition by repetition."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # one warm-up each
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def traced_peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- item 2: output_values -------------------------------------------------------------


def bench_outputs(reps: int) -> list[dict[str, Any]]:
    from conceptlens.outputs import output_values
    from tests.conceptlens.test_outputs import reference_output_values as old_output_values

    rows = []
    for n in (16, 20, 22):
        z = np.random.default_rng(n).normal(size=(1 << n, 10)).astype(np.float32) * 4
        for kind in ("log-odds", "log-prob"):
            old_fn = functools.partial(old_output_values, z, 3, kind)
            new_fn = functools.partial(output_values, z, 3, kind)
            new = new_fn()
            identical = bool(np.array_equal(new, old_fn()))
            t = median_interleaved(
                {"old": old_fn, "new": new_fn}, reps if n < 22 else max(3, reps // 2)
            )
            peak_old = traced_peak(old_fn)
            peak_new = traced_peak(new_fn)
            row = {
                "n": n,
                "kind": kind,
                "table_MB": z.nbytes / 1e6,
                "old_s": t["old"],
                "new_s": t["new"],
                "old_peak_MB": peak_old / 1e6,
                "new_peak_MB": peak_new / 1e6,
                "output_MB": new.nbytes / 1e6,
                "identical": identical,
            }
            print(
                f"outputs n={n:2d} {kind:8s} old {t['old'] * 1e3:8.1f} ms  new "
                f"{t['new'] * 1e3:8.1f} ms  ratio {t['new'] / t['old']:.2f}  peak old "
                f"{peak_old / 1e6:7.1f} MB new {peak_new / 1e6:6.1f} MB (output "
                f"{new.nbytes / 1e6:.1f} MB)  identical {identical}",
                flush=True,
            )
            rows.append(row)
    return rows


# --- item 4: logit_table inline for few batches ----------------------------------------


def bench_logit_table(reps: int) -> list[dict[str, Any]]:
    import tempfile

    import torch

    from conceptlens import game as game_module
    from conceptlens.game import MaskedModelGame, logit_table, mask_range_coalitions
    from conceptlens.images import load_image
    from conceptlens.models.demo import write_demo_model
    from conceptlens.models.loaders import load_model
    from conceptlens.players import PatchGrid, Players, make_baseline, masked_inputs

    torch.set_num_threads(1)
    cpu, batch, rows = torch.device("cpu"), 2048, []
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_model(tmp, n_samples=4)
        manifest = json.loads((Path(tmp) / "demo_model.json").read_text())
        x = load_image(Path(tmp) / manifest["samples"][3]["file"], channels=1, size=(16, 16))
        base = make_baseline(x, "mean")
        for fmt in ("onnx", "safetensors"):
            model = load_model(Path(tmp) / manifest["files"][fmt], input_shape=(1, 16, 16))
            for grid in ((3, 4), (2, 5)):
                players = Players(PatchGrid(*grid, 16, 16))
                n = players.n
                inputs = [
                    masked_inputs(
                        x, base, players.pixel_presence(mask_range_coalitions(a, b, n, cpu))
                    ).contiguous()
                    for a in range(0, 1 << n, batch)
                    for b in [min(a + batch, 1 << n)]
                ]

                def bare(model: Any = model, inputs: list[Any] = inputs) -> None:
                    for batch_inputs in inputs:
                        model.predict(batch_inputs)

                def table(inline: int, model: Any = model, players: Players = players) -> Any:
                    game_module.INLINE_BATCHES = inline
                    try:
                        return logit_table(
                            MaskedModelGame(model.predict, x, players, base, batch_size=batch)
                        )
                    finally:
                        game_module.INLINE_BATCHES = 2

                t = median_interleaved(
                    {
                        "bare": bare,
                        "threaded": functools.partial(table, 0),
                        "inline": functools.partial(table, 2),
                    },
                    reps,
                )
                identical = bool(np.array_equal(table(0), table(2)))
                row = {"format": fmt, "n": n, **{f"{k}_s": v for k, v in t.items()}}
                row["identical"] = identical
                print(
                    f"logit_table {fmt:11s} n={n:2d} bare {t['bare'] * 1e3:7.1f} ms  threaded "
                    f"{t['threaded'] * 1e3:7.1f} ms ({t['threaded'] / t['bare']:.2f}×)  inline "
                    f"{t['inline'] * 1e3:7.1f} ms ({t['inline'] / t['bare']:.2f}×)  identical "
                    f"{identical}",
                    flush=True,
                )
                rows.append(row)
    return rows


# --- item 5: CLI start-up ---------------------------------------------------------------


OLD_TREE = os.environ.get("ISSUE14_OLD_TREE")
"""A checkout of the code before the lazy imports (``git worktree add /tmp/old <commit>``)."""


def bench_cli(reps: int) -> list[dict[str, Any]]:
    import tempfile

    from conceptlens.models.demo import write_demo_model

    heavy = ("torch", "onnx", "onnxruntime", "safetensors", "sklearn")
    trees = {"new": ROOT, **({"old": Path(OLD_TREE)} if OLD_TREE else {})}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_model(tmp, n_samples=4)
        manifest = json.loads((Path(tmp) / "demo_model.json").read_text())
        image = str(Path(tmp) / manifest["samples"][3]["file"])
        cases = {
            "--help": "from conceptlens.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass",
            "import pipeline": "import conceptlens.pipeline",
            "analyze ONNX n=12": "from conceptlens.cli import main\nmain(['analyze', '--model', "
            f"{str(Path(tmp) / 'digit_cnn.onnx')!r}, '--image', {image!r}, '--grid', '3x4', "
            "'--quiet'])",
            "analyze safetensors n=12": "from conceptlens.cli import main\nmain(['analyze', "
            f"'--model', {str(Path(tmp) / 'digit_cnn.safetensors')!r}, '--image', {image!r}, "
            "'--grid', '3x4', '--quiet'])",
        }
        for name, code in cases.items():
            script = f"{code}\nimport sys\nprint([m for m in {heavy!r} if m in sys.modules])"

            def run(tree: Path, script: str = script) -> str:
                done = subprocess.run(
                    [sys.executable, "-c", script],
                    cwd=tree,
                    env={**os.environ, "PYTHONPATH": str(tree)},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                return done.stdout.strip().splitlines()[-1]

            modules = {k: run(tree) for k, tree in trees.items()}
            t = median_interleaved(
                {k: functools.partial(run, tree) for k, tree in trees.items()}, reps
            )
            row = {"case": name, **{f"{k}_s": v for k, v in t.items()}, "modules": modules}
            print(
                f"cli {name:26s} "
                + "  ".join(f"{k} {v:6.2f} s {modules[k]}" for k, v in t.items()),
                flush=True,
            )
            rows.append(row)
    return rows


# --- item 3: pair_dividend_sums ---------------------------------------------------------


def old_pair_dividend_sums(interactions: np.ndarray) -> np.ndarray:
    """``pair_dividend_sums`` before issue 14: per order, ``(bits · I)ᵀ @ bits`` in chunks."""
    from conceptlens.transforms import n_players_of, orders

    table = np.asarray(interactions, dtype=np.float64)
    n = n_players_of(table)
    order = orders(n)
    by_order = np.argsort(order, kind="stable").astype(np.int64)
    offsets = [0, *np.cumsum(np.bincount(order, minlength=n + 1)).tolist()]
    out = np.zeros((n - 1, n, n))
    shifts = np.arange(n, dtype=np.int64)
    for k in range(2, n + 1):
        for start in range(offsets[k], offsets[k + 1], 1 << 16):
            masks = by_order[start : min(start + (1 << 16), offsets[k + 1])]
            bits = ((masks[:, None] >> shifts) & 1).astype(np.float64)
            out[k - 2] += (bits * table[masks, None]).T @ bits
    idx = np.arange(n)
    out[:, idx, idx] = 0.0
    return out


def bench_pairwise(reps: int) -> list[dict[str, Any]]:
    from conceptlens.pairwise import pair_dividend_sums

    rows = []
    for n in (12, 16, 20, 22):
        table = np.random.default_rng(n).normal(size=1 << n)
        old_fn = functools.partial(old_pair_dividend_sums, table)
        new_fn = functools.partial(pair_dividend_sums, table)
        diff = float(np.abs(old_fn() - new_fn()).max())
        t = median_interleaved({"old": old_fn, "new": new_fn}, reps if n < 22 else 3)
        peak_old, peak_new = traced_peak(old_fn), traced_peak(new_fn)
        row = {
            "n": n,
            "old_s": t["old"],
            "new_s": t["new"],
            "old_peak_MB": peak_old / 1e6,
            "new_peak_MB": peak_new / 1e6,
            "max_abs_diff": diff,
        }
        print(
            f"pair_dividend_sums n={n:2d} old {t['old'] * 1e3:8.1f} ms  new "
            f"{t['new'] * 1e3:7.1f} ms  ratio {t['new'] / t['old']:.3f}  peak old "
            f"{peak_old / 1e6:6.1f} MB new {peak_new / 1e6:5.1f} MB  max |diff| {diff:.1e}",
            flush=True,
        )
        rows.append(row)
    return rows


SECTIONS: dict[str, Callable[[int], Any]] = {
    "pairwise": bench_pairwise,
    "cli": bench_cli,
    "outputs": bench_outputs,
    "logit-table": bench_logit_table,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sections", nargs="*", default=None)
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    chosen = args.sections or list(SECTIONS)
    report: dict[str, Any] = {"threads": os.environ.get("OMP_NUM_THREADS"), "reps": args.reps}
    report["load_before"] = load()
    print(f"load before {report['load_before']}; reps {args.reps}", flush=True)
    for name in chosen:
        report[name] = SECTIONS[name](args.reps)
    report["load_after"] = load()
    print(f"load after {report['load_after']}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "issue14.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update({f"{k}": v for k, v in report.items() if k in chosen})
    previous[f"conditions_{'_'.join(chosen)}"] = {
        k: report[k] for k in ("threads", "reps", "load_before", "load_after")
    }
    out.write_text(json.dumps(previous, indent=2))


if __name__ == "__main__":
    main()
