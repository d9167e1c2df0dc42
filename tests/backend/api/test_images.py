"""Image uploads, samples, previews; refusals leave nothing behind."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.backend.conftest import png_bytes


def count(client: TestClient, service: dict[str, Any]) -> tuple[int, int]:
    blobs = sum(1 for p in Path(service["data"], "blobs").rglob("*") if p.is_file())
    return len(client.get("/api/images").json()["data"]), blobs


def test_samples_are_built_in(client: TestClient) -> None:
    images = client.get("/api/images").json()["data"]
    labels = sorted(i["label"] for i in images if i["builtin"])
    assert labels == [str(d) for d in range(10)]


def test_upload_many_and_fetch(client: TestClient) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (20, 12), (10, 200, 30)).save(jpeg, format="JPEG")
    files = [("files", ("a.png", png_bytes())), ("files", ("b.jpg", jpeg.getvalue()))]
    response = client.post("/api/images", files=files)
    assert response.status_code == 201, response.text
    a, b = response.json()["data"]
    assert (a["content_type"], a["width"]) == ("image/png", 16)
    assert (b["content_type"], b["width"], b["height"]) == ("image/jpeg", 20, 12)
    assert client.get(f"/api/images/{a['id']}/file").content == png_bytes()
    models = client.get("/api/models").json()["data"]
    demo = next(m for m in models if m["builtin"])
    preview = client.get(
        f"/api/images/{b['id']}/preview", params={"model_id": demo["id"], "scale": 4}
    )
    with Image.open(io.BytesIO(preview.content)) as img:
        assert img.size == (64, 64) and img.mode == "L"


def truncated_png() -> bytes:
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="PNG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def gif_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="GIF")
    return buf.getvalue()


@pytest.mark.parametrize(
    "data,status,words",
    [
        (b"", 400, "empty"),
        (b"definitely not an image", 415, "not an image"),
        (gif_bytes(), 415, "PNG or JPEG"),
        (truncated_png(), 400, "damaged"),
    ],
)
def test_bad_images_are_refused_all_or_nothing(
    client: TestClient, service: dict[str, Any], data: bytes, status: int, words: str
) -> None:
    before = count(client, service)
    files = [("files", ("good.png", png_bytes(color=7))), ("files", ("bad.png", data))]
    response = client.post("/api/images", files=files)
    assert response.status_code == status
    assert "bad.png" in response.json()["detail"] and words in response.json()["detail"]
    assert count(client, service) == before


def test_pixel_cap(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.config import get_settings

    monkeypatch.setattr(get_settings(), "max_image_pixels", 100)
    response = client.post("/api/images", files=[("files", ("x.png", png_bytes((20, 20))))])
    assert response.status_code == 413 and "pixels" in response.json()["detail"]


def test_isolation_and_delete(client: TestClient, other_client: TestClient) -> None:
    image = client.post("/api/images", files=[("files", ("x.png", png_bytes()))]).json()["data"][0]
    assert other_client.get(f"/api/images/{image['id']}").status_code == 404
    assert other_client.get(f"/api/images/{image['id']}/file").status_code == 404
    assert client.delete(f"/api/images/{image['id']}").status_code == 204
    sample = next(i for i in client.get("/api/images").json()["data"] if i["builtin"])
    assert client.delete(f"/api/images/{sample['id']}").status_code == 403
