"""Built-in resources every workspace sees: the demo digits CNN and sample digits.

Trained on scikit-learn's bundled digits in about a second (no download), written as ONNX
into the blob store, validated like any upload. Idempotent: run at every start, and one
run at a time (a Postgres advisory lock across processes, e.g. the start-up tasks of several
API replicas; a thread lock in the embedded single-process setup).
"""

from __future__ import annotations

import io
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from PIL import Image
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from backend.db.models import DatasetRecord, ImageRecord, ModelRecord
from backend.db.session import get_engine, session_scope
from conceptlens.models.demo import (
    load_digits_16,
    safetensors_bytes,
    split_digits,
    train_demo_model,
    write_demo_model,
)
from worker import jobs

DEMO_MODEL_NAME = "Demo digits CNN"

#: Postgres advisory-lock key of :func:`ensure_builtins` (any fixed 64-bit number).
LOCK_KEY = 0x636C_6275_696C_74  # "clbuilt"
_THREAD_LOCK = threading.Lock()

DEMO_DIGITS_NAME = "Demo digits (scikit-learn, 16×16)"
#: Images of the digits' training split the demo models train on by default (all of them).
DIGITS_TRAIN = 1500

#: PyTorch-weight variants of the demo CNN, for the component analysis (its layers and the
#: tail after a layer are needed): name → (seed, training samples; None = all 1,500).
#: Seeds 0 and 1 are two exemplary models of one task (reliability); 200 samples against all
#: is the paper's experiment 2.
TORCH_DEMOS = {
    "Demo digits CNN (PyTorch weights, seed 0)": (0, None),
    "Demo digits CNN (PyTorch weights, seed 1)": (1, None),
    "Demo digits CNN (PyTorch weights, 200 training samples)": (0, 200),
}


def ensure_torch_demos() -> None:
    """Train and add the :data:`TORCH_DEMOS` that are missing (about a second each)."""
    store = jobs.blobs()
    for name, (seed, n_train) in TORCH_DEMOS.items():
        with session_scope() as s:
            found = s.scalar(
                select(ModelRecord).where(ModelRecord.builtin.is_(True), ModelRecord.name == name)
            )
            if found is not None:
                found.train_samples = found.train_samples or n_train or DIGITS_TRAIN
                continue
        model, _ = train_demo_model(seed=seed, n_train=n_train)
        data = safetensors_bytes(model)
        with session_scope() as s:
            row = ModelRecord(
                workspace_id=None, name=name, filename="digit_cnn.safetensors",
                blob_key=store.put(data), size_bytes=len(data),
                labels=[str(d) for d in range(10)], architecture="digit_cnn", builtin=True,
                train_samples=n_train or DIGITS_TRAIN,
            )  # fmt: skip
            s.add(row)
            s.flush()
            model_id = row.id
        jobs.validate_model(model_id)


#: The built-in model series: the seed-0 PyTorch demo's training run, kept at these epochs
#: (its last checkpoint has that model's weights exactly).
DEMO_SERIES_NAME = "Demo digits CNN training (seed 0)"
DEMO_SERIES_EPOCHS = (1, 2, 3, 4, 6, 8, 12)


def ensure_demo_series() -> None:
    """Add the built-in model series (a second of training) if it is missing; each
    checkpoint is validated like any model."""
    with session_scope() as s:
        if s.scalar(
            select(ModelRecord).where(
                ModelRecord.builtin.is_(True), ModelRecord.series == DEMO_SERIES_NAME
            )
        ):
            return
    kept: dict[int, bytes] = {}

    def keep(epoch: int, model: torch.nn.Module) -> None:
        if epoch in DEMO_SERIES_EPOCHS:
            kept[epoch] = safetensors_bytes(model)

    train_demo_model(seed=0, epochs=max(DEMO_SERIES_EPOCHS), on_epoch=keep)
    store = jobs.blobs()
    ids = []
    with session_scope() as s:
        for epoch, data in sorted(kept.items()):
            row = ModelRecord(
                workspace_id=None, name=f"{DEMO_SERIES_NAME} · epoch {epoch}",
                filename="digit_cnn.safetensors", blob_key=store.put(data), size_bytes=len(data),
                labels=[str(d) for d in range(10)], architecture="digit_cnn", builtin=True,
                series=DEMO_SERIES_NAME, series_step=epoch, train_samples=DIGITS_TRAIN,
            )  # fmt: skip
            s.add(row)
            s.flush()
            ids.append(row.id)
    for model_id in ids:
        jobs.validate_model(model_id)


