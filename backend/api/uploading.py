"""Upload size caps: per address before anything is read (``Content-Length``, see
:class:`backend.api.middleware.BodyLimit`), and per file while reading."""

from __future__ import annotations

from typing import BinaryIO

from fastapi import HTTPException, UploadFile

from backend.config import get_settings

CHUNK = 1 << 20
#: Multipart framing and the form's small fields, on top of the files' own cap.
FORM_SLACK = 1 << 20


def body_cap(method: str, path: str) -> int:
    """The most bytes a request body to ``method path`` may hold."""
    settings = get_settings()
    if method == "POST":
        uploads = {
            "/api/models": settings.max_model_bytes,
            "/api/images": settings.max_image_bytes * settings.max_images_per_upload,
            "/api/datasets": settings.max_dataset_bytes,
            "/api/model-series": settings.max_series_bytes,
        }
        cap = uploads.get(path.rstrip("/"))
        if cap is not None:
            return cap + FORM_SLACK
    return settings.max_request_bytes


def _too_large(what: str, limit: int) -> HTTPException:
    return HTTPException(413, f"The {what} is larger than the limit of {limit / 2**20:.0f} MB.")


async def read_capped(file: UploadFile, limit: int, what: str) -> bytes:
    """The file's bytes, or HTTP 413 as soon as more than ``limit`` bytes arrive."""
    parts: list[bytes] = []
    size = 0
    while chunk := await file.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large(what, limit)
        parts.append(chunk)
    return b"".join(parts)


def read_capped_sync(file: BinaryIO, limit: int, what: str) -> bytes:
    """:func:`read_capped` for plain ``def`` routes (which FastAPI runs in a thread)."""
    data = file.read(limit + 1)
    if len(data) > limit:
        raise _too_large(what, limit)
    return data
