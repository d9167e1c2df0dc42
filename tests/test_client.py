"""``conceptlens.Client`` against a real server: uvicorn on a free port (``live``) serving the
app on the embedded default (the backend tests' ``service`` and ``app`` fixtures: SQLite in a
temp folder, the in-process worker, the built-in demo model)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conceptlens import Client, ClientError
from conceptlens.transforms import harsanyi
from tests.backend import conftest as backend
from tests.backend.api.live import live

ROOT = Path(__file__).resolve().parents[1]

# The backend tests' session fixtures, shared with them when both run in one session.
service = backend.service
app = backend.app


@pytest.fixture(scope="module")
def url(app: Any) -> Iterator[str]:
    with live(app) as (host, port):
        yield f"http://{host}:{port}"


@pytest.fixture(scope="module")
def analysed(url: str, demo_dir: Path) -> dict[str, Any]:
    """A fresh workspace with the demo ONNX model and one sample uploaded, analysed on 2x2."""
    client = Client(url)
    model = client.upload_model(demo_dir / "digit_cnn.onnx", name="client demo")
    assert model["status"] in ("pending", "validating", "ready")
    ready = client.wait_model(model["id"], timeout=120)
    sample = sorted((demo_dir / "samples").glob("*.png"))[0]
    [image] = client.upload_images(sample)
    analysis = client.analyze(ready["id"], [image["id"]], grid="2x2", baseline="zero")
    assert analysis["forward_passes"] in (0, 16)
    done = client.wait(analysis["id"], progress=True, timeout=120)
    return {"client": client, "model": ready, "image": image, "analysis": done}


def test_a_new_workspace_and_its_uploads(url: str, analysed: dict[str, Any]) -> None:
    client = analysed["client"]
    assert isinstance(client.secret, str) and len(client.secret) > 16
    assert client.workspace_id
    model_ids = {m["id"] for m in client.models()}
    assert analysed["model"]["id"] in model_ids
    assert analysed["image"]["id"] in {i["id"] for i in client.images()}
    assert analysed["model"]["status"] == "ready"
    assert analysed["model"]["name"] == "client demo"
    # The same workspace, reached again with its secret; another one does not see it.
    again = Client(url, secret=client.secret)
    assert analysed["model"]["id"] in {m["id"] for m in again.models()}
    assert analysed["model"]["id"] not in {m["id"] for m in Client(url).models()}


def test_the_interactions_are_the_harsanyi_transform_of_v(analysed: dict[str, Any]) -> None:
    client, analysis = analysed["client"], analysed["analysis"]
    assert analysis["status"] == "done" and analysis["n_players"] == 4
    arrays = client.interactions(analysis["id"])
    assert client.interactions(analysis["id"], analysis["items"][0]["id"]).keys() == arrays.keys()
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    v, interactions = arrays["v"], arrays["interactions"]
    assert v.shape == interactions.shape == (2**4,)
    # Efficiency: I(∅) = v(∅), and the other interactions sum to v(N) − v(∅).
    assert interactions[0] == pytest.approx(v[0])
    assert interactions[1:].sum() == pytest.approx(v[-1] - v[0], abs=1e-6)
    np.testing.assert_allclose(interactions, harsanyi(v.astype(np.float64)), atol=1e-6)
    assert v[-1] != v[0]  # not a trivially constant game


def test_the_curve_is_the_summary_s(analysed: dict[str, Any]) -> None:
    client, analysis = analysed["client"], analysed["analysis"]
    curve = client.curve(analysis["id"])
    n = analysis["n_players"]
    assert curve["J"].shape == curve["F"].shape == (n - 1,)
    np.testing.assert_allclose(curve["J"], analysis["summary"]["J"])
    np.testing.assert_allclose(curve["F"], analysis["summary"]["F"])
    np.testing.assert_array_equal(curve["orders"], np.arange(n - 1))


def test_refusals_raise_client_error_with_the_server_s_detail(
    analysed: dict[str, Any], url: str
) -> None:
    client = analysed["client"]
    with pytest.raises(ClientError) as refused:
        client.analyze("no-such-model", [analysed["image"]["id"]], grid="2x2")
    assert refused.value.status == 404
    assert refused.value.message and "{" not in refused.value.message
    with pytest.raises(ClientError) as invalid:
        client.analyze(analysed["model"]["id"], [analysed["image"]["id"]], grid="two")
    assert invalid.value.status == 422
    assert "grid" in invalid.value.message
    with pytest.raises(ClientError) as missing:
        client.wait_model("no-such-model", timeout=5)
    assert missing.value.status == 404
    with pytest.raises(ClientError) as stranger:
        Client(url, secret="not-a-workspace").models()
    assert stranger.value.status == 401
    assert "workspace" in stranger.value.message.lower()


def test_a_refused_upload_raises(analysed: dict[str, Any], tmp_path: Path) -> None:
    """A file that is no model is refused by the upload's checks, with the reason."""
    client = analysed["client"]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ClientError) as refused:
        client.upload_model(junk)
    assert refused.value.status is not None and 400 <= refused.value.status < 500
    assert refused.value.message


def test_the_client_imports_neither_backend_nor_worker() -> None:
    code = (
        "import sys, conceptlens\n"
        "conceptlens.Client, conceptlens.ClientError\n"
        "import conceptlens.client\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "assert 'backend' not in loaded and 'worker' not in loaded, sorted(loaded)\n"
        "assert 'torch' not in loaded and 'httpx' not in loaded and 'requests' not in loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
