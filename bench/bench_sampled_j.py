"""Accuracy of the sampled order-strength curve ``J^(m)`` at n = 256 (SCIENCE.md §4).

    python bench/bench_sampled_j.py [--reps 8] [--seed 0] [--game-seed 0]

Side by side in one run, on one :func:`random_bottleneck_game` (16×16 grid) whose exact
``J^(m)`` over the local-pair population (all pairs within 2 patches, 2,610 of them) is
known in closed form, at the paper's 13 orders:

- the paper's estimator at its per-image budget: 200 random local pairs × 13 orders ×
  100 contexts × 4 passes = 1.04 M passes;
- the pair-sampling floor: the exact ``I^(m)`` of the same 200 pairs (0 passes) — the
  error the paper's estimator would keep with infinitely many contexts;
- the shared-pass estimator (:func:`sample_multi_order`) on all local pairs and on the
  paper's 200 random pairs, at several ``contexts`` (mean samples per pair and order);
- a *hybrid* design built from it with :func:`combine_strengths`: the exact orders
  ``0`` and ``n−2`` (one context each) and the quiet low orders ``r ≤ 0.2`` on all
  pairs, where pair sampling dominates the error, and the noisy orders ``r ≥ 0.3`` on
  400 random pairs with more contexts, where context noise dominates. (The split is a
  design choice: on this game the per-sample noise of ``Δv`` is below 1.2× the mean
  ``|I|`` up to ``r = 0.2`` and 2–15× above; a pilot run would choose it elsewhere.)

Each configuration is repeated ``--reps`` times with independent seeds (and, for pair
subsets, independently drawn pairs). RMSE is over repetitions and the 13 orders of the
estimated ``J`` against the exact one, without and with ``debias=True``; *bias RMS* is the
RMS over orders of the mean error, the part that averaging over many images would not
remove. ``SE/SD`` compares the reported standard error of ``J`` (jackknife, or delta
method for the hybrid; conditional on the pairs) with the spread over repetitions, which
for pair subsets also holds pair sampling. Finally the cheapest of our settings that is
as accurate as the paper's estimator is reported, by three criteria. Prints a Markdown
table and writes ``bench/results/sampled_j.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from conceptlens.aliases import FloatArray, IntArray
from conceptlens.games import UnanimityGame, random_bottleneck_game
from conceptlens.pairwise import local_pairs
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
PAPER_PAIRS, PAPER_CONTEXTS = 200, 100
QUIET = 3  # hybrid: the sampled orders r = 0.05, 0.1, 0.2 run on all pairs


@dataclass(frozen=True)
class Config:
    """One estimator setting: ``pairs`` random local pairs (``None``: all 2,610).

    ``hybrid``: the exact orders and the ``QUIET`` lowest sampled orders on all pairs
    (``quiet_contexts`` there), the other orders on ``pairs`` random pairs (``contexts``).
    """

    estimator: str  # "paper", "floor", "shared" or "hybrid"
    pairs: int | None
    contexts: int
    quiet_contexts: int | None = None

    @property
    def label(self) -> str:
        chosen = "all 2610" if self.pairs is None else f"{self.pairs} random"
        return chosen if self.quiet_contexts is None else f"all → {chosen}"

    @property
    def contexts_label(self) -> str:
        if self.quiet_contexts is None:
            return str(self.contexts)
        return f"{self.quiet_contexts} → {self.contexts}"


@dataclass
class Outcome:
    config: Config
    passes: float
    seconds: float
    rmse: float
    rmse_debiased: float
    bias_rms_debiased: float
    se_over_sd: float
    bias: list[float]
    bias_debiased: list[float]
    sd_debiased: list[float]


@dataclass
class Run:
    """One repetition's plain and debiased ``J`` (with SE) and its forward passes."""

    plain: FloatArray
    debiased: FloatArray
    se: FloatArray
    passes: int


@dataclass(frozen=True)
class Setup:
    game: UnanimityGame
    population: IntArray
    orders: list[int]
    truth: FloatArray


