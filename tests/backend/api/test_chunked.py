"""Chunked images: each chunk's forward time is recorded, and the item's context (rows, blob
reads, image decode, baseline) is built once per worker process, not once per chunk."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.backend.api.test_analysis_faults import analyse, digit_png, finished, upload_images
from tests.backend.conftest import wait_for
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