def ensure_demo_digits() -> None:
    """The built-in labelled image set: scikit-learn's digits with the demo's train/test split,
    stored as a class-per-folder zip of 8-bit PNGs (analyses pick images from it). File
    names rank the held-out test digits first, so "the first k" are digits no demo model
    was trained on. A row made before the zip existed gets it now."""
    with session_scope() as s:
        row = s.scalar(select(DatasetRecord).where(DatasetRecord.builtin.is_(True)))
        if row is not None and row.blob_key is not None:
            return
    data, counts = digits_zip()
    key = jobs.blobs().put(data)
    with session_scope() as s:
        row = s.scalar(select(DatasetRecord).where(DatasetRecord.builtin.is_(True)))
        if row is None:
            row = DatasetRecord(
                workspace_id=None, name=DEMO_DIGITS_NAME, kind="digits", n_images=sum(counts),
                labelled=True, class_names=[str(d) for d in range(10)], class_counts=counts,
                builtin=True,
            )  # fmt: skip
            s.add(row)
        row.blob_key, row.size_bytes = key, len(data)


def digits_zip() -> tuple[bytes, list[int]]:
    """``digit/NNNN.png`` for every digit, ``NNNN`` its rank: the test split first (in the
    split's order), then the training split; and the count of each digit."""
    images, labels = load_digits_16()
    x_train, y_train, x_test, y_test = split_digits(images, labels)
    x, y = torch.cat([x_test, x_train]), torch.cat([y_test, y_train])
    pixels = torch.round(x[:, 0] * 255).to(torch.uint8).numpy()  # exact: they are 8-bit
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for rank, (image, label) in enumerate(zip(pixels, y.tolist(), strict=True)):
            png = io.BytesIO()
            Image.fromarray(image, mode="L").save(png, format="PNG")
            archive.writestr(f"{label}/{rank:04d}.png", png.getvalue())
    return buf.getvalue(), torch.bincount(y, minlength=10).tolist()


@contextmanager
def _exclusive() -> Iterator[None]:
    """Hold the built-ins lock: across processes on Postgres, across threads otherwise."""
    engine = get_engine()
    if engine.dialect.name != "postgresql":
        with _THREAD_LOCK:
            yield
        return
    with engine.connect() as conn:  # a session-level lock, held by this connection
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})


def ensure_builtins() -> str:
    """Create the demo model and sample images if missing; returns the demo model's id.

    Runs under :func:`_exclusive`, so concurrent calls create each built-in once.
    """
    with _exclusive():
        return _ensure_builtins()


def _ensure_builtins() -> str:
    with session_scope() as s:
        existing = s.scalar(
            select(ModelRecord).where(
                ModelRecord.builtin.is_(True), ModelRecord.name == DEMO_MODEL_NAME
            )
        )
        ready_id = existing.id if existing is not None and existing.status == "ready" else None
    if ready_id is not None:
        ensure_demo_digits()
        ensure_torch_demos()
        ensure_demo_series()
        revalidate_stale_models()
        return ready_id
    store = jobs.blobs()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        manifest = write_demo_model(out, n_samples=10)
        model_bytes = (out / manifest["files"]["onnx"]).read_bytes()
        with session_scope() as s:
            if existing is None:
                existing = ModelRecord(
                    workspace_id=None, name=DEMO_MODEL_NAME, filename=manifest["files"]["onnx"],
                    blob_key=store.put(model_bytes), size_bytes=len(model_bytes),
                    labels=manifest["labels"], builtin=True, train_samples=DIGITS_TRAIN,
                )  # fmt: skip
                s.add(existing)
            for sample in manifest["samples"]:
                _add_sample(s, out / sample["file"], str(sample["label"]))
            s.flush()
            model_id = existing.id
    jobs.validate_model(model_id)
    ensure_demo_digits()
    ensure_torch_demos()
    ensure_demo_series()
    revalidate_stale_models()
    return model_id


def revalidate_stale_models() -> list[str]:
    """Validate again the ready models recorded before layers had shapes (migration 0007), so
    their ``layers`` are those a feature can be read at; returns their ids. Cost: one load
    and test pass per such model, once (afterwards their shapes are recorded)."""
    with session_scope() as s:
        rows = s.execute(
            select(ModelRecord.id, ModelRecord.layer_shapes).where(ModelRecord.status == "ready")
        ).all()
        stale = [model_id for model_id, shapes in rows if shapes is None]  # SQL or JSON null
    for model_id in stale:
        jobs.validate_model(model_id)
    return stale


def _add_sample(s: Session, path: Path, label: str) -> None:
    data = path.read_bytes()
    key = jobs.blobs().put(data)
    if s.scalar(
        select(ImageRecord).where(ImageRecord.builtin.is_(True), ImageRecord.blob_key == key)
    ):
        return
    with Image.open(path) as img:
        width, height, mode = img.width, img.height, img.mode
    s.add(
        ImageRecord(
            workspace_id=None, name=f"digit {label} ({path.name})", blob_key=key,
            size_bytes=len(data), content_type="image/png", width=width, height=height,
            mode=mode, label=label, builtin=True,
        )
    )  # fmt: skip
