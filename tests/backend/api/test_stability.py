"""Stability analyses (SCIENCE.md §6) through the API: every image as it is, with noise and
under attack, and β, κ, α per order computed from the stored interactions."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.backend.api.test_analyses import create, run
from tests.backend.api.test_sampled import digits_set, torch_demo


@pytest.fixture
def demo(service: dict[str, Any]) -> str:
    return str(service["demo_model_id"])


def interactions(client: TestClient, analysis: dict[str, Any], item: dict[str, Any]) -> Any:
    path = f"/api/analyses/{analysis['id']}/items/{item['id']}/export.npz"
    return np.load(io.BytesIO(client.get(path).content))["interactions"]


def per_order_mean(values: np.ndarray, n: int) -> list[float | None]:
    order = np.array([bin(m).count("1") for m in range(1 << n)])
    out: list[float | None] = []
    for s in range(1, n + 1):
        v = values[order == s]
        v = v[np.isfinite(v)]
        out.append(float(v.mean()) if v.size else None)
    return out


def test_a_stability_analysis_of_a_torch_model(client: TestClient) -> None:
    body = {"model_id": torch_demo(client), "grid": "3x3", "baseline": "zero",
            "dataset_id": digits_set(client), "dataset_pick": "first", "dataset_k": 6,
            "mode": "stability",
            "stability": {"sigma": 0.2, "draws": 2, "epsilon": 0.1, "pgd_steps": 5}}  # fmt: skip
    cost = client.post("/api/analyses/estimate", json=body).json()
    assert cost["inputs_per_image"] == 4 and cost["forward_passes"] == 6 * 4 * 512
    analysis = run(client, **body)
    assert analysis["status"] == "done", analysis["error"]
    items = analysis["items"]
    assert len(items) == 24
    kinds = sorted((i["variant"] or {}).get("kind", "clean") for i in items)
    assert kinds.count("clean") == 6 and kinds.count("noise") == 12 and kinds.count("pgd") == 6
    st = analysis["summary"]["stability"]
    assert st["images"] == 6 and st["kappa"]["orders"] == list(range(1, 10))
    # κ and α from the exported tables, by the definition
    by_image: dict[str, dict[str, Any]] = {}
    for item in items:
        variant = item["variant"] or {}
        name = "clean" if not variant else variant["kind"] + str(variant.get("draw", ""))
        by_image.setdefault(item["image_id"], {})[name] = interactions(client, analysis, item)
    images = sorted(by_image)
    clean = np.stack([by_image[i]["clean"] for i in images])
    noisy = np.stack([[by_image[i]["noise0"], by_image[i]["noise1"]] for i in images])
    attacked = np.stack([by_image[i]["pgd"] for i in images])
    size = np.abs(clean).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.abs(noisy - clean[:, None]).mean(axis=(0, 1)) / size
        alpha = np.abs(attacked - clean).mean(axis=0) / size
    assert st["kappa"]["mean"] == pytest.approx(per_order_mean(kappa, 9), rel=1e-9)
    assert st["alpha"]["mean"] == pytest.approx(per_order_mean(alpha, 9), rel=1e-9)
    assert all(b >= 0 for b in st["beta"]["mean"] if b is not None)
    # the attacked inputs differ from the clean ones: their tables do
    assert not np.allclose(attacked, clean)
    again = create(client, **body).json()
    assert again["forward_passes"] == 0  # noise and attack are seeded: the same inputs


def test_stability_refusals(client: TestClient, demo: str) -> None:
    base = {"image_ids": [client.get("/api/images").json()["data"][0]["id"]], "grid": "3x3",
            "mode": "stability"}  # fmt: skip
    onnx = create(client, model_id=demo, **base)
    assert onnx.status_code == 400 and "PGD attack needs gradients" in onnx.json()["detail"]
    ok = create(client, model_id=demo, **base, stability={"adversarial": False, "draws": 1})
    assert ok.status_code == 201
    big = create(client, model_id=demo, **{**base, "grid": "4x4"})
    assert big.status_code == 400 and "at most 12 players" in big.json()["detail"]
    stray = create(client, model_id=demo, **{**base, "mode": "exact"}, stability={"draws": 2})
    assert stray.status_code == 400 and "stability analyses only" in stray.json()["detail"]
