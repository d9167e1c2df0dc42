"""Schemathesis over the whole OpenAPI document, in-process: no input makes a 5xx, and every
response matches what the document says (status, content type, schema).

Path parameters get real ids (an analysis with its item and share link, images, models, the
image set, a component job), so the generated queries and bodies reach the code behind the
404s; DELETE operations keep generated ids so the seeded resources survive. Bounded by
``max_examples`` and derandomised, so a CI run is repeatable and takes a minute or two.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from backend.api.deps import COOKIE
from backend.app import create_app
from tests.backend.conftest import sample_image_id, wait_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="session")
def seeds(finished: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
    """Real ids for every path parameter, and the workspace's credentials."""
    client = finished["client"]
    secret = client.cookies[COOKIE]
    digits = next(d for d in client.get("/api/datasets").json()["data"] if d["builtin"])
    share = client.get(f"/api/analyses/{finished['analysis']['id']}/shares").json()["data"][0]
    models = {m["name"]: m["id"] for m in client.get("/api/models").json()["data"]}
    body = {
        "model_id": models["Demo digits CNN (PyTorch weights, seed 0)"],
        "dataset_id": digits["id"], "layer": "relu2", "orders": [0, 1], "epochs": 1,
        "width": 8, "max_samples": 40,
    }  # fmt: skip
    created = client.post("/api/components", json=body)
    assert created.status_code == 201, created.text
    job = wait_for(
        client, f"/api/components/{created.json()['id']}", lambda j: j["status"] == "done"
    )
    job_token = client.post(f"/api/components/{job['id']}/shares").json()["token"]
    return {
        "auth": {"Authorization": f"Bearer {secret}"},
        "analysis_id": finished["analysis"]["id"],
        "item_id": finished["item"],
        "token": finished["token"],
        "share_id": share["id"],
        "image_id": sample_image_id(client, "3"),
        "model_id": service["demo_model_id"],
        "dataset_id": digits["id"],
        "job_id": job["id"],
        "job_token": job_token,
    }


# An app of its own (schemathesis' fixture-loaded schemas do not work on pytest 9): it reads
# its settings and database per request, so it serves the ``service`` fixture's data.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms(case: Any, seeds: dict[str, Any]) -> None:
    if case.method != "DELETE" and case.path_parameters:
        seed(case, seeds)
    case.call_and_validate(headers=seeds["auth"], checks=CHECKS)


FORMATS = itertools.cycle(["npz", "json", "csv", "xml"])


def seed(case: Any, seeds: dict[str, Any]) -> None:
    """Real ids in the path (a component analysis' share token on its own routes)."""
    params = case.path_parameters
    for name in params:
        if name in seeds:
            params[name] = seeds[name]
    if "token" in params and case.path.startswith("/api/shared-components/"):
        params["token"] = seeds["job_token"]
    if "fmt" in params:
        params["fmt"] = next(FORMATS)
