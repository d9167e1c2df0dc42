"""A finished analysis (with a baseline image) and its share link, made once per session:
the limits, privacy and fuzzing tests read it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.backend.conftest import new_client, sample_image_id, wait_for


@pytest.fixture(scope="session")
def finished(app: Any, service: dict[str, Any]) -> dict[str, Any]:
    """``client`` (its workspace), ``analysis``, ``item``, ``base`` (its result routes),
    ``token`` and ``shared`` (the same routes through the share link), ``image``."""
    client = new_client(app)
    image = sample_image_id(client, "3")
    body = {
        "model_id": service["demo_model_id"],
        "image_ids": [image],
        "grid": "2x3",
        "baseline_image_id": sample_image_id(client, "1"),
    }
    created = client.post("/api/analyses", json=body)
    assert created.status_code == 201, created.text
    analysis = wait_for(
        client, f"/api/analyses/{created.json()['id']}", lambda a: a["status"] == "done"
    )
    item = analysis["items"][0]["id"]
    token = client.post(f"/api/analyses/{analysis['id']}/shares").json()["token"]
    return {
        "client": client,
        "analysis": analysis,
        "item": item,
        "image": image,
        "base": f"/api/analyses/{analysis['id']}/items/{item}",
        "token": token,
        "shared": f"/api/shared/{token}/items/{item}",
    }
