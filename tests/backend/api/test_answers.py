"""Figures and tables of a finished result are built once and then served as stored; an
unfinished analysis's curve is built on every request; exports stream."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from backend import answers, results
from backend.db.models import Analysis
from backend.db.session import get_sessionmaker
from tests.backend.conftest import sample_image_id, wait_for


def cache(service: dict[str, Any]) -> answers.Answers:
    return answers.answers_for(service["data"])


def j_curve(figure: dict[str, Any]) -> list[float]:
    return next(t["y"] for t in figure["data"] if t.get("name") == "J<sup>(m)</sup>")


def test_figures_of_a_finished_image_are_built_once(
    finished: dict[str, Any], service: dict[str, Any]
) -> None:
    client, base = finished["client"], finished["base"]
    tau = {"tau": 0.37}  # a τ no other test asks for
    before = cache(service).built
    first = client.get(f"{base}/figures", params=tau)
    assert first.status_code == 200 and cache(service).built == before + 1
    again = client.get(f"{base}/figures", params=tau)
    assert again.content == first.content and cache(service).built == before + 1
    assert "0.37" in again.json()["salient"]["layout"]["title"]["text"]
    assert first.headers["cache-control"] == "private, no-cache"
    revalidated = client.get(
        f"{base}/figures", params=tau, headers={"if-none-match": first.headers["etag"]}
    )
    assert revalidated.status_code == 304
    zipped = client.get(f"{base}/figures", params=tau, headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.content == first.content
    # the share link's answer is the same stored one
    assert client.get(f"{finished['shared']}/figures", params=tau).content == first.content
    assert cache(service).built == before + 1

    # a restart (a new process: an empty memory) finds the figures on disk
    answers._answers.clear()
    assert client.get(f"{base}/figures", params=tau).content == first.content
    assert cache(service).built == 0

    # tables too: each set of parameters once
    top = {"top_k": 3, "tau": 0.21}
    rows = client.get(f"{base}/interactions", params=top)
    assert client.get(f"{base}/interactions", params=top).content == rows.content
    assert cache(service).built == 1
    assert len(rows.json()["data"]) <= 3
    assert client.get(f"{base}/pair", params={"i": 0, "j": 0}).status_code == 400  # not kept
    assert client.get(f"{base}/pair", params={"i": 0, "j": 0}).status_code == 400


def test_the_curve_is_kept_only_once_the_analysis_is_done(
    client: TestClient, service: dict[str, Any]
) -> None:
    body = {
        "model_id": service["demo_model_id"],
        "image_ids": [sample_image_id(client, "3"), sample_image_id(client, "7")],
        "grid": "2x2",
    }
    created = client.post("/api/analyses", json=body).json()
    path = f"/api/analyses/{created['id']}"
    done = wait_for(client, path, lambda a: a["status"] == "done")
    curve = f"{path}/figures/curve"

    # pretend it still runs and that its curve moves: every request sees the current one
    session = get_sessionmaker()()
    row = session.get_one(Analysis, created["id"])
    final_summary = dict(row.summary or {})
    try:
        row.status = "running"
        for step in (1.0, 2.0):
            row.summary = {**final_summary, "J": [step] * len(final_summary["J"])}
            session.commit()
            before = cache(service).built
            drawn = client.get(curve).json()
            assert j_curve(drawn)[0] == step
            assert cache(service).built == before  # built, but not kept
    finally:
        row.status, row.summary = "done", final_summary
        session.commit()
        session.close()

    before = cache(service).built
    first = client.get(curve)
    assert j_curve(first.json())[0] == done["summary"]["J"][0]
    assert client.get(curve).content == first.content
    assert cache(service).built == before + 1


def test_exports_stream_and_match_the_stored_result(
    finished: dict[str, Any], service: dict[str, Any]
) -> None:
    client, base = finished["client"], finished["base"]
    npz = client.get(f"{base}/export.npz")
    arrays = dict(np.load(__import__("io").BytesIO(npz.content)))
    summary = client.get(f"/api/analyses/{finished['analysis']['id']}").json()["items"][0]
    for fmt, media in (("csv", "text/csv"), ("json", "application/json")):
        response = client.get(f"{base}/export.{fmt}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media)
        assert "content-length" not in response.headers  # streamed
        assert "attachment" in response.headers["content-disposition"]
        if fmt == "csv":
            assert response.text == results.to_csv(arrays)
        else:
            assert response.text == json.dumps(results.to_json(arrays, summary["summary"]))


def test_a_stored_answer_costs_no_chunk_rows(finished: dict[str, Any]) -> None:
    """Serving a kept answer loads the analysis and its items, never their chunks."""
    from sqlalchemy import event

    from backend.db.session import get_engine

    client, base = finished["client"], finished["base"]
    client.get(f"{base}/figures")  # built and kept
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]).lower())

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        for path in (f"{base}/figures", f"{finished['shared']}/figures"):
            statements.clear()
            assert client.get(path).status_code == 200
            assert statements and not [s for s in statements if "from chunks" in s], statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_kept_answers_are_served_before_routing_only_to_who_may_read_them(
    client: TestClient, other_client: TestClient, app: Any, service: dict[str, Any]
) -> None:
    body = {"model_id": service["demo_model_id"], "image_ids": [sample_image_id(client, "2")]}
    created = client.post("/api/analyses", json={**body, "grid": "2x2"}).json()
    done = wait_for(client, f"/api/analyses/{created['id']}", lambda a: a["status"] == "done")
    item = done["items"][0]["id"]
    owner_url = f"/api/analyses/{created['id']}/items/{item}/figures?tau=0.05"
    link = client.post(f"/api/analyses/{created['id']}/shares").json()
    shared_url = f"/api/shared/{link['token']}/items/{item}/figures?tau=0.05"

    first = client.get(owner_url)
    assert client.get(shared_url).content == first.content  # the routes kept both URLs
    fast = cache(service).fast
    again = client.get(owner_url)
    assert cache(service).fast == fast + 1 and again.content == first.content
    assert "content-security-policy" in again.headers  # inside the headers middleware
    assert again.headers["etag"] == first.headers["etag"]
    assert client.get(shared_url).status_code == 200 and cache(service).fast == fast + 2

    # the same URL for anyone else: what the routes say, not the kept answer
    assert other_client.get(owner_url).status_code == 404
    assert TestClient(app).get(owner_url).status_code == 401
    bearer = {"Authorization": "Bearer not-a-secret"}
    assert TestClient(app).get(owner_url, headers=bearer).status_code == 401
    assert cache(service).fast == fast + 2

    # a revoked link and a deleted analysis are gone at once
    assert client.delete(f"/api/shares/{link['id']}").status_code == 204
    assert client.get(shared_url).status_code == 404
    assert client.delete(f"/api/analyses/{created['id']}").status_code == 204
    assert client.get(owner_url).status_code == 404
    assert cache(service).fast == fast + 2
