"""Does building the next batch overlap the model? ``logit_table`` of two trees side by side.

    git worktree add /tmp/old 4eb3f02
    .venv/bin/python bench/bench_batch_overlap.py --old-tree /tmp/old [--reps 11] [--grid 4x4]

Until commit 5e3b53d the batch thread of ``conceptlens.game.logit_table`` built each batch's
masked inputs itself and then ran the model on them, so input building never overlapped
the model although the second thread was there for that. This script runs
``run_analysis`` of the demo CNN (batch 2,048, mean baseline, sample 3, one thread, heap
reused, as ``bench_headline.py``) with this tree's ``logit_table`` and with the one of
``--old-tree`` (its ``conceptlens/game.py`` loaded under another name), alternating which
goes first, and the bare passes (``bench_engine.bare_forward_seconds``) after each pair;
the two analyses' logit tables are checked to be identical. Prints medians, each
repetition's times and ``uptime`` before and after.

Since ONNX analyses run on NumPy arrays (``conceptlens.array_game``, 2026-12-02) they no
longer go through ``conceptlens.game``: the script compares the torch formats only.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_engine
import numpy as np
from bench_and_or import uptime
from bench_headline import BATCH, SAMPLE, loads_with_shape

from conceptlens import game as new_game
from conceptlens.memory import reuse_heap
from conceptlens.models.demo import write_demo_model
from conceptlens.pipeline import AnalysisRequest, run_analysis
from conceptlens.threads import configure_process


def old_game_of(tree: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("old_game", tree / "conceptlens" / "game.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_game"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


NEW = {"logit_table": new_game.logit_table, "MaskedModelGame": new_game.MaskedModelGame}
"""This tree's functions, kept: :func:`use` replaces them in ``conceptlens.game``."""


def use(module: ModuleType) -> None:
    """``run_analysis`` runs ``module``'s game and ``logit_table`` from now on (it imports
    both from ``conceptlens.game`` when it runs a torch model)."""
    for name, function in NEW.items():
        setattr(new_game, name, function if module is new_game else getattr(module, name))


def timed_with(
    module: ModuleType, request: AnalysisRequest, tables: dict[str, np.ndarray], which: str
) -> float:
    """``run_analysis`` with ``module``'s ``logit_table``; its seconds (table kept)."""
    use(module)
    t0 = time.perf_counter()
    tables[which] = run_analysis(request).logits
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--grid", default="4x4")
    parser.add_argument(
        "--formats", nargs="+", choices=["torchscript", "safetensors"],
        default=["torchscript", "safetensors"],
    )  # fmt: skip
    args = parser.parse_args()
    configure_process(1)
    reuse_heap()
    old_game = old_game_of(args.old_tree)
    rows, cols = map(int, args.grid.split("x"))
    print("before:", uptime(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp)
        manifest: dict[str, Any] = write_demo_model(demo)
        image = demo / manifest["samples"][SAMPLE]["file"]
        for fmt in args.formats:
            model = demo / manifest["files"][fmt]
            request = AnalysisRequest(
                model=model, image=image, grid=args.grid, device="cpu", batch_size=BATCH
            )
            times: dict[str, list[float]] = {"old": [], "new": [], "bare": []}
            tables: dict[str, np.ndarray] = {}

            with loads_with_shape((1, 16, 16)):
                for which in ("old", "new"):  # warm-ups
                    timed_with(old_game if which == "old" else new_game, request, tables, which)
                bench_engine.bare_forward_seconds(model, image, rows, cols, BATCH)
                for rep in range(args.reps):
                    for which in ("old", "new") if rep % 2 == 0 else ("new", "old"):
                        module = old_game if which == "old" else new_game
                        times[which].append(timed_with(module, request, tables, which))
                    times["bare"].append(
                        bench_engine.bare_forward_seconds(model, image, rows, cols, BATCH)
                    )
            use(new_game)
            assert np.array_equal(tables["old"], tables["new"]), "the tables differ"
            med = {k: statistics.median(v) for k, v in times.items()}
            print(
                f"{fmt} {args.grid}, {args.reps} reps: old {med['old'] * 1e3:.1f} ms, "
                f"new {med['new'] * 1e3:.1f} ms, bare {med['bare'] * 1e3:.1f} ms; "
                f"old / bare {med['old'] / med['bare']:.3f}, new / bare "
                f"{med['new'] / med['bare']:.3f}, new / old {med['new'] / med['old']:.3f}",
                flush=True,
            )
            for which, values in times.items():
                print(f"  {which}: " + ", ".join(f"{v * 1e3:.0f}" for v in values))
    print("after:", uptime())


if __name__ == "__main__":
    main()
