"""Coverage of the sampled estimator's error bars at n = 12 (SCIENCE.md §4, issue 10 §4).

    python bench/bench_coverage.py [--runs 200] [--contexts 10]

On games whose exact ``I^(m)(i,j)`` is known, :func:`sample_multi_order` runs ``--runs``
times (seeds ``0 … runs−1``) at every order ``m = 0 … 10`` with ``--contexts`` samples per
pair and order on average. From the *same* draws it scores the statistics of the module
before issue 10 (``conceptlens/sampling.py`` at commit ``BEFORE``, loaded from git) and
after:

- per-pair ``I^(m)(i,j)``: the share of noisy cells (2+ samples) whose band holds the exact
  value — before ``mean ± 2·se``, after :meth:`SampledMultiOrder.interval` (Student-t,
  ``count − 1`` df);
- ``J^(m)`` per order: the share of runs whose band holds the exact ``J`` (over the same
  pairs) — before the plain ``J ± 2·SE`` (its default) and the old ``debias=True``; after
  the default :meth:`relative_strength` (now debiased) with
  :meth:`OrderStrength.interval` (t, ``groups − 1`` df), and the plain one the same way;
- the relative bias ``E[Ŝ]/S − 1`` of the strength ``E_{i,j}|I^(m)|`` per order: plain,
  the old ``debias`` (``√max(Î² − s², 0)``) and the new one (``2|Î| − F(Î, s²)``).

Games (n = 12 on a 3×4 grid): ``random_bottleneck_game(12, seed 0)`` with all 66 pairs and
with the 29 pairs within one patch; a smooth game (40 random terms of 1–4 players, all
interactions large next to the noise); the demo CNN (seed 0) on a test digit, mean
baseline, log-odds of its label — its exact table (4,096 passes) is computed once and the
sampler reads it. Writes ``bench/results/coverage.json`` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from conceptlens.aliases import BoolArray, Coalitions, FloatArray, IntArray
from conceptlens.games import UnanimityGame, random_bottleneck_game
from conceptlens.pairwise import all_pairs, local_pairs, multi_order
from conceptlens.sampling import SampledMultiOrder, sample_multi_order
from conceptlens.transforms import harsanyi

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
BEFORE = "d87428b059ef27a0a751be7a407cbfea154b9dff"
N, ROWS, COLS = 12, 3, 4
ORDERS = list(range(N - 1))


class TableGame:
    """A game read from a value table ``v [2**n]`` (bitmask-indexed)."""

    def __init__(self, v: FloatArray) -> None:
        self.v = np.asarray(v, dtype=np.float64)
        self.n_players = int(np.log2(len(self.v)))
        self.weights = 1 << np.arange(self.n_players, dtype=np.int64)

    def __call__(self, coalitions: Coalitions, /) -> FloatArray:
        return self.v[np.asarray(coalitions, dtype=np.int64) @ self.weights]


def old_module() -> ModuleType:
    """``conceptlens/sampling.py`` as it was before issue 10's change."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:conceptlens/sampling.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "sampling_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("sampling_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sampling_before"] = module
    spec.loader.exec_module(module)
    return module


def smooth_game() -> UnanimityGame:
    rng = np.random.default_rng(5)
    sets = [rng.choice(N, size=int(s), replace=False).tolist() for s in rng.integers(1, 5, 40)]
    return UnanimityGame(N, sets, rng.normal(size=40), constant=1.0)


def cnn_values() -> FloatArray:
    """Exact ``v`` of the demo CNN on the first test digit, 3×4 grid, mean baseline."""
    import torch

    from conceptlens.game import MaskedModelGame, value_table
    from conceptlens.models.demo import load_digits_16, split_digits, train_demo_model
    from conceptlens.players import PatchGrid, Players, make_baseline

    model, _ = train_demo_model(seed=0)
    _, _, test_x, test_y = split_digits(*load_digits_16())
    x = test_x[0]
    players = Players(PatchGrid(ROWS, COLS, height=16, width=16))
    game = MaskedModelGame(
        model, x, players, make_baseline(x, "mean"), device=torch.device("cpu"),
        target=int(test_y[0]),
    )  # fmt: skip
    return value_table(game, N, batch=4096)


def games() -> dict[str, tuple[Any, IntArray, FloatArray]]:
    """name → (game, pairs, exact ``I^(m)`` ``[orders, pairs]``)."""
    bottleneck = random_bottleneck_game(N, np.random.default_rng(0), cols=COLS)
    smooth = smooth_game()
    cnn = TableGame(cnn_values())
    cnn_multi = multi_order(harsanyi(cnn.v))
    local = local_pairs(ROWS, COLS, 1)
    every = all_pairs(N)
    return {
        "bottleneck, all 66 pairs": (bottleneck, every, bottleneck.exact_multi_order(every)),
        "bottleneck, 29 local pairs": (bottleneck, local, bottleneck.exact_multi_order(local)),
        "smooth (1–4-player terms)": (smooth, every, smooth.exact_multi_order(every)),
        "demo CNN, mean baseline": (cnn, every, cnn_multi[:, every[:, 0], every[:, 1]]),
    }


def as_old(result: SampledMultiOrder, old: ModuleType) -> Any:
    fields = ["n_players", "orders", "pairs", "center", "exact", "order_passes"]
    fields += ["replicate_count", "replicate_sum", "replicate_sumsq"]
    return old.SampledMultiOrder(**{f: getattr(result, f) for f in fields})


