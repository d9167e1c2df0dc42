"""Blob garbage collection: unreferenced blobs go, referenced and recent ones stay."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from backend.db.base import Base
from backend.db.models import ImageRecord, ModelRecord, TrainingRun, Workspace
from backend.gc import BLOB_COLUMNS, collect, referenced_keys
from backend.storage import LocalBlobStore

HOUR = 3600.0


@pytest.fixture
def session(tmp_path: Path) -> Session:
    engine = create_engine(f"sqlite:///{tmp_path / 'gc.db'}")
    Base.metadata.create_all(engine)
    return Session(engine)


def age(store: LocalBlobStore, key: str, seconds: float) -> None:
    """Make ``key`` look as if it was last put ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(store.path(key), (then, then))


def image(key: str) -> ImageRecord:
    return ImageRecord(
        name="x.png", blob_key=key, size_bytes=1, content_type="image/png", width=1, height=1,
        mode="L",
    )  # fmt: skip


def test_only_old_unreferenced_blobs_are_removed(session: Session, tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    model_key, image_key, orphan, young = (store.put(b) for b in (b"m", b"i", b"o", b"y"))
    for key in (model_key, image_key, orphan):
        age(store, key, 2 * HOUR)
    session.add(ModelRecord(name="m", filename="m.onnx", blob_key=model_key, size_bytes=1))
    session.add(image(image_key))
    session.commit()
    assert referenced_keys(session) == {model_key, image_key}

    dry = collect(session, store, min_age_s=HOUR, dry_run=True)
    assert dry.unreferenced == [orphan] and dry.removed == [] and store.exists(orphan)
    assert (dry.stored, dry.referenced) == (4, 2)

    swept = collect(session, store, min_age_s=HOUR)
    assert swept.removed == [orphan] and swept.bytes_freed == 1
    assert not store.exists(orphan)
    assert all(store.exists(k) for k in (model_key, image_key, young))  # young: mid-write


def test_putting_again_renews_a_blob(session: Session, tmp_path: Path) -> None:
    """An upload of bytes already stored (but unreferenced) is not collected under it."""
    store = LocalBlobStore(tmp_path / "blobs")
    key = store.put(b"same bytes")
    age(store, key, 2 * HOUR)
    assert store.put(b"same bytes") == key  # e.g. a new upload whose row is not committed yet
    assert collect(session, store, min_age_s=HOUR).removed == []
    assert store.exists(key)


def test_leftover_temp_files_go_by_age(session: Session, tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    key = store.put(b"x")
    leftover = store.path(key).parent / ".tmp-interrupted"
    leftover.write_bytes(b"half")
    then = time.time() - 2 * HOUR
    os.utime(leftover, (then, then))
    swept = collect(session, store, min_age_s=HOUR)
    assert swept.removed == [".tmp-interrupted"] and not leftover.exists()
    assert store.exists(key)  # young


def test_every_blob_column_is_known() -> None:
    """A new column holding blob keys must be added to BLOB_COLUMNS, or its blobs would go."""
    named = {f"{c.class_.__tablename__}.{c.key}" for c in BLOB_COLUMNS}
    keyish = {
        f"{table.name}.{column.name}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if column.name in ("blob_key", "result_key")
    }
    assert named == keyish


def test_a_training_runs_files_are_referenced(session: Session, tmp_path: Path) -> None:
    """The trained model's ONNX file is a key inside the run's metrics, not a column."""
    store = LocalBlobStore(tmp_path / "blobs")
    onnx, orphan = store.put(b"onnx"), store.put(b"o")
    for key in (onnx, orphan):
        age(store, key, 2 * HOUR)
    session.add(Workspace(id="w", secret_hash="h"))
    session.add(TrainingRun(
        workspace_id="w", name="r", dataset_id="d", params={},
        metrics={"onnx_key": onnx, "test_accuracy": 0.9, "other_key": None},
    ))  # fmt: skip
    session.commit()
    assert referenced_keys(session) == {onnx}
    assert collect(session, store, min_age_s=HOUR).removed == [orphan]
    assert store.exists(onnx)
