"""Knowledge consistency in the service: exports and figures from stored metrics, and the
shape checks made before a job is queued."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from backend import consistency, figures
from backend.errors import ClientError
from backend.services import components
from conceptlens.components import ComponentsError


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


@pytest.mark.parametrize(
    "source,target",
    [
        ([32, 8, 8], [32, 8, 8]),  # same grid
        ([16, 16, 16], [32, 8, 8]),  # pixel-unshuffle: 64 channels
        ([32, 8, 8], [16, 16, 16]),  # upsampled
        ([32, 8, 8], [10]),  # flat target: the whole source
        ([128, 8, 8], [10]),  # too large as a whole: resampled to 4×4
        ([64], [32, 8, 8]),  # flat source
        ([7, 6, 5], [3, 4, 4]),  # pooled
    ],
)
def test_the_service_counts_the_linear_inputs_as_the_engine_does(
    source: list[int], target: list[int]
) -> None:
    from conceptlens.components.consistency import _LinearBranch

    src = (source[0], 1, 1) if len(source) == 1 else tuple(source)
    try:
        engine = _LinearBranch(src, tuple(target)).inputs
    except ComponentsError:
        engine = components.MAX_LINEAR_INPUTS + 1  # refused: more than the limit
    counted = components.linear_inputs(source, target)
    assert counted == engine or counted > components.MAX_LINEAR_INPUTS < engine


def test_shapes_the_engine_cannot_take_are_refused_before_any_work() -> None:
    with pytest.raises(ClientError, match="a map"):
        components.check_consistency_shapes([4, 4], [32, 8, 8])
    with pytest.raises(ClientError, match="fewer channels"):
        components.check_consistency_shapes([512, 8, 8], [32, 8, 8])
    components.check_consistency_shapes([32, 8, 8], [16, 16, 16])
