"""Knowledge-consistency exports and figures from stored metrics (torch-free)."""

from __future__ import annotations

import csv
import io
from typing import Any

from backend import consistency, figures


def metrics() -> dict[str, Any]:
    side = {"feature": 2.0, "consistent": [1.5, 0.1, None], "inconsistent": 0.0,
            "cumulative_r2": [0.75, 0.8, None]}  # fmt: skip
    both = {"train": side, "test": side}
    return {"kind": "consistency", "orders": [0, 1, 2], "a_from_b": both, "b_from_a": both}


def test_csv_has_every_part_with_its_share() -> None:
    rows = list(csv.DictReader(io.StringIO(consistency.to_csv("consistency", metrics()))))
    assert len(rows) == 2 * 2 * 5
    first = rows[0]
    assert (first["direction"], first["split"], first["part"]) == ("a_from_b", "train", "order 0")
    assert float(first["share"]) == 0.75
    missing = next(r for r in rows if r["part"] == "order 2")
    assert missing["variance"] == "" and missing["share"] == ""  # null stays empty, not "None"


def test_figures_leave_gaps_where_a_share_cannot_be_drawn_on_a_log_axis() -> None:
    figs = figures.component_figures(metrics())
    assert set(figs) == set(figures.CONSISTENCY_FIGURES)
    bars = figs["parts"]["data"][0]
    assert bars["y"] == [0.75, 0.05, None, None]  # order 2 unknown, ε = 0: no bar, no error
    assert figs["parts"]["layout"]["yaxis"]["type"] == "log"
    assert len(figs["cumulative"]["data"]) == 4  # two directions × (held-out, fitting)
