"""A content-addressed blob store for large arrays (logit tables, interactions).

The database keeps metadata and small results; big arrays live here under the SHA-256 of
their bytes, so identical content is stored once. :class:`BlobStore` is the interface; the
local-folder store is the default, and an S3-compatible store can implement the same five
methods for multi-machine setups (every worker and the API must see the same store).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store bytes; returns their key (hex SHA-256). Idempotent."""
        ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def listing(self) -> Iterator[tuple[str, float]]:
        """Every stored key with its age in seconds since it was last put (for collection)."""
        ...


class LocalBlobStore:
    """Blobs as files ``root/ab/cd/<sha256>``, written atomically (temp file + rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise KeyError(f"not a blob key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        target = self.path(key)
        if target.exists():
            # a put renews the blob: the collector spares blobs put recently, even when a row
            # that references them has not been committed yet
            os.utime(target)
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def listing(self) -> Iterator[tuple[str, float]]:
        """Every blob (and every leftover temp file, as ``.tmp-…``) with its age in seconds."""
        now = time.time()
        for path in self.root.glob("*/*/*"):
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:  # deleted meanwhile
                continue
            yield path.name, age

    def remove_temp(self, name: str) -> None:
        """Delete a leftover temp file of an interrupted put (a name from :meth:`listing`)."""
        if not name.startswith(".tmp-"):
            raise KeyError(f"not a temp file: {name!r}")
        for path in self.root.glob(f"*/*/{name}"):
            path.unlink(missing_ok=True)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def description_key(description: object) -> str:
    """A cache key: the SHA-256 of a JSON-able description, keys sorted."""
    return sha256_hex(json.dumps(description, sort_keys=True).encode())
