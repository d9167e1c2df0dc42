"""A whole ``conceptlens analyze`` process against a whole bare process (issue 14, goal 1).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_cli_process.py [--sizes 12 16] [--reps 5]
                                              [--formats onnx torchscript safetensors]
                                              # ~8 min on the 2-core machine; writes
                                              # results/cli_process.json

Issue 14 asks for the end-to-end analysis "as a whole ``conceptlens analyze`` process"
against the bare forward passes. Three kinds of process run, interleaved repetition by
repetition, each timed from ``subprocess.run`` to its exit, for the demo CNN as ONNX,
TorchScript and safetensors at each ``--sizes`` (a near-square grid, batch 2,048, mean
baseline, sample 3), all with one thread (``OMP_NUM_THREADS=1``, set for the children
whatever this process has):

- **analyze**: the ``conceptlens`` console script (``cli.run``: leaves without the
  interpreter's teardown), ``analyze ... --quiet --out``;
- **analyze, normal exit**: the same command through ``cli.main`` in ``python -c``, which
  finalises the interpreter as any script does (the console script before 2026-12-02);
- **bare process**: a plain script that imports only the model's runtime (onnxruntime and
  NumPy for ONNX, torch for the others), loads the model, reads the 2^n masked inputs from
  a ``.npy`` file built beforehand (the same batches ``analyze`` builds), runs them and
  exits normally. It applies glibc's heap policy of the ``conceptlens`` command
  (``conceptlens.memory.reuse_heap``) so that both run the passes alike, and reports its
  own passes' time (**bare passes**), measured inside it.

Prints the medians and ratios with ``uptime`` before and after; writes
``bench/results/cli_process.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_and_or import uptime
from bench_headline import BATCH, FORMATS, SAMPLE, grid_of

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "results" / "cli_process.json"
SHAPE = (1, 16, 16)

BARE = textwrap.dedent(
    """
    import sys, time
    fmt, model_path, inputs_path, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    from conceptlens.memory import reuse_heap
    reuse_heap()
    import numpy as np
    if fmt == "onnx":
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        run = lambda x: session.run(None, {name: x})[0]
    else:
        import torch
        torch.set_num_threads(1)
        if fmt == "torchscript":
            model = torch.jit.load(model_path).eval()
        else:
            from safetensors.torch import load_file
            from conceptlens.models.architectures import DigitCNN
            model = DigitCNN()
            model.load_state_dict(load_file(model_path))
            model.eval()
        def run(x):
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()
    inputs = np.load(inputs_path)
    t0 = time.perf_counter()
    out = [run(inputs[i : i + batch]) for i in range(0, len(inputs), batch)]
    print(time.perf_counter() - t0)
    """
)


def masked_inputs_file(image: Path, n: int, folder: Path) -> Path:
    """The 2^n masked inputs ``analyze`` builds (mean baseline, batch order), as ``.npy``."""
    import torch

    from conceptlens.game import mask_range_coalitions
    from conceptlens.images import load_image
    from conceptlens.players import PatchGrid, Players, make_baseline, masked_inputs

    rows, cols = grid_of(n)
    x = load_image(image, channels=SHAPE[0], size=SHAPE[1:])
    players = Players(PatchGrid(rows, cols, *SHAPE[1:]))
    base = make_baseline(x, "mean")
    coal = mask_range_coalitions(0, 1 << n, n, torch.device("cpu"))
    path = folder / f"inputs_{n}.npy"
    np.save(path, masked_inputs(x, base, players.pixel_presence(coal)).contiguous().numpy())
    return path


def analyze_args(fmt: str, model: Path, image: Path, n: int, out: Path) -> list[str]:
    rows, cols = grid_of(n)
    args = ["analyze", "--model", str(model), "--image", str(image), "--grid", f"{rows}x{cols}"]
    args += ["--batch-size", str(BATCH), "--device", "cpu", "--quiet", "--out", str(out)]
    if fmt == "torchscript":
        args += ["--input-size", f"{SHAPE[1]}x{SHAPE[2]}", "--channels", str(SHAPE[0])]
    return args


def timed_process(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[12, 16])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    opts = parser.parse_args()

    script = Path(sys.executable).parent / "conceptlens"
    console = [str(script)] if script.exists() else [sys.executable, "-m", "conceptlens.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    started = uptime()
    print(started, flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        from conceptlens.models.demo import write_demo_model

        write_demo_model(folder / "demo")
        manifest = json.loads((folder / "demo" / "demo_model.json").read_text())
        image = folder / "demo" / manifest["samples"][SAMPLE]["file"]
        bare_script = folder / "bare.py"
        bare_script.write_text(BARE)
        for n in opts.sizes:
            inputs = masked_inputs_file(image, n, folder)
            for fmt in opts.formats:
                model = folder / "demo" / manifest["files"][fmt]
                args = analyze_args(fmt, model, image, n, folder / "out.npz")
                normal = (
                    "import sys; from conceptlens.cli import main; sys.exit(main(sys.argv[1:]))"
                )
                commands = {
                    "analyze": [*console, *args],
                    "analyze_normal_exit": [sys.executable, "-c", normal, *args],
                    "bare_process": [
                        sys.executable, str(bare_script), fmt, str(model), str(inputs), str(BATCH)
                    ],
                }  # fmt: skip
                times: dict[str, list[float]] = {k: [] for k in commands}
                passes: list[float] = []
                for command in commands.values():  # one warm-up each (page cache)
                    timed_process(command, env)
                for _ in range(opts.reps):
                    for kind, command in commands.items():
                        seconds, out = timed_process(command, env)
                        times[kind].append(seconds)
                        if kind == "bare_process":
                            passes.append(float(out.strip().splitlines()[-1]))
                med = {k: statistics.median(v) for k, v in times.items()}
                bare_passes = statistics.median(passes)
                row = {
                    "format": fmt,
                    "n": n,
                    "reps": opts.reps,
                    **{f"{k}_s": v for k, v in med.items()},
                    "bare_passes_s": bare_passes,
                    "samples_s": {**times, "bare_passes": passes},
                    "analyze_over_bare_process": med["analyze"] / med["bare_process"],
                    "analyze_over_bare_passes": med["analyze"] / bare_passes,
                    "normal_exit_over_bare_process": med["analyze_normal_exit"]
                    / med["bare_process"],
                }
                rows.append(row)
                print(
                    f"{fmt:12s} n={n}: analyze {med['analyze']:.2f} s, normal exit "
                    f"{med['analyze_normal_exit']:.2f} s, bare process {med['bare_process']:.2f} s "
                    f"(passes {bare_passes:.3f} s); analyze / bare process "
                    f"{row['analyze_over_bare_process']:.2f}",
                    flush=True,
                )
            (folder / f"inputs_{n}.npy").unlink()
    finished = uptime()
    print(finished, flush=True)
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    summary = {"uptime_before": started, "uptime_after": finished, "console": console[0]}
    opts.json.write_text(json.dumps({**summary, "rows": rows}, indent=1))
    print(f"wrote {opts.json}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
