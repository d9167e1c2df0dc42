"""From a logit table to every interaction result — SCIENCE.md §1–§4.

:func:`interactions_from_logits` needs no forward pass: changing target, output type, τ or
top-k recomputes from the stored table (milliseconds at n = 16).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conceptlens.aliases import FloatArray, IntArray
from conceptlens.and_or import AndOrResult, and_or_interactions, and_or_salient
from conceptlens.outputs import OutputKind, output_values, predicted_class
from conceptlens.pairwise import (
    multi_order,
    pair_strength,
    relative_strength,
    shapley_interaction,
    theory_curve,
)
from conceptlens.sparsity import (
    DEFAULT_TAU,
    average_output_by_order,
    mask_players,
    max_strength,
    monotonicity_exponent,
    salient_counts,
    sorted_strengths,
    top_k,
)
from conceptlens.transforms import harsanyi_checked, n_players_of

ENGINE_VERSION = "1"
FORMAT = "conceptlens-interactions/1"


@dataclass
class InteractionResult:
    """Everything computed for one input. Tables are indexed by bitmask (row = subset)."""

    logits: FloatArray  # [2**n, classes]
    target: int
    output: OutputKind
    tau: float
    v: FloatArray  # [2**n]
    interactions: FloatArray  # [2**n] Harsanyi
    residual: float
    multi_order: FloatArray  # [n−1, n, n]
    shapley: FloatArray  # [n, n]
    strength: FloatArray  # [n−1]  E_{i<j}|I^(m)(i,j)|
    J: FloatArray  # [n−1]
    F: FloatArray  # [n−1]
    salient_positive: IntArray  # [n+1]
    salient_negative: IntArray  # [n+1]
    top_masks: IntArray  # [k]
    u_bar: FloatArray  # [n+1]
    p: float
    and_or: AndOrResult | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return n_players_of(self.v)

    @functools.cached_property
    def sorted_strength(self) -> FloatArray:
        """``[2**n − 1]`` normalised strengths, descending (the sparsity curve), made on first
        use: a table of ``2^n`` float64 that the analysis itself does not hold (issue 14's
        memory bound), only what is saved or plotted."""
        return sorted_strengths(self.interactions)

    @property
    def prediction(self) -> int:
        return predicted_class(self.logits[-1])

    def top_sets(self) -> list[dict[str, Any]]:
        """The top-k salient sets as ``{mask, players, order, value, strength}`` rows."""
        top = max_strength(self.interactions)
        rows = []
        for mask in self.top_masks.tolist():
            value = float(self.interactions[mask])
            rows.append(
                {
                    "mask": mask,
                    "players": mask_players(mask, self.n),
                    "order": mask.bit_count(),
                    "value": value,
                    "strength": abs(value) / top if top > 0 else 0.0,
                }
            )
        return rows

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (also the npz's JSON sidecar)."""
        summary: dict[str, Any] = {
            "format": FORMAT,
            "engine_version": ENGINE_VERSION,
            "n_players": self.n,
            "classes": int(self.logits.shape[1]),
            "prediction": self.prediction,
            "target": self.target,
            "output": self.output,
            "tau": self.tau,
            "v_empty": float(self.v[0]),
            "v_full": float(self.v[-1]),
            "v_full_minus_empty": float(self.v[-1] - self.v[0]),
            "residual": self.residual,
            "salient_positive": self.salient_positive.tolist(),
            "salient_negative": self.salient_negative.tolist(),
            "top_sets": self.top_sets(),
            "J": self.J.tolist(),
            "F": self.F.tolist(),
            "u_bar": self.u_bar.tolist(),
            "p": None if np.isnan(self.p) else self.p,
            **self.meta,
        }
        if self.and_or is not None:
            a = self.and_or
            salient = and_or_salient(a, self.tau)
            summary["and_or"] = {
                "residual": a.residual,
                "loss": a.loss,
                "loss_and_only": a.loss_and_only,
                "steps": a.steps,
                "steps_used": a.steps_used,
                "converged": a.converged,
                "bound": a.bound,
                "gap": a.gap,
                "polished": a.polished,
                "q_max": a.q_max,
                "q_bound": a.q_bound,
                "salient_rule": "|I(S)| ≥ τ · the largest |I| of all non-empty AND and OR terms",
                "salient_and": int(salient.and_mask.sum()),
                "salient_or": int(salient.or_mask.sum()),
            }
        return summary

    def arrays(self) -> dict[str, np.ndarray]:
        """The npz payload (see README, "Result files")."""
        out: dict[str, np.ndarray] = {
            "logits": self.logits,
            "v": self.v,
            "interactions": self.interactions,
            "multi_order": self.multi_order,
            "shapley": self.shapley,
            "strength": self.strength,
            "J": self.J,
            "F": self.F,
            "salient_positive": self.salient_positive,
            "salient_negative": self.salient_negative,
            "sorted_strength": self.sorted_strength,
            "top_masks": self.top_masks,
            "u_bar": self.u_bar,
        }
        if self.and_or is not None:
            out["and_interactions"] = self.and_or.i_and
            out["or_interactions"] = self.and_or.i_or
            out["or_noise"] = self.and_or.q
        return out

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``path`` (npz, uncompressed) and its JSON sidecar ``path.json``."""
        npz = Path(path)
        if npz.suffix != ".npz":
            npz = npz.with_suffix(".npz")
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez(npz, **self.arrays())  # type: ignore[arg-type]  # numpy stubs read ** as allow_pickle
        sidecar = npz.with_suffix(".json")
        sidecar.write_text(json.dumps(self.summary(), indent=2))
        return npz, sidecar


def resolve_target(logits: FloatArray, target: int | str) -> int:
    """``"predicted"`` → the class predicted on the input with every player present."""
    if target == "predicted":
        return predicted_class(logits[-1])
    return int(target)


def interactions_from_logits(
    logits: FloatArray,
    *,
    target: int | str = "predicted",
    output: OutputKind = "log-odds",
    tau: float = DEFAULT_TAU,
    k: int = 20,
    and_or_steps: int = 0,
    and_or_noise: bool = False,
    meta: dict[str, Any] | None = None,
) -> InteractionResult:
    """All results of SCIENCE.md §1–§4 from a logit table ``[2**n, classes]``; no forward pass.

    Cost O(n·2^n) (output values, transform, multi-order) plus ``and_or_steps`` AND-OR
    steps if asked for. Memory: the value table ``v`` and the dividends, plus O(2^16)-entry
    temporaries (issue 14: an analysis's peak is the logit table and two value tables);
    the sorted strengths (``sorted_strength``) are a third table, made when first used.
    """
    table = np.asarray(logits)
    n_players_of(table)
    chosen = resolve_target(table, target)
    v = output_values(table, chosen, output)
    interactions, residual = harsanyi_checked(v)
    multi = multi_order(interactions) if table.shape[0] >= 4 else np.zeros((0, 1, 1))
    strength = pair_strength(multi) if multi.size else np.zeros(0)
    counts = salient_counts(interactions, tau)
    u_bar = average_output_by_order(v)
    n = n_players_of(table)
    return InteractionResult(
        logits=table,
        target=chosen,
        output=output,
        tau=tau,
        v=v,
        interactions=interactions,
        residual=residual,
        multi_order=multi,
        shapley=shapley_interaction(multi) if multi.size else np.zeros((n, n)),
        strength=strength,
        J=relative_strength(strength) if multi.size else np.zeros(0),
        F=theory_curve(n) if n >= 2 else np.zeros(0),
        salient_positive=counts.positive,
        salient_negative=counts.negative,
        top_masks=top_k(interactions, k),
        u_bar=u_bar,
        p=monotonicity_exponent(u_bar),
        and_or=and_or_interactions(v, steps=and_or_steps, noise=and_or_noise)
        if and_or_steps
        else None,
        meta=dict(meta or {}),
    )
