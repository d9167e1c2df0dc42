"""Chunked images: each chunk's forward time is recorded, the item's context (rows, blob
reads, image decode, baseline) is built once per worker process, not once per chunk, and
a poll sums the chunks' progress without loading them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.backend.api.test_analysis_faults import analyse, digit_png, finished, upload_images
from tests.backend.conftest import sample_image_id, wait_for
from worker import jobs


def test_chunks_share_one_context_and_record_their_time(
    client: TestClient, service: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    original = jobs.ItemContext.__init__

    def counting(self: jobs.ItemContext, s: Any, item: Any) -> None:
        built.append(item.id)
        original(self, s, item)

    monkeypatch.setattr(jobs.ItemContext, "__init__", counting)
    created = analyse(client, str(service["demo_model_id"]), upload_images(client, digit_png(21)))
    done = wait_for(client, f"/api/analyses/{created['id']}", finished, timeout=300)
    assert done["status"] == "done", done["error"]
    item = done["items"][0]
    assert built == [item["id"]]  # 16 chunks, one context (it was built for every chunk)
    assert item["summary"]["forward_seconds"] > 0  # the chunks' time (0.0 before)


def test_polling_a_chunked_analysis_sums_its_chunks_in_the_database(
    client: TestClient, service: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analysis's page (polled every 0.5 s while it runs), its shared page and the list
    loaded every chunk row of every item only to sum their progress: 1,280 rows made a
    poll 3–4× as long. The chunks' progress is now one aggregate query, and no chunk row
    is loaded."""
    from datetime import timedelta

    from sqlalchemy import event

    from backend.api.routes import analyses
    from backend.db.base import utcnow
    from backend.db.models import AnalysisItem, Chunk
    from backend.db.session import get_engine, session_scope

    monkeypatch.setattr(analyses, "enqueue", lambda *args: None)  # nothing runs it
    images = [sample_image_id(client, label) for label in "012"]
    body = {"model_id": service["demo_model_id"], "image_ids": images, "grid": "2x2"}
    created = client.post("/api/analyses", json=body).json()
    path = f"/api/analyses/{created['id']}"
    item_ids = [item["id"] for item in created["items"]]
    with session_scope() as s:  # one image done, one in 8 chunks (5 done), one unchunked
        done, chunked, plain = (s.get_one(AnalysisItem, i) for i in item_ids)
        done.status = "done"
        for item in (chunked, plain):
            item.status, item.lease_owner = "running", "a test"
            item.lease_expires_at = utcnow() + timedelta(hours=1)  # no sweep takes them
        plain.progress_done = 3
        chunked.chunks_total = 8
        for c in range(8):
            chunked.chunks.append(Chunk(start=2 * c, stop=2 * c + 2, done=2 if c < 5 else 0))
        totals = done.progress_total, chunked.progress_total
    token = client.post(f"{path}/shares").json()["token"]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(get_engine(), "before_cursor_execute", seen)
    try:
        polled = client.get(path).json()
        rows = client.get("/api/analyses").json()["data"]
        listed = next(a for a in rows if a["id"] == created["id"])
        shared = client.get(f"/api/shared/{token}").json()
    finally:
        event.remove(get_engine(), "before_cursor_execute", seen)
        with session_scope() as s:
            for i in item_ids:
                s.get_one(AnalysisItem, i).status = "cancelled"
    for shown in (polled, listed, shared):
        progress = [item["progress_done"] for item in shown["items"]]
        assert progress == [totals[0], 10, 3]  # done: its total; chunked: 5 × 2; plain
        assert shown["progress_done"] == totals[0] + 13
    assert totals[1] == 16
    from_chunks = [q for q in statements if "FROM chunks" in q]
    assert from_chunks and all("sum(chunks.done)" in q for q in from_chunks)
