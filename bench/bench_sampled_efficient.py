"""Pass efficiency of the sampled ``J^(m)`` at n = 256: paper, hybrid and planned (issue 14 §8).

    OMP_NUM_THREADS=1 python bench/bench_sampled_efficient.py [--reps 16] [--seed 0]
        [--game-seed 0] [--json bench/results/sampled_efficient.json]

15–20 s per repetition on one thread of the 2-core machine under load (the default 16
repetitions: 4–5.5 minutes; the figures in bench/README.md used 24–32, 6.5–8 minutes).

Same game and protocol as ``bench_sampled_j.py``: one :func:`random_bottleneck_game` on a
16×16 grid, exact ``J^(m)`` over the 2,610 local pairs (within 2 patches) in closed form,
the paper's 13 orders, RMSE over repetitions and orders. Side by side in one run:

- ``paper``: 200 random local pairs × 13 orders × 100 contexts × 4 passes (1.04 M);
- ``hybrid``: as ``bench_sampled_j.py`` runs its 0.3× setting (exact orders and
  ``r ≤ 0.2`` on all pairs with 8 contexts, ``r ≥ 0.3`` on 400 random pairs with 40);
- ``planned``: :func:`conceptlens.sampled_efficient.efficient_j` (exact end orders on
  all pairs, a pilot, per-order player fraction and contexts, tiled contexts) at several
  budgets, planned for the debiased target (and once for the plain one).

Every estimator is reported plain and debiased (``2|Î| − F(Î, s²)``, the library's
``debias=True``), each with a 90% bootstrap interval over repetitions. The like-for-like
ratio (plain with plain, debiased with debiased) is the paper's passes over the passes at
which the planned estimator's RMSE equals the paper's, interpolated log-log between the
planned budgets (bootstrap interval over repetitions; ``>`` or ``<`` where outside the
budgets). Prints a Markdown table and writes ``bench/results/sampled_efficient.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from bench_sampled_j import draw_pairs, exact_j

from conceptlens.aliases import FloatArray, IntArray
from conceptlens.games import UnanimityGame, random_bottleneck_game
from conceptlens.pairwise import local_pairs
from conceptlens.sampled_efficient import Target, efficient_j
from conceptlens.sampling import (
    OrderStrength,
    combine_strengths,
    paper_estimator,
    ratio_orders,
    sample_multi_order,
    sampled_relative_strength,
)

RESULTS = Path(__file__).parent / "results"
ROWS = COLS = 16
PAPER_PASSES = 200 * 13 * 100 * 4
BUDGETS = (0.05, 0.1, 0.2, 0.35)  # planned estimator, × paper passes
QUIET = 3
BOOT = 2000


@dataclass(frozen=True)
class Setup:
    game: UnanimityGame
    population: IntArray
    orders: list[int]
    truth: FloatArray


@dataclass
class Outcome:
    name: str
    passes: float
    seconds: float
    errors: FloatArray  # [reps, K] plain J − exact
    errors_debiased: FloatArray
    summary: dict[str, object] = field(default_factory=dict)


RunFn = Callable[[Setup, np.random.Generator, int], tuple[FloatArray, FloatArray, int]]


def run_paper(
    setup: Setup, rng: np.random.Generator, rep: int
) -> tuple[FloatArray, FloatArray, int]:
    pairs = draw_pairs(setup.population, 200, 0, rep)
    out = paper_estimator(
        setup.game, pairs=pairs, orders=setup.orders, contexts=100, rng=rng, batch_size=16384
    )
    plain = out.relative_strength(debias=False).value
    return plain, out.relative_strength(debias=True).value, out.passes


def run_hybrid(quiet: int, contexts: int) -> RunFn:
    def run(setup: Setup, rng: np.random.Generator, rep: int) -> tuple[FloatArray, FloatArray, int]:
        orders, pairs = setup.orders, draw_pairs(setup.population, 400, 0, rep)
        parts = [
            (setup.population, [orders[0], orders[-1]], 1),
            (setup.population, orders[1 : 1 + QUIET], quiet),
            (pairs, orders[1 + QUIET : -1], contexts),
        ]
        results = [
            sample_multi_order(setup.game, pairs=p, orders=o, contexts=k, rng=rng)
            for p, o, k in parts
        ]
        values = []
        for debias in (False, True):
            s = combine_strengths(*(r.strength(debias=debias) for r in results))
            values.append(_relative(s))
        return values[0], values[1], sum(r.passes for r in results)

    return run


def _relative(strength: OrderStrength) -> FloatArray:
    return sampled_relative_strength(strength.value, strength.se, strength.orders).value


def run_planned(budget: float, target: Target, *, tiled: bool = True) -> RunFn:
    def run(setup: Setup, rng: np.random.Generator, rep: int) -> tuple[FloatArray, FloatArray, int]:
        out = efficient_j(
            setup.game,
            pairs=setup.population,
            orders=setup.orders,
            budget=budget * PAPER_PASSES,
            rng=rng,
            target=target,
            tiled=tiled,
        )
        plain = out.relative_strength(debias=False).value
        return plain, out.relative_strength(debias=True).value, out.passes

    return run


def estimators() -> list[tuple[str, RunFn]]:
    out: list[tuple[str, RunFn]] = [("paper", run_paper)]
    out += [("hybrid 8 → 40", run_hybrid(8, 40))]
    out += [(f"planned {b:.2f}×", run_planned(b, "debiased")) for b in BUDGETS]
    out += [("ablation: planned 0.20×, untiled", run_planned(0.2, "debiased", tiled=False))]
    return out


def evaluate(setup: Setup, name: str, run: RunFn, reps: int, seed: int, index: int) -> Outcome:
    start = time.perf_counter()
    plain, debiased, passes = [], [], []
    for rep in range(reps):
        p, d, n = run(setup, np.random.default_rng([seed, rep, index, 14]), rep)
        plain.append(p - setup.truth)
        debiased.append(d - setup.truth)
        passes.append(n)
    seconds = (time.perf_counter() - start) / reps
    return Outcome(name, float(np.mean(passes)), seconds, np.array(plain), np.array(debiased))


def rmse(errors: FloatArray) -> float:
    return float(np.sqrt(np.mean(np.square(errors))))


def boot_rmse(errors: FloatArray, rng: np.random.Generator) -> FloatArray:
    """RMSE of ``BOOT`` bootstrap resamples of the repetitions."""
    reps = len(errors)
    picks = rng.integers(0, reps, size=(BOOT, reps))
    return np.sqrt(np.mean(np.square(errors[picks]), axis=(1, 2)))


def equal_accuracy_ratio(
    paper_rmse: float, planned: list[tuple[float, float]]
) -> tuple[float, str]:
    """Paper passes over the passes where the planned RMSE equals ``paper_rmse``, by
    log-log interpolation between budgets (sorted by passes); ``(ratio, "=")`` inside,
    ``(bound, ">")`` if even the cheapest budget is as accurate, ``(bound, "<")`` if none is.
    """
    points = sorted(planned)
    if points[0][1] <= paper_rmse:
        return PAPER_PASSES / points[0][0], ">"
    for (p0, e0), (p1, e1) in itertools.pairwise(points):
        if e1 <= paper_rmse < e0:
            t = (np.log(paper_rmse) - np.log(e0)) / (np.log(e1) - np.log(e0))
            return PAPER_PASSES / float(np.exp(np.log(p0) + t * (np.log(p1) - np.log(p0)))), "="
    return PAPER_PASSES / points[-1][0], "<"


def summarise(outcomes: list[Outcome], seed: int) -> dict[str, object]:
    rng = np.random.default_rng([seed, 99])
    boots: dict[tuple[str, bool], FloatArray] = {}
    for o in outcomes:
        for debias, errors in ((False, o.errors), (True, o.errors_debiased)):
            boots[o.name, debias] = boot_rmse(errors, rng)
            lo, hi = np.quantile(boots[o.name, debias], [0.05, 0.95])
            key = "debiased" if debias else "plain"
            o.summary[key] = {"rmse": rmse(errors), "lo90": float(lo), "hi90": float(hi)}
            o.summary[f"bias_{key}"] = errors.mean(axis=0).round(4).tolist()
            o.summary[f"sd_{key}"] = errors.std(axis=0, ddof=1).round(4).tolist()
    ratios: dict[str, object] = {}
    paper = outcomes[0]
    planned = [o for o in outcomes if o.name.startswith("planned")]
    for debias, key in ((False, "plain"), (True, "debiased")):
        point = equal_accuracy_ratio(
            rmse(paper.errors_debiased if debias else paper.errors),
            [(o.passes, rmse(o.errors_debiased if debias else o.errors)) for o in planned],
        )
        draws = [
            equal_accuracy_ratio(
                float(boots[paper.name, debias][b]),
                [(o.passes, float(boots[o.name, debias][b])) for o in planned],
            )[0]
            for b in range(BOOT)
        ]
        lo, hi = np.quantile(draws, [0.05, 0.95])
        ratios[f"planned {key} vs paper {key}"] = {
            "ratio": point[0],
            "bound": point[1],
            "lo90": float(lo),
            "hi90": float(hi),
        }
    return ratios


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| estimator | passes | × paper | RMSE plain [90% CI] | RMSE debiased [90% CI] | s/rep |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        cells = []
        for key in ("plain", "debiased"):
            s = o.summary[key]
            assert isinstance(s, dict)
            cells.append(f"{s['rmse']:.3f} [{s['lo90']:.3f}, {s['hi90']:.3f}]")
        lines.append(
            f"| {o.name} | {o.passes:,.0f} | {o.passes / PAPER_PASSES:.3f} "
            f"| {cells[0]} | {cells[1]} | {o.seconds:.1f} |"
        )
    return "\n".join(lines)


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=16, help="repetitions per estimator")
    parser.add_argument("--seed", type=int, default=0, help="estimator seed")
    parser.add_argument("--game-seed", type=int, default=0, help="seed of the game")
    parser.add_argument(
        "--json", type=Path, default=RESULTS / "sampled_efficient.json", help="results file"
    )
    args = parser.parse_args(argv)
    n = ROWS * COLS
    game = random_bottleneck_game(n, np.random.default_rng(args.game_seed), cols=COLS)
    population = local_pairs(ROWS, COLS, 2)
    orders = ratio_orders(n)
    setup = Setup(game, population, orders, exact_j(game, population, orders))
    load_before = os.getloadavg()
    started = time.perf_counter()
    outcomes = []
    for index, (name, run) in enumerate(estimators()):
        outcomes.append(evaluate(setup, name, run, args.reps, args.seed, index))
        print(f"  {name}: {outcomes[-1].seconds:.1f} s/rep", flush=True)
    ratios = summarise(outcomes, args.seed)
    load_after = os.getloadavg()
    print(table(outcomes))
    print("\nLike-for-like ratio (paper passes / planned passes at the paper's RMSE):")
    for name, r in ratios.items():
        assert isinstance(r, dict)
        print(f"- {name}: {r['bound']} {r['ratio']:.1f}× [90% CI {r['lo90']:.1f}, {r['hi90']:.1f}]")
    print(f"loadavg before {load_before}, after {load_after}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "reps": args.reps,
        "seed": args.seed,
        "game_seed": args.game_seed,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "seconds": time.perf_counter() - started,
        "orders": orders,
        "exact_j": setup.truth.round(5).tolist(),
        "paper_passes": PAPER_PASSES,
        "outcomes": [
            {"name": o.name, "passes": o.passes, "seconds_per_rep": o.seconds, **o.summary}
            for o in outcomes
        ],
        "equal_accuracy_ratio": ratios,
    }
    args.json.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
