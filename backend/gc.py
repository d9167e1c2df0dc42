"""Garbage collection of the blob store: blobs no row references any more.

Blobs are content-addressed and shared (two uploads of the same file, a cached logit table
used by several analyses), so deleting a row never deletes its blob; this sweep does. A
blob is removed when no row of any table references it **and** it was last put more than
``min_age_s`` ago: a job that has just written a blob but not yet committed the row that
points at it keeps it, since :meth:`~backend.storage.LocalBlobStore.put` renews a blob's
age even when the bytes were already there. Leftover temp files of interrupted writes go
by the same age rule. Run it with ``conceptlens gc``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from backend.db.models import (
    AnalysisItem,
    Chunk,
    ComponentJob,
    DatasetRecord,
    ImageRecord,
    LearnedBaseline,
    LogitTable,
    ModelRecord,
    TrainingRun,
)
from backend.storage import LocalBlobStore

#: Every column that holds a blob key.
BLOB_COLUMNS: tuple[InstrumentedAttribute[str | None], ...] = (
    ModelRecord.blob_key,
    ImageRecord.blob_key,
    DatasetRecord.blob_key,
    AnalysisItem.result_key,
    Chunk.blob_key,
    LogitTable.blob_key,
    LearnedBaseline.blob_key,
    ComponentJob.result_key,
)

#: Default grace period: far longer than any write between a put and its commit.
DEFAULT_MIN_AGE_S = 3600.0


@dataclass
class Sweep:
    """What a collection found (``removed`` is empty on a dry run)."""

    referenced: int
    stored: int
    unreferenced: list[str]
    removed: list[str]
    bytes_freed: int


def referenced_keys(session: Session) -> set[str]:
    """Every blob key some row points at."""
    keys: set[str] = set()
    for column in BLOB_COLUMNS:
        keys.update(k for k in session.scalars(select(column).distinct()) if k)
    # a training run's downloadable files are keys inside its metrics (``…_key``)
    for metrics in session.scalars(select(TrainingRun.metrics)):
        keys.update(v for k, v in (metrics or {}).items() if k.endswith("_key") and v)
    return keys


def collect(
    session: Session,
    store: LocalBlobStore,
    *,
    min_age_s: float = DEFAULT_MIN_AGE_S,
    dry_run: bool = False,
) -> Sweep:
    """Remove blobs older than ``min_age_s`` that no row references (unless ``dry_run``).

    Cost: one ``SELECT DISTINCT`` per blob column and one listing of the store.
    """
    if min_age_s < 0:
        raise ValueError("min_age_s must be 0 or more")
    listed = list(store.listing())
    referenced = referenced_keys(session)
    unreferenced = [key for key, age in listed if key not in referenced and age >= min_age_s]
    removed: list[str] = []
    freed = 0
    for key in [] if dry_run else unreferenced:
        if key.startswith(".tmp-"):
            store.remove_temp(key)
        else:
            age, size = _age_and_size(store, key)
            if age < min_age_s:  # put again since it was listed, or already gone
                continue
            freed += size
            store.delete(key)
        removed.append(key)
    stored = sum(1 for key, _ in listed if not key.startswith(".tmp-"))
    return Sweep(len(referenced), stored, unreferenced, removed, freed)


def _age_and_size(store: LocalBlobStore, key: str) -> tuple[float, int]:
    """Seconds since ``key`` was last put, and its bytes; age ``-1`` when it is gone."""
    try:
        stat = store.path(key).stat()
    except FileNotFoundError:
        return -1.0, 0
    return time.time() - stat.st_mtime, stat.st_size
