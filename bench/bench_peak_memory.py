"""Peak memory of an exact analysis at n = 20–24 against issue 14's bound.

    .venv/bin/python bench/bench_peak_memory.py [--sizes 20 22 24] [--synthetic] [--json PATH]

Issue 14: "peak memory of an n = 24 analysis ≤ the logit table + 2× the value table". Each
size runs in a fresh child process (one thread, glibc's heap reused, as the ``conceptlens``
command runs), so one measurement's heap cannot hide in the next one's:

1. the child imports everything and runs a warm-up analysis at n = 12, so that libraries,
   the model session and the allocator's arenas are in place;
2. it resets the kernel's high-water mark of its resident memory (``/proc/self/clear_refs``,
   ``5``), reads ``VmRSS``;
3. it runs ``run_analysis`` (the demo CNN's ONNX file, 2^n forward passes, every derived
   result) and reads ``VmHWM``: **the analysis's peak** is ``VmHWM − VmRSS`` before, which
   counts everything the analysis allocated, NumPy, onnxruntime and torch alike;
4. it resets the mark again and writes the result (``InteractionResult.save``, the npz the
   CLI writes): **the save's peak** above the resident memory before it.

The bound is the logit table (``[2^n, 10]`` float32) plus two value tables (``[2^n]``
float64), from the shapes. ``--synthetic`` skips the forward passes (a random logit table
of the same shape, then ``interactions_from_logits``): a minute less at n = 24, same
post-processing; the table is made before the mark, so there the bound is the two value
tables alone. Prints ``uptime`` before and after; writes ``results/peak_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_and_or import uptime
from bench_headline import grid_of

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "results" / "peak_memory.json"
MB = 1 << 20

CHILD = r"""
import json, sys, time
from pathlib import Path

import numpy as np

from conceptlens.analysis import interactions_from_logits
from conceptlens.memory import reuse_heap
from conceptlens.pipeline import AnalysisRequest, run_analysis
from conceptlens.threads import configure_process

configure_process(1)
reuse_heap()
n, model, image, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[5]
synthetic = sys.argv[4] == "1"
grids = {n: sys.argv[6], 12: sys.argv[7]}  # the parent's grid_of


def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset():
    Path("/proc/self/clear_refs").write_text("5")
    return status("VmRSS")


def logits_of(n):
    rng = np.random.default_rng(n)
    table = np.empty((1 << n, 10), dtype=np.float32)
    for start in range(0, 1 << n, 1 << 16):  # no float64 table on the way
        stop = min(start + (1 << 16), 1 << n)
        table[start:stop] = rng.normal(size=(stop - start, 10))
    return table


def analyse(n, logits=None):
    if logits is not None:
        return interactions_from_logits(logits)
    request = AnalysisRequest(model=Path(model), image=Path(image), grid=grids[n], device="cpu")
    return run_analysis(request)


analyse(12, logits_of(12) if synthetic else None).save(Path(out) / "warm.npz")
logits = logits_of(n) if synthetic else None  # made before the mark: not the analysis's
before = reset()
t0 = time.perf_counter()
result = analyse(n, logits)
seconds = time.perf_counter() - t0
analysis_peak = status("VmHWM") - before
before_save = reset()
result.save(Path(out) / "result.npz")
save_peak = status("VmHWM") - before_save
print(json.dumps({
    "analysis_peak": analysis_peak,
    "save_peak": save_peak,
    "rss_before": before,
    "seconds": seconds,
    "logits_bytes": result.logits.nbytes,
    "logits_counted": not synthetic,
    "value_bytes": result.v.nbytes,
    "residual": result.residual,
}))
"""


def measure(n: int, model: Path, image: Path, synthetic: bool) -> dict[str, Any]:
    grids = ["{}x{}".format(*grid_of(size)) for size in (n, 12)]
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(n),
                str(model),
                str(image),
                str(int(synthetic)),
                out,
                *grids,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    # the synthetic table is made before the mark, so its bound leaves the logit table out
    bound = row["logits_bytes"] * row["logits_counted"] + 2 * row["value_bytes"]
    row.update(
        n=n,
        synthetic=synthetic,
        bound=bound,
        analysis_over_bound=row["analysis_peak"] / bound,
        save_over_bound=row["save_peak"] / bound,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 22, 24])
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    from conceptlens.models.demo import write_demo_model

    print(uptime(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp)
        write_demo_model(demo)
        manifest = json.loads((demo / "demo_model.json").read_text())
        model = demo / manifest["files"]["onnx"]
        image = demo / manifest["samples"][3]["file"]
        for n in args.sizes:
            row = measure(n, model, image, args.synthetic)
            rows.append(row)
            print(
                f"n={n}: analysis peak {row['analysis_peak'] / MB:,.0f} MiB "
                f"(bound {row['bound'] / MB:,.0f} MiB: logits "
                f"{row['logits_bytes'] * row['logits_counted'] / MB:,.0f} "
                f"+ 2 × {row['value_bytes'] / MB:,.0f}) = {row['analysis_over_bound']:.2f}× the "
                f"bound; save peak {row['save_peak'] / MB:,.0f} MiB; {row['seconds']:.1f} s",
                flush=True,
            )
    after = uptime()
    print(after, flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"uptime_after": after, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
