"""From a logit table to every interaction result — SCIENCE.md §1–§4.

:func:`interactions_from_logits` needs no forward pass: changing target, output type, τ or
top-k recomputes from the stored table (milliseconds at n = 16).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conceptlens.aliases import FloatArray, IntArray
from conceptlens.outputs import OutputKind, chunk_rows, output_values, predicted_class
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
from conceptlens.transforms import harsanyi_checked, harsanyi_checked_in_place, n_players_of

if TYPE_CHECKING:  # conceptlens.and_or imports torch: only an analysis with AND-OR steps does
    from conceptlens.and_or import AndOrResult

ENGINE_VERSION = "1"
KEEP_VALUES_BELOW = 22
"""From this many players on, an analysis does not hold the output values ``v`` beside
the dividends: ``v`` becomes the dividends in place, is made again from the logits for
the faithfulness check (:func:`harsanyi_checked_in_place`: about 1.4 s more at n = 24, 2 %
of its passes) and when read later. Issue 14: the peak is then the logit table and one
value table, against the bound of two."""
FORMAT = "conceptlens-interactions/1"


@dataclass
class InteractionResult:
    """Everything computed for one input. Tables are indexed by bitmask (row = subset)."""

    logits: FloatArray  # [2**n, classes]
    target: int
    output: OutputKind
    tau: float
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
    values: FloatArray | None = field(default=None, repr=False)
    """``v`` if the analysis kept it; else :attr:`v` makes it again from the logits."""

    @property
    def n(self) -> int:
        return n_players_of(self.interactions)

    @functools.cached_property
    def v(self) -> FloatArray:
        """``[2**n]`` output values ``v(S)``. An analysis of n ≥ :data:`KEEP_VALUES_BELOW`
        players does not hold them (issue 14's memory bound): they are made again from the
        logits, the same bits, when first read (saving the result reads them)."""
        if self.values is not None:
            return self.values
        return output_values(self.logits, self.target, self.output)

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
        ends = output_values(self.logits[[0, -1]], self.target, self.output)  # not all of v
        v_empty, v_full = float(ends[0]), float(ends[1])
        summary: dict[str, Any] = {
            "format": FORMAT,
            "engine_version": ENGINE_VERSION,
            "n_players": self.n,
            "classes": int(self.logits.shape[1]),
            "prediction": self.prediction,
            "target": self.target,
            "output": self.output,
            "tau": self.tau,
            "v_empty": v_empty,
            "v_full": v_full,
            "v_full_minus_empty": v_full - v_empty,
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
            from conceptlens.and_or import and_or_salient

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
    temporaries; from :data:`KEEP_VALUES_BELOW` players on, the dividends alone (``v``
    turns into them, and is made again from the logits when read). Issue 14 bounds the
    peak by the logit table and two value tables. The sorted strengths
    (``sorted_strength``) are another table, made when first used.
    """
    table = np.asarray(logits)
    n = n_players_of(table)
    chosen = resolve_target(table, target)
    v = output_values(table, chosen, output)
    u_bar = average_output_by_order(v)
    and_or: AndOrResult | None = None
    if and_or_steps:
        from conceptlens.and_or import and_or_interactions

        and_or = and_or_interactions(v, steps=and_or_steps, noise=and_or_noise)
    kept: FloatArray | None = v
    if n < KEEP_VALUES_BELOW:
        interactions, residual = harsanyi_checked(v)
    else:  # v becomes the dividends; made again from the logits where needed
        interactions, kept = v, None
        residual = harsanyi_checked_in_place(
            interactions,
            lambda start, stop: output_values(table[start:stop], chosen, output),
            chunk_rows(max(table.shape[1], 2)),  # output_values' own chunks: the same bits
        )
    del v
    multi = multi_order(interactions) if table.shape[0] >= 4 else np.zeros((0, 1, 1))
    strength = pair_strength(multi) if multi.size else np.zeros(0)
    counts = salient_counts(interactions, tau)
    return InteractionResult(
        logits=table,
        target=chosen,
        output=output,
        tau=tau,
        values=kept,
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
        and_or=and_or,
        meta=dict(meta or {}),
    )
