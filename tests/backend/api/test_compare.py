"""Comparing two analyses and the data-set view of one, through the API (owner and share
links), on small grids of the built-in demo and digits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import sample_image_id, wait_for


@pytest.fixture
def demo(service: dict[str, Any]) -> str:
    return str(service["demo_model_id"])


def run(client: TestClient, **body: Any) -> dict[str, Any]:
    created = client.post("/api/analyses", json=body)
    assert created.status_code == 201, created.text
    done = wait_for(
        client, f"/api/analyses/{created.json()['id']}", lambda a: a["status"] == "done"
    )
    return done


def test_compare_two_grids_and_baselines_on_the_same_image(
    client: TestClient, other_client: TestClient, app: Any, demo: str
) -> None:
    image = sample_image_id(client, "3")
    a = run(client, model_id=demo, image_ids=[image], grid="2x2", baseline="zero")
    b = run(client, model_id=demo, image_ids=[image], grid="3x3", baseline="mean")
    url = f"/api/analyses/{a['id']}/compare"
    body = client.get(url, params={"with": b["id"], "tau": 0.05}).json()
    assert (body["a"]["id"], body["b"]["id"]) == (a["id"], b["id"])
    assert body["image_id"] == image and len(body["images"]) == 1
    curves = [t for t in body["figures"]["curve"]["data"] if t["name"].endswith("J(m)")]
    assert [len(t["x"]) for t in curves] == [3, 8]  # orders 0..n-2 as m/n
    assert curves[1]["y"] == pytest.approx(b["summary"]["J"])

    sa, sb = body["salient"]["a"], body["salient"]["b"]
    assert (sa["grid_rows"], sb["grid_rows"]) == (2, 3)
    # the sets are the strongest salient ones the item route lists
    listed = client.get(
        f"/api/analyses/{b['id']}/items/{b['items'][0]['id']}/interactions",
        params={"tau": 0.05, "top_k": 12},
    ).json()
    assert [s["cells"] for s in sb["sets"]] == [r["players"] for r in listed["data"]]
    assert sb["cells"] == sorted({c for s in sb["sets"] for c in s["cells"]})
    # common patches: every 3x3 cell touches a 2x2 cell; in common only where both are salient
    for cell in sb["common"]:
        r, c = divmod(cell, 3)
        assert any(
            r * 2 < (r2 + 1) * 3 and r2 * 3 < (r + 1) * 2 and c * 2 < (c2 + 1) * 3
            and c2 * 3 < (c + 1) * 2
            for r2, c2 in (divmod(x, 2) for x in sa["cells"])
        )  # fmt: skip
    assert set(sa["common"]) <= set(sa["cells"]) and set(sb["common"]) <= set(sb["cells"])

    # refusals: another workspace, an unknown image, no 'with'
    assert other_client.get(url, params={"with": b["id"]}).status_code == 404
    assert client.get(url, params={"with": "f" * 32}).status_code == 404
    missing = client.get(url, params={"with": b["id"], "image": "0" * 32})
    assert missing.status_code == 404 and "both analyses" in missing.json()["detail"]
    assert client.get(url).status_code == 422

    # through share links: each analysis by its own token
    ta = client.post(f"/api/analyses/{a['id']}/shares").json()["token"]
    tb = client.post(f"/api/analyses/{b['id']}/shares").json()["token"]
    anonymous = TestClient(app)
    shared = anonymous.get(f"/api/shared/{ta}/compare", params={"with": tb, "tau": 0.05})
    assert shared.status_code == 200 and shared.json()["salient"] == body["salient"]
    refused = anonymous.get(f"/api/shared/{ta}/compare", params={"with": b["id"]})
    assert refused.status_code == 404 and "share link" in refused.json()["detail"]


def test_compare_without_common_images_still_overlays_the_curves(
    client: TestClient, demo: str
) -> None:
    a = run(client, model_id=demo, image_ids=[sample_image_id(client, "1")], grid="2x2")
    b = run(client, model_id=demo, image_ids=[sample_image_id(client, "2")], grid="2x2")
    body = client.get(f"/api/analyses/{a['id']}/compare", params={"with": b["id"]}).json()
    assert body["salient"] is None and body["images"] == [] and "no finished image" in body["note"]
    assert len(body["figures"]["curve"]["data"]) >= 2


def test_dataset_view_by_true_and_predicted_label(client: TestClient, demo: str) -> None:
    digits = next(d["id"] for d in client.get("/api/datasets").json()["data"] if d["builtin"])
    analysis = run(
        client, model_id=demo, dataset_id=digits, dataset_pick="per_class", dataset_k=1,
        grid="2x2", baseline="zero",
    )  # fmt: skip
    view = client.get(f"/api/analyses/{analysis['id']}/dataset").json()
    items = analysis["items"]
    assert view["images"] == len(items) == 10
    assert sorted(g["label"] for g in view["true"]) == [str(d) for d in range(10)]
    assert sum(g["images"] for g in view["predicted"]) == 10
    assert view["J"] == pytest.approx(analysis["summary"]["J"])
    # each image's deviation is the mean |J_image - J_set| over orders, largest first
    by_item = {i["id"]: np.array(i["summary"]["J"]) for i in items}
    for row in view["deviating"]:
        expected = np.abs(by_item[row["item_id"]] - np.array(view["J"])).mean()
        assert row["deviation"] == pytest.approx(expected)
    deviations = [r["deviation"] for r in view["deviating"]]
    assert deviations == sorted(deviations, reverse=True) and len(deviations) == 8
    # a predicted group's J is its images' mean strength per order over its mean
    group = view["predicted"][0]
    members = [i for i in items if str(i["summary"]["prediction"]) == group["label"]]
    strength = np.mean([i["summary"]["strength"] for i in members], axis=0)
    assert group["J"] == pytest.approx((strength / strength.mean()).tolist())
    assert set(view["figures"]) >= {"true_curve", "predicted_curve", "deviating"}

    one = run(client, model_id=demo, image_ids=[sample_image_id(client, "4")], grid="2x2")
    refused = client.get(f"/api/analyses/{one['id']}/dataset")
    assert refused.status_code == 409 and "at least two" in refused.json()["detail"]
