"""No request can exhaust the server: bodies, previews, image sets, decompression bombs and
component jobs are capped, and every refusal is a 4xx with a sentence."""

from __future__ import annotations

import io
import socket
import struct
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backend.config import get_settings
from backend.datasets import ImageLimits, Manifest, check_images
from backend.previews import preview_png
from backend.uploads import UploadError
from tests.backend.api.live import live
from tests.backend.conftest import png_bytes


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width × height`` 1-bit pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


def stored(client: TestClient, service: dict[str, Any], what: str) -> tuple[int, int]:
    blobs = sum(1 for p in Path(service["data"], "blobs").rglob("*") if p.is_file())
    return len(client.get(f"/api/{what}").json()["data"]), blobs


def upload_set(client: TestClient, data: bytes) -> Any:
    return client.post("/api/datasets", files={"file": ("set.zip", data)})


def test_a_decompression_bomb_is_too_many_pixels(client: TestClient) -> None:
    bomb = png_header(20_000, 20_000)
    response = client.post("/api/images", files=[("files", ("bomb.png", bomb))])
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == (
        "bomb.png: The image has too many pixels; at most 16,000,000 are accepted."
    )


def test_preview_output_is_bounded(client: TestClient) -> None:
    big = png_bytes((1000, 1000))
    image = client.post("/api/images", files=[("files", ("big.png", big))]).json()["data"][0]
    response = client.get(f"/api/images/{image['id']}/preview", params={"scale": 8})
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.content)) as png:
        assert png.size == (2000, 2000)  # the scale lowered to fit 4,000,000 pixels


def test_preview_shrinks_an_image_larger_than_the_cap() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (3000, 1000), (1, 2, 3)).save(buf, format="JPEG")
    with Image.open(io.BytesIO(preview_png(buf.getvalue(), None, 4, max_pixels=30_000))) as png:
        assert png.width * png.height <= 30_000 and png.width == 3 * png.height
    small = preview_png(png_bytes((10, 10)), [1, 10, 10], 4, max_pixels=30_000)
    with Image.open(io.BytesIO(small)) as png:
        assert png.size == (40, 40)


def test_analysed_image_scale_is_bounded(
    finished: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_preview_pixels", 1000)
    response = finished["client"].get(f"{finished['base']}/image", params={"scale": 64})
    with Image.open(io.BytesIO(response.content)) as png:
        assert png.width * png.height <= 1000


def test_a_zip_bomb_is_refused_before_it_is_unpacked(
    client: TestClient, service: dict[str, Any]
) -> None:
    before = stored(client, service, "datasets")
    bomb = zip_of({"a/1.png": png_bytes(), "b/2.png": bytes(20 * 2**20)})
    assert len(bomb) < 100_000
    response = upload_set(client, bomb)
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == (
        "b/2.png: it unpacks to more than 10 MB, the limit for one image."
    )
    pixels = upload_set(client, zip_of({"a/1.png": png_bytes(), "b/2.png": png_header(9**5, 9**5)}))
    assert pixels.status_code == 413 and "too many pixels" in pixels.json()["detail"]
    assert stored(client, service, "datasets") == before


def test_image_sets_are_capped_in_pixels_together() -> None:
    files = {f"{c}/{k}.png": png_bytes((10, 10)) for c in "ab" for k in range(3)}
    manifest = Manifest(files=sorted(files), labels=[0, 0, 0, 1, 1, 1], class_names=["a", "b"])
    limits = ImageLimits(max_bytes=10_000, max_pixels=100, max_total_pixels=500)
    with pytest.raises(UploadError, match="more than 500 pixels together") as refused:
        check_images(zip_of(files), manifest, limits)
    assert refused.value.status == 413 and str(refused.value).startswith("b/2.png")


def test_checking_an_image_set_does_not_block_other_requests(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one upload's check runs (held here until released), /healthz still answers:
    the check runs in a worker thread, not on the event loop."""
    entered, released = threading.Event(), threading.Event()
    waited: list[bool] = []

    def slow_check(*_: Any, **__: Any) -> None:
        entered.set()
        waited.append(released.wait(timeout=10))
        raise UploadError("stopped by the test")

    monkeypatch.setattr("backend.api.routes.datasets.check_images", slow_check)
    with TestClient(app) as shared_loop:  # one event loop for every request
        shared_loop.get("/api/workspace")
        upload = threading.Thread(
            target=upload_set, args=(shared_loop, zip_of({"a.png": png_bytes()}))
        )
        upload.start()
        assert entered.wait(timeout=10)
        assert shared_loop.get("/healthz").status_code == 200
        released.set()
        upload.join(timeout=20)
    assert waited == [True]  # released by the test, not timed out: /healthz did not wait


def test_a_body_announced_too_large_is_refused_before_it_is_read(
    app: Any, client: TestClient, service: dict[str, Any]
) -> None:
    secret = client.post("/api/workspace").json()["secret"]
    before = stored(client, service, "datasets")
    head = (
        "POST /api/datasets HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {secret}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {2**30}\r\n\r\n"
        '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.zip"\r\n\r\n'
    )
    with live(app) as (host, port), socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(head.encode() + bytes(4096))  # then nothing: the rest never comes
        reply = b"".join(iter(lambda: conn.recv(65536), b"")).decode()  # until it closes
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "larger than the limit of 201 MB" in reply
    assert stored(client, service, "datasets") == before


def test_a_streamed_body_stops_at_the_cap(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_request_bytes", 4096)

    def chunks() -> Any:  # no Content-Length: sent chunked
        yield b'{"model_id": "m", "image_ids": ["'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"]}'

    response = client.post(
        "/api/analyses", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert "4 KB" in response.json()["detail"]


@pytest.mark.parametrize(
    "change,words",
    [
        ({"epochs": 501}, "epochs must be at most 500; 501 is too large."),
        ({"width": 257}, "width must be at most 256; 257 is too large."),
        ({"max_samples": 20_001}, "max_samples must be at most 20000"),
        ({"orders": [0, 1000]}, "every order must be at most 16; 1000 is too large."),
        ({"orders": [-1]}, "orders[0] must be at least 0."),
        ({"seed": -1}, "seed must be at least 0."),
    ],
)
def test_component_parameters_are_capped(
    client: TestClient, change: dict[str, Any], words: str
) -> None:
    body = {"model_id": "m", "dataset_id": "d", "layer": "relu2", **change}
    response = client.post("/api/components", json=body)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


def test_component_caps_come_from_the_settings(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_component_epochs", 50)
    body = {"model_id": "m", "dataset_id": "d", "layer": "relu2", "epochs": 60}
    response = client.post("/api/components", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == "epochs must be at most 50; 60 is too large."
