"""Security headers on every response; the workspace cookie is ``Secure`` over HTTPS."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.config import get_settings


@pytest.mark.parametrize("path", ["/", "/s/sometoken", "/api/workspace", "/api/nope", "/healthz"])
def test_security_headers(client: TestClient, path: str) -> None:
    headers = client.get(path).headers
    csp = headers["content-security-policy"]
    for rule in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
        assert rule in csp
    assert "object-src 'none'" in csp and "base-uri 'none'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"


def cookie_of(client: TestClient, **headers: str) -> str:
    response = client.post("/api/workspace", headers=headers)
    assert response.status_code == 201
    return response.headers["set-cookie"]


def test_the_cookie_is_secure_over_https(app: Any) -> None:
    assert "secure" in cookie_of(TestClient(app, base_url="https://testserver")).lower()
    plain = cookie_of(TestClient(app))
    assert "secure" not in plain.lower() and "httponly" in plain.lower()


def test_forwarded_proto_counts_only_when_trusted(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    behind_proxy = TestClient(app)
    assert "secure" not in cookie_of(behind_proxy, **{"X-Forwarded-Proto": "https"}).lower()
    monkeypatch.setattr(get_settings(), "trust_forwarded_headers", True)
    assert "secure" in cookie_of(behind_proxy, **{"X-Forwarded-Proto": "https"}).lower()
    assert "secure" not in cookie_of(behind_proxy, **{"X-Forwarded-Proto": "http"}).lower()


def test_the_api_console_may_load_its_scripts(client: TestClient) -> None:
    csp = client.get("/docs").headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in csp and "frame-ancestors 'none'" in csp
    assert "cdn.jsdelivr.net" not in client.get("/").headers["content-security-policy"]
