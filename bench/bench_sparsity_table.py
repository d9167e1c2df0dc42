"""How sparse are the demo's interactions? Baselines, outputs, AND-OR, τ (SCIENCE.md §1–§3).

    python bench/bench_sparsity_table.py [--and-or-grid 3] [--digits 10]

The built-in demo: the demo CNN (:func:`train_demo_model`, seed 0, the torch module) on the
first test image of each digit 0–9 (the built-in samples), a 4×4 patch grid (n = 16,
65,536 masked inputs per digit and baseline), target = the digit's label. For every
baseline of :func:`make_baseline` and every output of :func:`output_values`, the exact
Harsanyi table ``I`` and, at τ = 0.05 (and τ = 0.01, 0.02, 0.1):

- **salient share**: the share of the ``2^n − 1`` non-empty sets with ``|I(S)| ≥ τ·max|I|``;
- **top-1 % share**: the share of ``Σ_{S≠∅}|I(S)|`` held by the 1 % strongest sets.

AND-OR (:func:`and_or_interactions`, its defaults, with and without the noise term ``q``)
for the log-odds output of every baseline on an ``--and-or-grid`` grid: the candidates
are the ``2(2^n − 1)`` AND and OR sets, normalised by the largest of either kind.
Also the exact ``J^(m)`` of the mean baseline's log-odds (averaged over the digits) beside
its null references (:mod:`conceptlens.reference`). Means over the digits, with min–max.
Writes ``bench/results/sparsity_table.json`` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from conceptlens.aliases import FloatArray
from conceptlens.and_or import and_or_interactions
from conceptlens.game import MaskedModelGame, logit_table
from conceptlens.models.demo import load_digits_16, split_digits, train_demo_model
from conceptlens.outputs import OUTPUTS, OutputKind, output_values
from conceptlens.pairwise import relative_strength
from conceptlens.players import BASELINES, BaselineKind, PatchGrid, Players, make_baseline
from conceptlens.reference import (
    exact_strength,
    gaussian_expected_curve,
    permuted_reference,
    rank_agreement,
    theory_log10,
)
from conceptlens.transforms import harsanyi

RESULTS = Path(__file__).parent / "results"
TAUS = (0.01, 0.02, 0.05, 0.1)
TAU = 0.05
TOP = 0.01


def digits(count: int) -> list[tuple[torch.Tensor, int]]:
    """The first test image of each class 0, 1, … (the demo's built-in samples)."""
    _, _, test_x, test_y = split_digits(*load_digits_16())
    out = []
    for c in range(count):
        index = int((test_y == c).nonzero()[0])
        out.append((test_x[index], c))
    return out


def logits_of(model: torch.nn.Module, x: torch.Tensor, grid: int, baseline: str) -> FloatArray:
    players = Players(PatchGrid(grid, grid, height=16, width=16))
    game = MaskedModelGame(
        model,
        x,
        players,
        make_baseline(x, cast(BaselineKind, baseline)),
        device=torch.device("cpu"),
        batch_size=8192,
    )
    return logit_table(game)


def null_players(x: torch.Tensor, grid: int) -> int:
    """Patches whose pixels are all 0: under the zero baseline masking them changes nothing,
    so every set holding one has ``I(S) = 0`` exactly."""
    cells = PatchGrid(grid, grid, height=16, width=16).cell_masks()
    return int(sum(bool((x[0][cell] == 0).all()) for cell in cells))


def sparsity(strengths: list[FloatArray], tau: float) -> dict[str, float]:
    """Salient share and top-1 % share over the candidate sets (all arrays, ∅ excluded)."""
    s = np.abs(np.concatenate(strengths))
    salient = s >= tau * s.max()
    top = max(1, round(TOP * s.size))
    held = np.partition(s, s.size - top)[s.size - top :].sum() / s.sum()
    return {
        "salient": float(salient.mean()),
        "salient_count": int(salient.sum()),
        "top": float(held),
    }


def summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    keys = rows[0].keys()
    return {
        k: {
            "mean": float(np.mean([r[k] for r in rows])),
            "min": float(np.min([r[k] for r in rows])),
            "max": float(np.max([r[k] for r in rows])),
        }
        for k in keys
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--digits", type=int, default=10)
    parser.add_argument("--and-or-grid", type=int, default=3)
    parser.add_argument("--skip-and-or", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.time()
    model, info = train_demo_model(seed=0)
    samples = digits(args.digits)
    out: dict[str, Any] = {
        "model": "demo CNN, seed 0 (torch module)",
        "test_accuracy": info["test_accuracy"],
        "digits": [label for _, label in samples],
        "grid": "4x4",
        "n": 16,
        "target": "label",
        "taus": list(TAUS),
        "load_before": os.popen("uptime").read().strip(),
        "null_players_zero_baseline": [null_players(x, 4) for x, _ in samples],
        "harsanyi": {},
        "and_or": {},
    }
    tables: dict[str, list[FloatArray]] = {}
    for baseline in BASELINES:
        tables[baseline] = [logits_of(model, x, 4, baseline) for x, _ in samples]
        for kind in OUTPUTS:
            rows: dict[float, list[dict[str, float]]] = {tau: [] for tau in TAUS}
            for logits, (_, label) in zip(tables[baseline], samples, strict=True):
                interactions = harsanyi(output_values(logits, label, cast(OutputKind, kind)))
                for tau in TAUS:
                    rows[tau].append(sparsity([interactions[1:]], tau))
            out["harsanyi"][f"{baseline}/{kind}"] = {str(tau): summary(rows[tau]) for tau in TAUS}
            r = out["harsanyi"][f"{baseline}/{kind}"][str(TAU)]
            print(
                f"{baseline:5s} {kind:8s} salient {100 * r['salient']['mean']:5.1f} % "
                f"top-1% {100 * r['top']['mean']:5.1f} %",
                flush=True,
            )
    out["bottleneck_reference"] = bottleneck_reference(tables["mean"], samples)
    if not args.skip_and_or:
        out["and_or_grid"] = f"{args.and_or_grid}x{args.and_or_grid}"
        for baseline in BASELINES:
            for noise in (False, True):
                out["and_or"][f"{baseline}/q={noise}"] = and_or_rows(
                    model, samples, baseline, noise, args.and_or_grid
                )
    out["load_after"] = os.popen("uptime").read().strip()
    out["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sparsity_table.json").write_text(json.dumps(out, indent=1) + "\n")
    report(out)


def and_or_rows(
    model: torch.nn.Module, samples: list[tuple[torch.Tensor, int]], baseline: str, noise: bool,
    grid: int,
) -> dict[str, Any]:  # fmt: skip
    rows: dict[float, list[dict[str, float]]] = {tau: [] for tau in TAUS}
    plain: dict[float, list[dict[str, float]]] = {tau: [] for tau in TAUS}
    extra: list[dict[str, float]] = []
    for x, label in samples:
        v = output_values(logits_of(model, x, grid, baseline), label, "log-odds")
        started = time.time()
        result = and_or_interactions(v, noise=noise)
        interactions = harsanyi(v)
        for tau in TAUS:
            rows[tau].append(sparsity([result.i_and[1:], result.i_or[1:]], tau))
            plain[tau].append(sparsity([interactions[1:]], tau))
        extra.append(
            {
                "l1_ratio": result.loss / result.loss_and_only,
                "q_max_over_bound": result.q_max / result.q_bound if result.q_bound else 0.0,
                "residual": result.residual,
                "seconds": time.time() - started,
            }
        )
    r = summary(rows[TAU])
    print(
        f"AND-OR {baseline:5s} q={noise!s:5s} salient {100 * r['salient']['mean']:5.1f} % "
        f"(count {r['salient_count']['mean']:.0f}) top-1% {100 * r['top']['mean']:5.1f} %",
        flush=True,
    )
    return {
        "and_or": {str(tau): summary(rows[tau]) for tau in TAUS},
        "harsanyi_same_grid": {str(tau): summary(plain[tau]) for tau in TAUS},
        "fit": summary(extra),
    }


def bottleneck_reference(
    logit_tables: list[FloatArray], samples: list[tuple[torch.Tensor, int]]
) -> dict[str, Any]:
    """Exact J of the mean baseline's log-odds (mean over digits) beside its references."""
    values = [
        output_values(logits, label, "log-odds")
        for logits, (_, label) in zip(logit_tables, samples, strict=True)
    ]
    j = relative_strength(np.stack([exact_strength(v) for v in values]))
    rng = np.random.default_rng(0)
    permuted = [permuted_reference(v, rng=rng, draws=8) for v in values]
    ref = relative_strength(np.concatenate([p.strength for p in permuted]))
    per_digit = np.stack([p.strength.mean(axis=0) for p in permuted])
    per_digit = per_digit / per_digit.mean(axis=1, keepdims=True)
    return {
        "j_model": j.tolist(),
        "j_permuted": ref.tolist(),
        "j_permuted_digit_min": per_digit.min(axis=0).tolist(),
        "j_permuted_digit_max": per_digit.max(axis=0).tolist(),
        "j_gaussian_expected": gaussian_expected_curve(16).tolist(),
        "theory_log10": theory_log10(16).tolist(),
        "rank_agreement_model_theory": rank_agreement(j, theory_log10(16)),
        "rank_agreement_permuted_theory": rank_agreement(ref, theory_log10(16)),
    }


def report(out: dict[str, Any]) -> None:
    print(f"\nτ = {TAU}; mean over {len(out['digits'])} digits (min–max)")
    print(f"all-zero patches per digit: {out['null_players_zero_baseline']}\n")
    print("| baseline | output | salient sets | top 1 % hold |")
    print("|---|---|---|---|")
    for key, by_tau in out["harsanyi"].items():
        baseline, kind = key.split("/")
        r = by_tau[str(TAU)]
        print(f"| {baseline} | {kind} | {pct(r['salient'])} | {pct(r['top'])} |")
    print("\nτ sweep, log-odds (salient share):\n")
    for baseline in BASELINES:
        by_tau = out["harsanyi"][f"{baseline}/log-odds"]
        cells = [f"τ={t}: {100 * by_tau[str(t)]['salient']['mean']:.1f} %" for t in TAUS]
        print(f"- {baseline}: " + ", ".join(cells))
    if out["and_or"]:
        print(f"\nAND-OR on {out['and_or_grid']}, log-odds\n")
        print("| baseline | q | AND-only salient | AND-OR salient (count) | top 1 % | L1 ratio |")
        print("|---|---|---|---|---|---|")
        for key, r in out["and_or"].items():
            a, h, fit = r["and_or"][str(TAU)], r["harsanyi_same_grid"][str(TAU)], r["fit"]
            print(
                f"| {key} | {pct(h['salient'])} ({h['salient_count']['mean']:.0f}) "
                f"| {pct(a['salient'])} ({a['salient_count']['mean']:.0f}) | {pct(a['top'])} "
                f"| {fit['l1_ratio']['mean']:.2f} |"
            )
    ref = out["bottleneck_reference"]
    print("\nJ (mean baseline, log-odds):", np.round(ref["j_model"], 2).tolist())
    print("J permuted reference:", np.round(ref["j_permuted"], 2).tolist())
    print("J Gaussian expected:", np.round(ref["j_gaussian_expected"], 2).tolist())


def pct(r: dict[str, float]) -> str:
    return f"{100 * r['mean']:.1f} % ({100 * r['min']:.1f}–{100 * r['max']:.1f})"


if __name__ == "__main__":
    main()