def inside(lo: FloatArray, hi: FloatArray, truth: FloatArray) -> BoolArray:
    tol = 1e-9 * (1 + np.abs(truth))
    return (lo - tol <= truth) & (truth <= hi + tol)


def measure(game: Any, pairs: IntArray, exact: FloatArray, runs: int, contexts: int) -> dict:
    old = old_module()
    truth = exact[ORDERS]
    strength = np.abs(truth).mean(axis=1)
    j_true = strength / strength.mean()
    keys = ["pair_before", "pair_after"]
    hits: dict[str, list[Any]] = {k: [] for k in keys}
    j_keys = ["j_plain_2se_before", "j_debiased_2se_before", "j_default_after", "j_plain_after"]
    j_hits: dict[str, list[BoolArray]] = {k: [] for k in j_keys}
    s_keys = ["plain", "debiased_before", "debiased_after"]
    strengths: dict[str, list[FloatArray]] = {k: [] for k in s_keys}
    j_values: dict[str, list[FloatArray]] = {k: [] for k in ("plain", "default_after")}
    for seed in range(runs):
        r = sample_multi_order(
            game, pairs=pairs, orders=ORDERS, contexts=contexts, rng=np.random.default_rng(seed)
        )
        before = as_old(r, old)
        noisy = (~r.exact[:, None]) & (r.count > 1)
        mean, se = r.mean, r.se
        hits["pair_before"].append(inside(mean - 2 * se, mean + 2 * se, truth)[noisy])
        lo, hi = r.interval(0.95)
        hits["pair_after"].append(inside(lo, hi, truth)[noisy])
        for key, j in (
            ("j_plain_2se_before", before.relative_strength()),
            ("j_debiased_2se_before", before.relative_strength(debias=True)),
        ):
            j_hits[key].append(inside(j.value - 2 * j.se, j.value + 2 * j.se, j_true))
        default, plain = r.relative_strength(), r.relative_strength(debias=False)
        j_hits["j_default_after"].append(inside(*default.interval(0.95), j_true))
        j_hits["j_plain_after"].append(inside(*plain.interval(0.95), j_true))
        j_values["plain"].append(plain.value)
        j_values["default_after"].append(default.value)
        strengths["plain"].append(r.strength().value)
        strengths["debiased_before"].append(before.strength(debias=True).value)
        strengths["debiased_after"].append(r.strength(debias=True).value)
    pair = {k: float(np.mean(np.concatenate(v))) for k, v in hits.items()}
    cells = int(sum(len(v) for v in hits["pair_after"]))
    return {
        "pairs": len(pairs),
        "noisy_cells": cells,
        "pair_coverage": pair,
        "j_exact": j_true.tolist(),
        "j_coverage": {k: np.mean(v, axis=0).tolist() for k, v in j_hits.items()},
        "j_mean": {k: np.mean(v, axis=0).tolist() for k, v in j_values.items()},
        "strength_exact": strength.tolist(),
        "strength_relative_bias": {
            k: (np.mean(v, axis=0) / strength - 1).tolist() for k, v in strengths.items()
        },
    }


def load() -> str:
    return os.popen("uptime").read().strip()


def fmt(values: list[float], pct: bool = True) -> str:
    return " / ".join(f"{100 * v:.0f}" if pct else f"{100 * v:+.0f}" for v in values)


def report(results: dict[str, Any]) -> None:
    ends = [0, N // 2 - 1, N - 2]
    print(f"\nruns {results['runs']}, contexts {results['contexts']}, orders 0…{N - 2}")
    print("\n| game | pairs: ±2·se | pairs: t interval |")
    print("|---|---|---|")
    for name, g in results["games"].items():
        c = g["pair_coverage"]
        print(f"| {name} | {100 * c['pair_before']:.1f} % | {100 * c['pair_after']:.1f} % |")
    print(f"\n`J` coverage (%) at orders m = {ends} (0, middle, n−2); min over all orders:\n")
    print("| game | plain ±2 SE (before) | old debias ±2 SE | default, t (after) | plain, t |")
    print("|---|---|---|---|---|")
    for name, g in results["games"].items():
        cells = []
        for key in ("j_plain_2se_before", "j_debiased_2se_before", "j_default_after"):
            v = g["j_coverage"][key]
            cells.append(f"{fmt([v[m] for m in ends])}; min {100 * min(v):.0f}")
        v = g["j_coverage"]["j_plain_after"]
        cells.append(f"{fmt([v[m] for m in ends])}; min {100 * min(v):.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nstrength bias (%), orders 1…9:\n")
    for name, g in results["games"].items():
        print(name)
        for k, v in g["strength_relative_bias"].items():
            print(f"  {k:16s} " + fmt(v[1:-1], pct=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--contexts", type=int, default=10)
    args = parser.parse_args()
    started = time.time()
    out: dict[str, Any] = {
        "runs": args.runs,
        "seeds": f"0…{args.runs - 1}",
        "contexts": args.contexts,
        "n": N,
        "orders": ORDERS,
        "before": BEFORE,
        "load_before": load(),
        "games": {},
    }
    for name, (game, pairs, exact) in games().items():
        out["games"][name] = measure(game, pairs, exact, args.runs, args.contexts)
    out["load_after"] = load()
    out["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coverage.json").write_text(json.dumps(out, indent=1) + "\n")
    report(out)


if __name__ == "__main__":
    main()
