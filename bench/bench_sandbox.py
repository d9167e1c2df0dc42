"""What the model sandbox costs: a logit table through the sandbox process against the same
table computed in this process, and against the bare forward passes (issue: safe service).

    python bench/bench_sandbox.py [--repeats 5] [--batch 2048]

For the demo CNN as ONNX, TorchScript and safetensors at n = 12 and 16 (one image, mean
baseline), three runs are interleaved ``repeats`` times and their medians compared:

* **bare** — only the model's forward passes over the pre-built masked inputs;
* **in-process** — ``logit_table`` of the masked-model game here (the path before the sandbox);
* **sandbox** — the same rows from a warm sandbox (model loaded; the first call, which
  starts the process and loads the model, is reported apart as ``cold``).

Prints a Markdown table with the machine load (``/proc/loadavg``) before and after, and
writes ``bench/results/sandbox.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptlens.game import MaskedModelGame, logit_table, mask_range_coalitions
from conceptlens.images import load_image
from conceptlens.models.demo import write_demo_model
from conceptlens.models.loaders import LoadedModel, load_model
from conceptlens.players import PatchGrid, Players, make_baseline, masked_inputs
from worker.sandbox.parent import Limits, ModelRef, Sandbox

RESULTS = Path(__file__).parent / "results"
GRIDS = ((3, 4), (4, 4))
CPU = torch.device("cpu")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Case:
    """One model and grid: the three ways to get its logit table."""

    model: LoadedModel
    ref: ModelRef
    x: torch.Tensor
    base: torch.Tensor
    grid: tuple[int, int]
    batch: int

    @property
    def players(self) -> Players:
        return Players(PatchGrid(*self.grid, 16, 16))

    def bare(self) -> float:
        n, players, batches = self.players.n, self.players, []
        for start in range(0, 1 << n, self.batch):
            coal = mask_range_coalitions(start, min(start + self.batch, 1 << n), n, CPU)
            batches.append(masked_inputs(self.x, self.base, players.pixel_presence(coal)))
        t0 = time.perf_counter()
        for inputs in batches:
            self.model.predict(inputs.contiguous())
        return time.perf_counter() - t0

    def local_table(self) -> np.ndarray:
        game = MaskedModelGame(
            self.model.predict, self.x, self.players, self.base, batch_size=self.batch
        )
        return logit_table(game)

    def sandbox_table(self, box: Sandbox) -> np.ndarray:
        table, _ = box.logits(
            self.ref, self.x.numpy(), self.base.numpy(), grid=self.grid, players=None,
            others_present=True, start=0, stop=1 << self.players.n, batch_size=self.batch,
        )  # fmt: skip
        return table


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(demo: Path, repeats: int, batch: int) -> list[dict[str, Any]]:
    manifest = json.loads((demo / "demo_model.json").read_text())
    image = demo / manifest["samples"][3]["file"]
    x = load_image(image, channels=1, size=(16, 16))
    rows = []
    box = Sandbox(Limits())
    try:
        for fmt in ("onnx", "torchscript", "safetensors"):
            path = demo / manifest["files"][fmt]
            ref = ModelRef(
                blob_key=fmt, read=path.read_bytes, input_shape=(1, 16, 16), architecture=None,
                device="cpu", max_bytes=1 << 28, max_input_values=1 << 20,
            )  # fmt: skip
            model = load_model(path, input_shape=(1, 16, 16))
            for grid in GRIDS:
                case = Case(model, ref, x, make_baseline(x, "mean"), grid, batch)
                box.kill()
                cold = timed(lambda: case.sandbox_table(box))  # noqa: B023  (starts, loads)
                times: dict[str, list[float]] = {"bare": [], "local": [], "sandbox": []}
                for _ in range(repeats):
                    times["bare"].append(case.bare())
                    times["local"].append(timed(case.local_table))
                    times["sandbox"].append(timed(lambda: case.sandbox_table(box)))  # noqa: B023
                med = {k: statistics.median(v) for k, v in times.items()}
                same = np.array_equal(case.sandbox_table(box), case.local_table())
                rows.append({
                    "format": fmt, "n": case.players.n, "repeats": repeats, "cold_s": cold,
                    **{f"{k}_s": v for k, v in med.items()},
                    "sandbox_over_bare": med["sandbox"] / med["bare"],
                    "sandbox_over_local": med["sandbox"] / med["local"],
                    "identical": bool(same),
                })  # fmt: skip
                print(rows[-1], flush=True)
    finally:
        box.kill()
    return rows


def markdown(rows: list[dict[str, Any]], before: str, after: str, repeats: int) -> str:
    lines = [
        f"load (1, 5, 15 min) before {before}, after {after}; "
        f"medians of {repeats} interleaved runs",
        "",
        "| model | n | bare (s) | in-process (s) | sandbox (s) | sandbox / bare | "
        "sandbox / in-process | cold start (s) | identical |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['format']} | {r['n']} | {r['bare_s']:.3f} | {r['local_s']:.3f} | "
            f"{r['sandbox_s']:.3f} | **{r['sandbox_over_bare']:.2f}** | "
            f"{r['sandbox_over_local']:.2f} | {r['cold_s']:.2f} | {r['identical']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(1)  # here, and in the sandbox through its kept environment:
    os.environ["OMP_NUM_THREADS"] = "1"  # the same threads on both sides
    before = load()
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_model(tmp, n_samples=4)
        rows = bench(Path(tmp), args.repeats, args.batch)
    after = load()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sandbox.json").write_text(
        json.dumps({"load_before": before, "load_after": after, "rows": rows}, indent=2)
    )
    print(markdown(rows, before, after, args.repeats))


if __name__ == "__main__":
    main()