def configs() -> list[Config]:
    shared = [Config("shared", None, k) for k in (5, 10, 20)]
    shared += [Config("shared", PAPER_PAIRS, k) for k in (50, 100)]
    hybrid = [Config("hybrid", 400, k, quiet_contexts=q) for q, k in ((4, 20), (8, 40), (12, 80))]
    paper = [Config("paper", PAPER_PAIRS, PAPER_CONTEXTS), Config("floor", PAPER_PAIRS, 0)]
    return paper + shared + hybrid


def exact_j(game: UnanimityGame, pairs: IntArray, orders: list[int]) -> FloatArray:
    strength = np.abs(game.exact_multi_order(pairs)[orders]).mean(axis=1)
    return strength / strength.mean()


def draw_pairs(population: IntArray, count: int | None, seed: int, rep: int) -> IntArray:
    """Random pairs depending only on ``(seed, rep, count)``: the paper's estimator, the
    floor and the shared-pass estimator on 200 pairs see the same pairs."""
    if count is None:
        return population
    chooser = np.random.default_rng([seed, rep, count])
    return population[chooser.choice(len(population), size=count, replace=False)]


def run_once(setup: Setup, config: Config, rng: np.random.Generator, pairs: IntArray) -> Run:
    orders = setup.orders
    if config.estimator == "floor":
        j = exact_j(setup.game, pairs, orders)
        return Run(j, j, np.zeros(len(orders)), 0)
    if config.estimator == "hybrid":
        return run_hybrid(setup, config, rng, pairs)
    estimate = paper_estimator if config.estimator == "paper" else sample_multi_order
    result = estimate(setup.game, pairs=pairs, orders=orders, contexts=config.contexts, rng=rng)
    relative = result.relative_strength(debias=True)
    return Run(
        result.relative_strength(debias=False).value, relative.value, relative.se, result.passes
    )


def run_hybrid(setup: Setup, config: Config, rng: np.random.Generator, pairs: IntArray) -> Run:
    """Exact and quiet orders on all pairs, the rest on ``pairs``; strengths combined."""
    orders, quiet = setup.orders, config.quiet_contexts or 1
    parts = [
        (setup.population, [orders[0], orders[-1]], 1),
        (setup.population, orders[1 : 1 + QUIET], quiet),
        (pairs, orders[1 + QUIET : -1], config.contexts),
    ]
    results = [
        sample_multi_order(setup.game, pairs=p, orders=o, contexts=k, rng=rng) for p, o, k in parts
    ]
    plain = _relative(combine_strengths(*(r.strength() for r in results)))
    debiased = _relative(combine_strengths(*(r.strength(debias=True) for r in results)))
    return Run(plain.value, debiased.value, debiased.se, sum(r.passes for r in results))


def _relative(strength: OrderStrength) -> OrderStrength:
    return sampled_relative_strength(strength.value, strength.se, strength.orders)


def evaluate(setup: Setup, config: Config, reps: int, seed: int, index: int) -> Outcome:
    start = time.perf_counter()
    runs = [
        run_once(
            setup,
            config,
            np.random.default_rng([seed, rep, index, 1]),
            draw_pairs(setup.population, config.pairs, seed, rep),
        )
        for rep in range(reps)
    ]
    seconds = (time.perf_counter() - start) / reps
    err = np.array([r.plain for r in runs]) - setup.truth
    err_d = np.array([r.debiased for r in runs]) - setup.truth
    sd = err_d.std(axis=0, ddof=1) if reps > 1 else np.full(len(setup.orders), np.nan)
    return Outcome(
        config=config,
        passes=float(np.mean([r.passes for r in runs])),
        seconds=seconds,
        rmse=_rms(err),
        rmse_debiased=_rms(err_d),
        bias_rms_debiased=_rms(err_d.mean(axis=0)),
        se_over_sd=float(np.mean([r.se for r in runs]) / np.mean(sd)),
        bias=err.mean(axis=0).round(4).tolist(),
        bias_debiased=err_d.mean(axis=0).round(4).tolist(),
        sd_debiased=sd.round(4).tolist(),
    )


