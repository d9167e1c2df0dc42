"""Exports of a component job's stored results: JSON, CSV and npz (torch-free).

A knowledge-consistency job (SCIENCE.md §8) exports its variance table (direction, images,
part, variance, share of ``Var[f]``) as CSV and its per-channel variances as npz; a
component job (§7) its per-order table as CSV and its component maps as npz. JSON is the
job's metrics either way.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

DIRECTIONS = {"a_from_b": "A from B", "b_from_a": "B from A"}
SPLITS = {"train": "fitting images", "test": "held-out images"}


def variance_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per direction, image split and part: ``order k`` (consistent), ``inconsistent``
    and ``feature`` (the whole), with its variance and its share of the feature's."""
    rows: list[dict[str, Any]] = []
    for direction in DIRECTIONS:
        for split in SPLITS:
            v = metrics[direction][split]
            total = v["feature"]
            orders = zip(metrics["orders"], v["consistent"], strict=True)
            parts = [(f"order {k}", x) for k, x in orders]
            parts += [("inconsistent", v["inconsistent"]), ("feature", total)]
            for part, value in parts:
                share = value / total if value is not None and total else None
                rows.append(
                    {"direction": direction, "split": split, "part": part,
                     "variance": value, "share": share}
                )  # fmt: skip
    return rows


def component_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per order of a component analysis: fit quality and significance."""
    sig = metrics.get("significance") or {}
    rows = []
    for k, order in enumerate(metrics.get("orders") or []):
        rows.append(
            {
                "order": order,
                "train_r2": _at(metrics.get("train_r2"), k),
                "test_r2": _at(metrics.get("test_r2"), k),
                "significance": _at(sig.get("component"), k),
                "cumulative": _at(sig.get("cumulative"), k),
            }
        )
    return rows


def _at(values: Any, k: int) -> Any:
    return values[k] if isinstance(values, list) and k < len(values) else None


def to_csv(kind: str, metrics: dict[str, Any]) -> str:
    rows = variance_rows(metrics) if kind == "consistency" else component_rows(metrics)
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return out.getvalue()


def to_json(kind: str, metrics: dict[str, Any]) -> str:
    return json.dumps({"kind": kind, **metrics})
