"""Image sets: zip layouts, limits, refusals that leave nothing behind, the built-in digits."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import png_bytes


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


def upload(client: TestClient, data: bytes, name: str = "set") -> Any:
    return client.post("/api/datasets", files={"file": ("set.zip", data)}, data={"name": name})


def count(client: TestClient, service: dict[str, Any]) -> tuple[int, int]:
    blobs = sum(1 for p in Path(service["data"], "blobs").rglob("*") if p.is_file())
    return len(client.get("/api/datasets").json()["data"]), blobs


def test_builtin_demo_digits(client: TestClient) -> None:
    digits = next(d for d in client.get("/api/datasets").json()["data"] if d["builtin"])
    assert digits["kind"] == "digits" and digits["n_images"] == 1797 and digits["labelled"]
    assert (
        digits["class_names"] == [str(k) for k in range(10)] and sum(digits["class_counts"]) == 1797
    )
    assert client.delete(f"/api/datasets/{digits['id']}").status_code == 403


def test_class_per_folder_zip_is_labelled(client: TestClient, other_client: TestClient) -> None:
    files = {
        f"shapes/{c}/{k}.png": png_bytes(color=40 * k) for c in ("cat", "dog") for k in range(3)
    }
    files["shapes/dog/extra.png"] = png_bytes(color=7)
    files["__MACOSX/shapes/._cat"] = b"resource fork"
    created = upload(client, make_zip(files), "pets")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["n_images"], body["labelled"], body["class_names"]) == (7, True, ["cat", "dog"])
    assert body["class_counts"] == [3, 4]
    assert other_client.get(f"/api/datasets/{body['id']}").status_code == 404
    assert client.delete(f"/api/datasets/{body['id']}").status_code == 204


def test_flat_zip_is_unlabelled(client: TestClient) -> None:
    body = upload(client, make_zip({f"{k}.png": png_bytes(color=k) for k in range(4)})).json()
    assert body["labelled"] is False and body["class_names"] is None and body["n_images"] == 4


@pytest.mark.parametrize(
    "files,status,words",
    [
        ({}, 400, "no images"),
        ({"a/1.png": png_bytes(), "2.png": png_bytes()}, 400, "Mixed layout"),
        ({"only/1.png": png_bytes(), "only/2.png": png_bytes()}, 400, "at least two class"),
        ({"a/1.png": png_bytes(), "b/notes.txt": b"hi"}, 415, "notes.txt"),
        ({"a/1.png": png_bytes(), "b/2.png": b"broken"}, 415, "b/2.png"),
        ({"a/b/c/d/1.png": png_bytes(), "a/b/c/e/2.png": png_bytes()}, 400, "too deep"),
    ],
)
def test_bad_archives_are_refused_and_leave_nothing(
    client: TestClient, service: dict[str, Any], files: dict[str, bytes], status: int, words: str
) -> None:
    before = count(client, service)
    response = upload(client, make_zip(files))
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert count(client, service) == before


def test_not_a_zip_and_limits(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert upload(client, png_bytes()).status_code == 415
    assert upload(client, b"").status_code == 400
    from backend.config import get_settings

    monkeypatch.setattr(get_settings(), "max_dataset_images", 2)
    many = make_zip({f"{k}.png": png_bytes() for k in range(3)})
    response = upload(client, many)
    assert response.status_code == 413 and "limit is 2" in response.json()["detail"]


def test_bzip2_members_are_refused_before_they_are_read(
    client: TestClient, service: dict[str, Any]
) -> None:
    """A bzip2 (or LZMA) member is decompressed a whole chunk at a time by zipfile, past any
    cap; image sets take only stored or deflated members (found in review)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("a/1.png", png_bytes())
        archive.writestr("b/2.png", png_bytes())
    before = count(client, service)
    response = upload(client, buf.getvalue())
    assert response.status_code == 415 and "only stored or deflated" in response.json()["detail"]
    assert count(client, service) == before
