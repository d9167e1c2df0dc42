"""Reading multipart files with a size cap (stop reading past the limit)."""

from __future__ import annotations

from fastapi import HTTPException, UploadFile

CHUNK = 1 << 20


async def read_capped(file: UploadFile, limit: int, what: str) -> bytes:
    """The file's bytes, or HTTP 413 as soon as more than ``limit`` bytes arrive."""
    parts: list[bytes] = []
    size = 0
    while chunk := await file.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise HTTPException(
                413, f"The {what} is larger than the limit of {limit / 2**20:.0f} MB."
            )
        parts.append(chunk)
    return b"".join(parts)
