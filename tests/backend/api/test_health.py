"""Health and readiness; OpenAPI and the page."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_health_ready_docs_and_page(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready == {"status": "ok", "database": "ok", "broker": "ok"}
    assert "/api/analyses" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "ConceptLens" in page.text
    assert client.get("/vendor/plotly.min.js").headers["content-type"].startswith("text/javascript")