def _rms(x: FloatArray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def smallest_match(outcomes: list[Outcome], field: str, target: float) -> Outcome | None:
    """The cheapest shared-pass setting whose ``field`` (an RMSE) is at most ``target``."""
    ours = [o for o in outcomes if o.config.estimator in ("shared", "hybrid")]
    ok = [o for o in ours if getattr(o, field) <= target]
    return min(ok, key=lambda o: o.passes) if ok else None


def table(outcomes: list[Outcome], paper: Outcome) -> str:
    """Markdown; RMSE ratios compare like with like (plain with plain, debiased with
    debiased)."""
    lines = [
        "| estimator | pairs | contexts | passes | × paper passes | RMSE | ÷ paper "
        "| RMSE debiased | ÷ paper debiased | bias RMS debiased | SE/SD | s/rep |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        c = o.config
        lines.append(
            f"| {c.estimator} | {c.label} | {c.contexts_label} | {o.passes:,.0f} "
            f"| {o.passes / paper.passes:.3f} | {o.rmse:.4f} | {o.rmse / paper.rmse:.2f} "
            f"| {o.rmse_debiased:.4f} | {o.rmse_debiased / paper.rmse_debiased:.2f} "
            f"| {o.bias_rms_debiased:.4f} | {o.se_over_sd:.2f} | {o.seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=8, help="repetitions per setting")
    parser.add_argument("--seed", type=int, default=0, help="estimator seed")
    parser.add_argument("--game-seed", type=int, default=0, help="seed of the game")
    args = parser.parse_args(argv)
    n = ROWS * COLS
    game = random_bottleneck_game(n, np.random.default_rng(args.game_seed), cols=COLS)
    population = local_pairs(ROWS, COLS, 2)
    orders = ratio_orders(n)
    setup = Setup(game, population, orders, exact_j(game, population, orders))
    print(f"exact J over {len(population)} local pairs: {np.round(setup.truth, 3).tolist()}")
    outcomes = []
    for index, config in enumerate(configs()):
        outcomes.append(evaluate(setup, config, args.reps, args.seed, index))
        print(
            f"  {config.estimator}, {config.label}, contexts {config.contexts_label}: "
            f"{outcomes[-1].seconds:.1f} s/rep",
            flush=True,
        )
    paper = outcomes[0]
    print(table(outcomes, paper))
    report(outcomes, paper, setup, args)


def report(
    outcomes: list[Outcome],
    paper: Outcome,
    setup: Setup,
    args: argparse.Namespace,
) -> None:
    criteria = {
        "debiased vs paper as published": ("rmse_debiased", paper.rmse),
        "both plain": ("rmse", paper.rmse),
        "both debiased": ("rmse_debiased", paper.rmse_debiased),
    }
    match = {name: smallest_match(outcomes, *rule) for name, rule in criteria.items()}
    print("\nCheapest shared-pass setting as accurate as the paper's estimator:")
    for name, found in match.items():
        if found is None:
            print(f"- {name}: none of the settings")
            continue
        print(
            f"- {name}: {found.config.estimator}, {found.config.label}, "
            f"contexts {found.config.contexts_label}: "
            f"{found.passes:,.0f} passes = {found.passes / paper.passes:.3f} × paper"
        )
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "n": ROWS * COLS,
        "grid": [ROWS, COLS],
        "orders": setup.orders,
        "reps": args.reps,
        "seed": args.seed,
        "game_seed": args.game_seed,
        "exact_j": setup.truth.round(5).tolist(),
        "outcomes": [asdict(o) for o in outcomes],
        "smallest_match": {
            k: None if v is None else {**asdict(v.config), "passes": v.passes}
            for k, v in match.items()
        },
    }
    path = RESULTS / "sampled_j.json"
    path.write_text(json.dumps(payload, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
