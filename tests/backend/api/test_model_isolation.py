"""Uploaded models never run in the service's own process, embedded mode included.

Every way this process could run model code is made to fail here; validation, a chunked
analysis and a component job still finish, because they run in the workers' sandboxes.
(Before the sandbox, the embedded worker threads loaded models in the web process, and each
of these failed.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
import torch
from fastapi.testclient import TestClient

import conceptlens.models.loaders as loaders
from tests.backend.api.test_components import ended, ids, small_job
from tests.backend.conftest import sample_image_id, wait_for


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a model was loaded in the service process")


@pytest.fixture
def no_models_here(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(loaders, "load_model", _refuse)
    monkeypatch.setattr(loaders, "onnx_session", _refuse)
    monkeypatch.setattr(torch.jit, "load", _refuse)
    monkeypatch.setattr(onnxruntime, "InferenceSession", _refuse)
    yield


def test_validation_runs_outside_this_process(
    client: TestClient, demo_dir: Path, no_models_here: None
) -> None:
    for name in ("digit_cnn.onnx", "digit_cnn.torchscript.pt"):
        data = (demo_dir / name).read_bytes()
        form = {"input_size": "16x16", "channels": "1"} if "torchscript" in name else {}
        created = client.post("/api/models", files={"file": (name, data)}, data=form)
        assert created.status_code == 201, created.text
        model = wait_for(
            client,
            f"/api/models/{created.json()['id']}",
            lambda m: m["status"] in ("ready", "failed"),
        )
        assert model["status"] == "ready", model["error"]
        assert model["num_classes"] == 10 and model["seconds_per_pass"] > 0


def test_chunked_analysis_and_components_run_outside_this_process(
    client: TestClient, service: dict[str, Any], no_models_here: None
) -> None:
    body = {
        "model_id": service["demo_model_id"], "image_ids": [sample_image_id(client, "5")],
        "grid": "4x4", "baseline": "mean",
    }  # fmt: skip
    created = client.post("/api/analyses", json=body)
    assert created.status_code == 201, created.text
    analysis = wait_for(
        client,
        f"/api/analyses/{created.json()['id']}",
        lambda a: a["status"] in ("done", "failed", "cancelled"),
        timeout=300,
    )
    assert analysis["status"] == "done", analysis["error"]
    job = client.post("/api/components", json=small_job(ids(client)))
    assert job.status_code == 201, job.text
    done = wait_for(client, f"/api/components/{job.json()['id']}", ended, timeout=300)
    assert done["status"] == "done", done["error"]
