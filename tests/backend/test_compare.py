"""backend.compare: overlapping patches across grids, groups and deviations of a data set."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from backend import compare


def patches(rows: int, cols: int, cells: list[int]) -> dict[str, object]:
    return {"grid_rows": rows, "grid_cols": cols, "cells": cells}


def test_common_cells_on_equal_grids_are_the_cells_both_name() -> None:
    a, b = patches(3, 3, [0, 4, 8]), patches(3, 3, [4, 5])
    assert compare.common_cells(a, b) == [4]
    assert compare.common_cells(b, a) == [4]


def test_common_cells_across_grids_are_overlapping_rectangles() -> None:
    # 2x2 cell 0 is the top-left quarter; on a 4x4 grid that is cells 0, 1, 4, 5
    coarse, fine = patches(2, 2, [0]), patches(4, 4, [5, 15])
    assert compare.common_cells(coarse, fine) == [0]
    assert compare.common_cells(fine, coarse) == [5]
    # 3x3 middle cell spans [1/3, 2/3): it touches all four 2x2 cells, but edges alone do not
    assert compare.common_cells(patches(3, 3, [4]), patches(2, 2, [3])) == [4]
    assert compare.common_cells(patches(2, 2, [0]), patches(2, 2, [3])) == []
    assert compare.common_cells(patches(2, 2, [0]), patches(4, 4, [10])) == []


def summary(strength: list[float], pos: list[int], neg: list[int]) -> dict[str, Any]:
    return {"strength": strength, "J": compare.relative([strength]), "salient_positive": pos,
            "salient_negative": neg}  # fmt: skip


def test_dataset_view_groups_and_deviation() -> None:
    n = 3  # strengths at orders 0, 1; salient counts at orders 0..3
    images: list[dict[str, Any]] = [
        {"item_id": "a", "image_id": "i", "true": "1", "predicted": "1",
         "summary": summary([1.0, 1.0], [0, 3, 0, 0], [0, 0, 0, 0])},
        {"item_id": "b", "image_id": "j", "true": "1", "predicted": "7",
         "summary": summary([3.0, 1.0], [0, 1, 1, 0], [0, 0, 1, 1])},
        {"item_id": "c", "image_id": "k", "true": None, "predicted": "7",
         "summary": summary([1.0, 3.0], [0, 0, 0, 0], [0, 0, 0, 0])},
    ]  # fmt: skip
    set_curve = compare.relative([img["summary"]["strength"] for img in images])
    assert set_curve == pytest.approx([5 / 5, 5 / 5])  # means 5/3 and 5/3
    view = compare.dataset_view(images, set_curve, n)
    true = {g["label"]: g for g in view["true"]}
    assert list(true) == ["1"] and true["1"]["images"] == 2  # the unlabelled image is left out
    assert true["1"]["J"] == pytest.approx([4 / 3, 2 / 3])  # means 2 and 1, over 1.5
    predicted = {g["label"]: g for g in view["predicted"]}
    assert sorted(predicted) == ["1", "7"] and predicted["7"]["images"] == 2
    # salient share: b has 4 salient sets of the 7 non-empty ones; per order / C(3, m)
    b = next(r for r in view["deviating"] if r["item_id"] == "b")
    assert b["salient_share"] == pytest.approx(4 / 7)
    assert predicted["1"]["share_by_order"] == pytest.approx([0, 1, 0, 0])
    assert predicted["7"]["share_by_order"] == pytest.approx([0, 1 / 6, 1 / 3, 1 / 2])
    # deviation: mean |J_image - J_set| over orders; b's J is (1.5, 0.5), c's (0.5, 1.5)
    assert [r["item_id"] for r in view["deviating"]][-1] == "a"
    assert b["deviation"] == pytest.approx(0.5)
    assert set(view["figures"]) == {
        "true_curve", "predicted_curve", "true_sparsity", "predicted_sparsity", "deviating"
    }  # fmt: skip


def test_overlay_puts_different_grids_on_one_order_ratio_axis() -> None:
    fig = compare.overlay_curves(
        [("A", {"J": [1.0, 1.0], "F": [1.0, 1.0]}, 3), ("B", {"J": [2.0, 0.5, 0.5]}, 4)]
    )
    xs = [trace["x"] for trace in fig["data"] if trace["name"].endswith("J(m)")]
    assert xs == [[0.0, 1 / 3], [0.0, 0.25, 0.5]]
    assert all(math.isfinite(v) for v in np.ravel(xs[1]))
