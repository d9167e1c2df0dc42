"""The OpenAPI document tells the truth, and public bodies hide internal details."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient


def operations(app: Any) -> list[tuple[str, str, dict[str, Any]]]:
    paths = TestClient(app).get("/openapi.json").json()["paths"]
    return [(path, method, op) for path, ops in paths.items() for method, op in ops.items()]


def test_every_path_parameter_is_declared(app: Any) -> None:
    missing = []
    for path, method, op in operations(app):
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        wanted = set(re.findall(r"{(\w+)}", path))
        if declared != wanted:
            missing.append(f"{method.upper()} {path}: {sorted(wanted - declared)}")
    assert missing == []


def test_every_api_operation_documents_its_errors(app: Any) -> None:
    for path, method, op in operations(app):
        if not path.startswith("/api/"):
            continue
        for code in ("400", "401", "403", "404", "409", "413", "415", "422"):
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("ErrorPublic"), (method, path, code)


def test_timestamps_carry_their_utc_offset(client: TestClient) -> None:
    for what in ("models", "images", "datasets"):
        for row in client.get(f"/api/{what}").json()["data"]:
            assert row["created_at"].endswith(("Z", "+00:00")), (what, row["created_at"])


def test_share_links_show_no_blob_keys(
    finished: dict[str, Any], app: Any, service: dict[str, Any]
) -> None:
    anonymous = TestClient(app)
    shared = anonymous.get(f"/api/shared/{finished['token']}")
    assert shared.status_code == 200
    assert shared.json()["params"]["baseline"] == "mean"  # the params are there, keys are not
    blob_keys = re.findall(r"\b[0-9a-f]{64}\b", shared.text)
    assert blob_keys == [] and "_key" not in shared.text
    owner = finished["client"].get(f"/api/analyses/{finished['analysis']['id']}")
    assert "_key" not in owner.text
