"""Sampled analyses (large grids) and image sets through the API on the embedded default."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from backend.db.models import Analysis
from backend.db.session import session_scope
from backend.services.analyses import plan_of
from conceptlens.game import CallableGame, MaskedModelGame
from conceptlens.images import load_image
from conceptlens.models.loaders import load_model
from conceptlens.players import PatchGrid, Players, make_baseline
from conceptlens.sampled_plan import from_arrays, run_plan
from tests.backend.api.test_analyses import create, finished, run
from tests.backend.conftest import sample_image_id, wait_for

SMALL = {"ratios": [0.0, 0.3, 0.6, 1.0], "radius": 1, "contexts": 3, "seed": 7}


@pytest.fixture
def demo(service: dict[str, Any]) -> str:
    return str(service["demo_model_id"])


def digits_set(client: TestClient) -> str:
    sets = client.get("/api/datasets").json()["data"]
    return next(d["id"] for d in sets if d["builtin"])


def test_a_sampled_analysis_equals_the_engine_for_the_same_seed(
    client: TestClient, demo: str, service: dict[str, Any], tmp_path: Path
) -> None:
    image = sample_image_id(client, "3")
    body = {"model_id": demo, "image_ids": [image], "grid": "8x8", "baseline": "zero"}
    analysis = run(client, **body, mode="sampled", sampled=SMALL)
    assert analysis["status"] == "done", analysis["error"]
    item = analysis["items"][0]
    summary = item["summary"]
    assert summary["kind"] == "sampled" and summary["orders"] == [0, 18, 37, 62]
    assert analysis["progress_done"] == summary["passes"]  # progress counts forward passes
    # the expected cost shown before running is close to what was spent
    assert summary["passes"] == pytest.approx(analysis["params"]["expected_passes"], rel=0.1)
    stored = from_arrays(dict(np.load(io.BytesIO(client.get(export(analysis, item)).content))))

    # the same plan, in this process, on the same model, image and baseline
    with session_scope() as s:
        params = s.get_one(Analysis, analysis["id"]).params
    expected = engine_run(service, demo, image, params, tmp_path)
    for got, want in zip(stored.values(), expected, strict=True):
        np.testing.assert_array_equal(got.count, want.count)
        np.testing.assert_allclose(got.mean, want.mean, rtol=1e-4, atol=1e-5)
    curve = client.get(f"/api/analyses/{analysis['id']}/figures/curve").json()
    j = next(t for t in curve["data"] if t.get("name") == "J<sup>(m)</sup>")
    half, se = (np.array(analysis["summary"][k]) for k in ("J_half", "J_se"))
    assert j["error_y"]["array"] == pytest.approx(half)
    assert np.all(half >= 1.959 * se - 1e-12)  # a Student-t (or normal) 95 % interval
    assert curve["layout"]["yaxis2"]["type"] == "log"
    # the i.i.d. reference: E|I^(m)| ∝ C(n−2, m)^(−1/2) at the sampled orders, mean 1
    iid = np.array([math.comb(62, m) ** -0.5 for m in (0, 18, 37, 62)])
    ref = analysis["summary"]["reference"]["mean"]
    assert ref == pytest.approx(iid / iid.mean())
    assert any("i.i.d." in (t.get("name") or "") for t in curve["data"])
    debiased = client.get(f"/api/analyses/{analysis['id']}/figures/curve?debias=true").json()
    assert next(t for t in debiased["data"] if t.get("name") == "J<sup>(m)</sup>")["y"] == (
        pytest.approx(analysis["summary"]["J_debiased"])
    )
    # a clicked patch: its sampled partners, with standard errors, as stored
    base = f"/api/analyses/{analysis['id']}/items/{item['id']}"
    pairs = client.get(f"{base}/sampled_pairs", params={"player": 9}).json()
    assert sorted(p["player"] for p in pairs["partners"]) == [0, 1, 2, 8, 10, 16, 17, 18]
    (part,) = stored.values()
    k = next(p for p, (a, b) in enumerate(part.pairs.tolist()) if (a, b) == (9, 10))
    row = next(p for p in pairs["partners"] if p["player"] == 10)
    assert (
        row["mean"] == pytest.approx(part.mean[:, k]) and row["count"] == part.count[:, k].tolist()
    )
    lo, hi = part.interval(0.95)
    assert row["lo"] == pytest.approx(lo[:, k]) and row["hi"] == pytest.approx(hi[:, k])
    assert client.get(f"{base}/sampled_pairs", params={"player": 64}).status_code == 400
    csv_rows = client.get(f"{base}/export.csv").text.splitlines()
    assert csv_rows[0] == "order,i,j,interaction,stderr,samples"
    assert len(csv_rows) == 1 + 4 * len(part.pairs)


def export(analysis: dict[str, Any], item: dict[str, Any]) -> str:
    return f"/api/analyses/{analysis['id']}/items/{item['id']}/export.npz"


def engine_run(
    service: dict[str, Any], model_id: str, image_id: str, params: Any, tmp: Path
) -> list[Any]:
    from backend.db.models import ImageRecord, ModelRecord
    from backend.storage import LocalBlobStore

    store = LocalBlobStore(service["data"] / "blobs")
    with session_scope() as s:
        row = s.get_one(ModelRecord, model_id)
        blob, shape, mean, std = row.blob_key, row.input_shape, row.mean, row.std
        image_blob = s.get_one(ImageRecord, image_id).blob_key
    (tmp / "model").write_bytes(store.get(blob))
    model = load_model(tmp / "model")
    assert shape is not None
    c, h, w = shape
    x = load_image(store.get(image_blob), channels=c, size=(h, w), mean=mean, std=std)
    rows, cols = params["grid_rows"], params["grid_cols"]
    players = Players(PatchGrid(rows, cols, h, w))
    probe = MaskedModelGame(model.predict, x, players, make_baseline(x, "zero"))
    target = int(np.argmax(probe.logits(np.ones((1, rows * cols), dtype=bool))[0]))
    game = MaskedModelGame(
        model.predict, x, players, make_baseline(x, "zero"), target=target, output="log-odds"
    )
    with torch.inference_mode():
        return run_plan(plan_of(params), CallableGame(game, rows * cols))


def test_identical_requests_reuse_stored_samples(client: TestClient, demo: str) -> None:
    image = sample_image_id(client, "5")
    body = {"model_id": demo, "image_ids": [image], "grid": "6x6", "mode": "sampled"}
    first = run(client, **body, sampled=SMALL)
    again = create(client, **body, sampled=SMALL).json()
    assert again["forward_passes"] == 0
    second = wait_for(client, f"/api/analyses/{again['id']}", finished)
    assert second["items"][0]["cached"]
    assert second["items"][0]["summary"]["J"] == first["items"][0]["summary"]["J"]
    other = create(client, **body, sampled={**SMALL, "seed": 8}).json()
    assert other["forward_passes"] > 0


def test_an_image_set_gives_the_curve_over_its_images_and_per_class(
    client: TestClient, demo: str
) -> None:
    body = {"model_id": demo, "grid": "4x4", "mode": "sampled", "sampled": SMALL}
    analysis = run(client, **body, dataset_id=digits_set(client), dataset_pick="per_class",
                   dataset_k=1)  # fmt: skip
    assert analysis["status"] == "done", analysis["error"]
    assert len(analysis["items"]) == 10
    summary = analysis["summary"]
    assert summary["images"] == 10 and len(summary["J"]) == len(summary["J_se"]) == 4
    assert np.mean(summary["J"]) == pytest.approx(1.0)
    assert set(summary["by_label"]) == {str(d) for d in range(10)}
    per_class = client.get(f"/api/analyses/{analysis['id']}/figures/curve?by_label=true").json()
    assert sum("class" in str(t.get("meta")) for t in per_class["data"]) == 10
    assert all(v["images"] == 1 for v in summary["by_label"].values())
    # picked images are not listed among the workspace's own
    assert all(i["name"] != "3/0000.png" for i in client.get("/api/images").json()["data"])


def test_an_exact_analysis_over_the_first_images_of_a_set(client: TestClient, demo: str) -> None:
    analysis = run(client, model_id=demo, grid="2x2", dataset_id=digits_set(client),
                   dataset_pick="first", dataset_k=3)  # fmt: skip
    assert analysis["status"] == "done" and len(analysis["items"]) == 3
    # the null reference: the curve of each image's values shuffled, averaged over images
    ref = analysis["summary"]["reference"]
    assert len(ref["mean"]) == len(analysis["summary"]["J"]) == 3
    assert all(lo <= hi for lo, hi in zip(ref["lo"], ref["hi"], strict=True))
    item_refs = [i["summary"]["reference"]["mean"] for i in analysis["items"]]
    assert ref["mean"] == pytest.approx(np.mean(item_refs, axis=0))
    curve = client.get(f"/api/analyses/{analysis['id']}/figures/curve").json()
    assert any("null reference" in (t.get("name") or "") for t in curve["data"])
    again = create(client, model_id=demo, grid="2x2", dataset_id=digits_set(client),
                   dataset_pick="first", dataset_k=3).json()  # fmt: skip
    assert [i["image_id"] for i in again["items"]] == [i["image_id"] for i in analysis["items"]]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"grid": "8x8"}, 400, "sampled analysis"),  # 64 players exact
        ({"grid": "16x16", "mode": "sampled", "players": [0, 1]}, 400, "every patch"),
        ({"grid": "16x16", "mode": "sampled", "sampled": {"contexts": 5000}}, 413, "forward"),
        ({"grid": "4x4", "mode": "sampled", "sampled": {"orders": [15]}}, 400, "orders"),
        ({"grid": "4x4", "sampled": {"contexts": 2}}, 400, "sampled analyses only"),
        ({"grid": "4x4", "image_ids": []}, 400, "at least one image"),
    ],
)
def test_bad_sampled_requests_are_refused_with_a_sentence(
    client: TestClient, demo: str, body: dict[str, Any], status: int, words: str
) -> None:
    request = {"model_id": demo, "image_ids": [sample_image_id(client, "3")], **body}
    response = create(client, **request)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert not [a for a in client.get("/api/analyses").json()["data"]]


def test_the_estimate_is_the_cost_of_the_request_and_creates_nothing(
    client: TestClient, demo: str
) -> None:
    body = {"model_id": demo, "grid": "16x16", "mode": "sampled", "dataset_pick": "per_class",
            "dataset_id": digits_set(client), "dataset_k": 2,
            "sampled": {"contexts": 8, "hybrid": {}}}  # fmt: skip
    cost = client.post("/api/analyses/estimate", json=body).json()
    assert cost["images"] == 20 and len(cost["orders"]) == 13 and cost["pairs"] == [2610, 400]
    assert cost["passes_per_image"] == pytest.approx(312_730, rel=1e-3)  # bench/README: 310,827
    assert cost["forward_passes"] == 20 * cost["passes_per_image"]
    assert client.get("/api/analyses").json()["count"] == 0
    bad = client.post("/api/analyses/estimate", json={**body, "players": [1, 2]})
    assert bad.status_code == 400 and "every patch" in bad.json()["detail"]


def test_an_and_or_split_through_the_api_is_faithful_and_sparser(
    client: TestClient, demo: str
) -> None:
    image = sample_image_id(client, "7")
    body = {"model_id": demo, "image_ids": [image], "grid": "3x3", "baseline": "zero"}
    analysis = run(client, **body, and_or={"steps": 3000, "noise": True})
    assert analysis["status"] == "done", analysis["error"]
    item = analysis["items"][0]
    a = item["summary"]["and_or"]
    assert a["residual"] < 1e-9 and a["loss"] <= a["loss_and_only"] + 1e-9
    assert 0 <= a["bound"] <= a["loss"] + 1e-9 and a["polished"]  # n ≤ 10: the exact LP
    assert 0 < a["q_max"] <= a["q_bound"] + 1e-12
    assert "all non-empty AND and OR terms" in a["salient_rule"]
    base = f"/api/analyses/{analysis['id']}/items/{item['id']}"
    npz = np.load(io.BytesIO(client.get(f"{base}/export.npz").content))
    # faithfulness: v(T) − q_T = Σ_{S⊆T} I_and(S) + Σ_{S∩T≠∅} I_or(S) for every T
    v, i_and, i_or, q = (npz[k] for k in ("v", "and_interactions", "or_interactions", "or_noise"))
    masks = np.arange(v.size)
    for t in range(v.size):
        subsets = (masks & t) == masks
        meets = (masks & t) != 0
        assert v[t] - q[t] == pytest.approx(i_and[subsets].sum() + i_or[meets].sum(), abs=1e-9)
    split = client.get(f"{base}/and_or", params={"tau": 0.05, "top_k": 5}).json()
    peak = max(np.abs(i_and[1:]).max(), np.abs(i_or[1:]).max())
    assert split["and"]["total"] == int((np.abs(i_and[1:]) >= 0.05 * peak).sum())
    assert split["or"]["total"] == int((np.abs(i_or[1:]) >= 0.05 * peak).sum())
    assert split["and"]["sum_abs"] + split["or"]["sum_abs"] == pytest.approx(a["loss"])
    assert split["and_only"]["sum_abs"] == pytest.approx(a["loss_and_only"])
    assert all(row["strength"] >= 0.05 for row in split["and"]["top"])
    exact_only = run(client, **{**body, "grid": "2x2"})
    plain = f"/api/analyses/{exact_only['id']}/items/{exact_only['items'][0]['id']}/and_or"
    assert client.get(plain).status_code == 404
    too_many = create(client, **{**body, "grid": "5x4"}, and_or={"steps": 10})
    assert too_many.status_code == 400 and "at most 16 players" in too_many.json()["detail"]


def torch_demo(client: TestClient) -> str:
    models = client.get("/api/models").json()["data"]
    return next(m["id"] for m in models if m["name"].endswith("(PyTorch weights, seed 0)"))


def test_a_learned_baseline_makes_the_interactions_sparser_and_is_what_was_analysed(
    client: TestClient, demo: str
) -> None:
    image = sample_image_id(client, "4")
    body = {"model_id": torch_demo(client), "image_ids": [image], "grid": "3x3",
            "baseline": "learned", "learned_baseline": {"radius": 0.5, "steps": 25}}  # fmt: skip
    analysis = run(client, **body)
    assert analysis["status"] == "done", analysis["error"]
    item = analysis["items"][0]
    learned = item["summary"]["learned_baseline"]
    assert learned["loss_after"] <= learned["loss_before"] and len(learned["history"]) == 26
    assert learned["start"] == "mean" and learned["steps"] == 25
    # the analysis ran with the learned baseline: its Σ_{S≠∅}|I(S)| is the learned loss
    base = f"/api/analyses/{analysis['id']}/items/{item['id']}"
    table = np.load(io.BytesIO(client.get(f"{base}/export.npz").content))["interactions"]
    assert np.abs(table[1:]).sum() == pytest.approx(learned["loss_after"], rel=1e-4)
    again = create(client, **body).json()
    assert again["forward_passes"] == 0  # the same request: the stored table and baseline
    onnx = create(client, **{**body, "model_id": demo})
    assert onnx.status_code == 400 and "gradients" in onnx.json()["detail"]
    big = create(client, **{**body, "grid": "4x4"})
    assert big.status_code == 400 and "at most 12 players" in big.json()["detail"]


class UnanimityNet(torch.nn.Module):
    """Reads one pixel of each patch of a 4×4 grid on a 16×16 input: on a white image with
    the zero baseline, its logit 0 is the unanimity game ``2·[0,1] + 3·[1,2,5] −
    1.5·[5,6,9,10]`` over the patches present (logit 1 is 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x[:, 0, ::4, ::4].reshape(x.shape[0], 16)
        v = 2.0 * p[:, 0] * p[:, 1] + 3.0 * p[:, 1] * p[:, 2] * p[:, 5]
        v = v - 1.5 * p[:, 5] * p[:, 6] * p[:, 9] * p[:, 10]
        return torch.stack([v, torch.zeros_like(v)], dim=1)


UNANIMITY = ([[0, 1], [1, 2, 5], [5, 6, 9, 10]], [2.0, 3.0, -1.5])


def test_a_unanimity_game_comes_back_within_its_standard_errors(
    client: TestClient, tmp_path: Path
) -> None:
    from conceptlens.games import UnanimityGame
    from tests.backend.conftest import png_bytes

    path = tmp_path / "unanimity.pt"
    torch.jit.script(UnanimityNet()).save(str(path))
    upload = client.post("/api/models", files={"file": ("unanimity.pt", path.read_bytes())},
                         data={"input_size": "16x16", "channels": "1"})  # fmt: skip
    assert upload.status_code == 201, upload.text
    model = wait_for(client, f"/api/models/{upload.json()['id']}",
                     lambda m: m["status"] in ("ready", "failed"))  # fmt: skip
    assert model["status"] == "ready", model["error"]
    white = client.post("/api/images", files=[("files", ("white.png", png_bytes(color=255)))])
    orders = [0, 3, 7, 11, 14]
    spec = {"orders": orders, "radius": None, "contexts": 40, "seed": 3}
    analysis = run(client, model_id=model["id"], image_ids=[white.json()["data"][0]["id"]],
                   grid="4x4", baseline="zero", target=0, output="logit", mode="sampled",
                   sampled=spec)  # fmt: skip
    assert analysis["status"] == "done", analysis["error"]
    stored = from_arrays(dict(np.load(io.BytesIO(client.get(
        export(analysis, analysis["items"][0])).content))))  # fmt: skip
    (part,) = stored.values()
    assert len(part.pairs) == 120 and part.orders.tolist() == orders
    exact = UnanimityGame(16, *UNANIMITY).exact_multi_order(part.pairs)[orders]
    noisy = part.se > 1e-9
    z = (part.mean - exact)[noisy] / part.se[noisy]
    assert noisy.sum() >= 20  # pairs inside a term, at the sampled orders; the rest are 0
    assert np.abs(z).max() < 5 and 0.55 < np.abs(z).mean() < 1.05  # E|Z| = 0.80
    np.testing.assert_allclose(part.mean[[0, -1]], exact[[0, -1]], atol=1e-6)  # m = 0, n − 2
    # cells whose samples were all equal: pairs outside every term (exactly 0), or, rarely,
    # a term whose other players no context happened to hold (P ≈ 0.26 for one cell here)
    missed = ~noisy & (np.abs(part.mean - exact) > 1e-6)
    assert missed.sum() <= 3 and np.all(part.mean[missed] == 0)


def test_a_cancelled_then_retried_sampled_analysis_gives_the_uninterrupted_numbers(
    client: TestClient, demo: str, service: dict[str, Any], tmp_path: Path
) -> None:
    image = sample_image_id(client, "8")
    body = {"model_id": demo, "image_ids": [image], "grid": "8x8", "baseline": "zero",
            "mode": "sampled", "sampled": {"contexts": 40, "seed": 11}}  # fmt: skip
    created = create(client, **body).json()
    path = f"/api/analyses/{created['id']}"
    wait_for(client, path, lambda a: a["progress_done"] > 0 or finished(a))
    cancelled = client.post(f"{path}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert client.post(f"{path}/retry").status_code == 200
    analysis = wait_for(client, path, finished, timeout=300)
    assert analysis["status"] == "done", analysis["error"]
    item = analysis["items"][0]
    assert analysis["progress_done"] == item["summary"]["passes"]
    stored = from_arrays(dict(np.load(io.BytesIO(client.get(export(analysis, item)).content))))
    with session_scope() as s:
        params = s.get_one(Analysis, analysis["id"]).params
    # every chunk counted once: the same samples as one uninterrupted run of the plan
    for got, want in zip(stored.values(), engine_run(service, demo, image, params, tmp_path),
                         strict=True):  # fmt: skip
        np.testing.assert_array_equal(got.replicate_count, want.replicate_count)
        np.testing.assert_allclose(got.mean, want.mean, rtol=1e-4, atol=1e-5)
