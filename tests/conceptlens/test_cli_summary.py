"""The CLI's printed summary lists as "top salient sets" only sets that are salient."""

from __future__ import annotations

import numpy as np

from conceptlens.analysis import interactions_from_logits
from conceptlens.cli import format_summary


def _listing(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("top salient sets (players, value, normalised strength):") + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("monotonicity"))
    return lines[start:end]


def test_sets_of_value_zero_or_below_tau_are_not_listed_as_salient() -> None:
    """A game with one non-zero interaction, {0, 1}: its top 10 held nine sets of value 0."""
    n = 3
    masks = np.arange(2**n)
    v = np.where((masks & 0b011) == 0b011, 2.0, 0.0)  # v(S) = 2 iff S ⊇ {0, 1}
    logits = np.stack([v, np.zeros_like(v)], axis=1)
    summary = interactions_from_logits(logits, target=0, output="logit", k=10).summary()
    assert len(summary["top_sets"]) == 7  # the engine keeps the k strongest, zeros too
    assert _listing(format_summary(summary)) == ["  {0, 1}  +2  1.000"]


def test_no_salient_set_is_said_so() -> None:
    summary = interactions_from_logits(np.zeros((4, 2)), target=0, output="logit").summary()
    assert _listing(format_summary(summary)) == ["  none: no set reaches τ = 0.05"]
