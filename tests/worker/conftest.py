"""Worker tests that need the service: its fixtures (embedded default, temp SQLite)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from backend.db.models import AnalysisItem
from backend.db.session import session_scope
from tests.backend.conftest import app, new_client, sample_image_id, service  # noqa: F401


@pytest.fixture
def hold(
    app: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., tuple[str, list[str]]]]:
    """``hold(image_labels="01", **body)``: an analysis of the built-in sample digits with
    those labels, created through the API with its start not sent (nothing runs it, so a
    test drives the worker's functions itself); its id and its item ids by position. Left
    cancelled afterwards, so the embedded worker's sweep does not run it."""
    from backend.api.routes import analyses

    monkeypatch.setattr(analyses, "enqueue", lambda *args: None)
    client: TestClient = new_client(app)
    made: list[str] = []

    def make(image_labels: str = "0", **body: Any) -> tuple[str, list[str]]:
        images = [sample_image_id(client, label) for label in image_labels]
        body = {"model_id": _builtin(client, body), "image_ids": images, **body}
        created = client.post("/api/analyses", json=body)
        assert created.status_code == 201, created.text
        analysis = client.get(f"/api/analyses/{created.json()['id']}").json()
        made.append(analysis["id"])
        return analysis["id"], [item["id"] for item in analysis["items"]]

    yield make
    with session_scope() as s:
        s.execute(
            update(AnalysisItem)
            .where(AnalysisItem.analysis_id.in_(made))
            .values(status="cancelled", lease_owner=None, lease_expires_at=None)
        )


def _builtin(client: TestClient, body: dict[str, Any]) -> str:
    """``body``'s model, or the built-in ONNX demo model."""
    if "model_id" in body:
        return str(body.pop("model_id"))
    models = client.get("/api/models").json()["data"]
    return str(next(m["id"] for m in models if m["builtin"] and m["format"] == "onnx"))
