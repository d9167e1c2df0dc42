"""The component analysis job (SCIENCE.md §7): rows in, engine, metrics and maps out."""

from __future__ import annotations

import io
import logging
import zipfile
from typing import Any

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.config import get_settings
from backend.datasets import read_manifest
from backend.db.base import utcnow
from backend.db.models import ComponentJob, DatasetRecord, ModelRecord
from backend.db.session import session_scope
from conceptlens.components.consistency import ConsistencyPlan
from conceptlens.components.pipeline import TrainingPlan
from conceptlens.images import load_image, normalise
from conceptlens.models.demo import load_digits_16, split_digits
from worker import jobs, leases
from worker.sandbox import parent as sandbox

log = logging.getLogger(__name__)

#: Test images whose component maps are stored for the views.
MAP_IMAGES = 6
#: Stored map values (images × orders × channels × H × W) above which one channel is kept.
MAX_MAP_VALUES = 4_000_000
TEST_SHARE = 6  # one image in six is held out (uploaded sets; the digits keep their split)


def run_component_job(job_id: str) -> None:
    """Claim the job's lease, train and measure in the sandbox, store the results.

    A duplicate delivery does nothing while the lease is held; results are written only by
    the lease holder, so a job cancelled meanwhile stays cancelled."""
    owner = leases.new_owner()
    claimed = leases.claim(
        ComponentJob, job_id, owner, ComponentJob.status.in_(("queued", "running")),
        ComponentJob.cancel_requested.is_(False),
        status="running", started_at=utcnow(), error=None,
    )  # fmt: skip
    if not claimed:
        return
    with session_scope() as s:
        job = s.get_one(ComponentJob, job_id)
        if _reuse(s, job):
            job.lease_owner = job.lease_expires_at = None
            return
    with leases.Heartbeat(ComponentJob, job_id, owner):
        try:
            metrics, maps = _compute(job_id, owner)
            key = jobs.blobs().put(_npz(maps)) if maps else None
        except Exception as error:
            _finish(job_id, owner, error=error)
            return
        with session_scope() as s:
            found = s.get(ComponentJob, job_id)  # None: deleted meanwhile, nothing to store
            if found is None or found.lease_owner != owner:
                return
            job = found
            if job.kind == "components":
                metrics = {**metrics, "train_split": train_split(s, job)}
            job.metrics = metrics
            job.result_key = key
            job.status = "done"
            job.progress_done = job.progress_total
            job.finished_at = utcnow()
            job.lease_owner = job.lease_expires_at = None


def _reuse(s: Session, job: ComponentJob) -> bool:
    """Finish ``job`` from an identical finished one (no training), if there is one."""
    twin = s.scalar(
        select(ComponentJob).where(
            ComponentJob.cache_key == job.cache_key,
            ComponentJob.status == "done",
            ComponentJob.id != job.id,
        )
    )
    if twin is None or job.cache_key is None or twin.metrics is None:
        return False
    job.metrics = {**twin.metrics, "cached": True}
    job.result_key = twin.result_key
    job.status = "done"
    job.progress_done = job.progress_total
    job.finished_at = utcnow()
    return True


def _compute(job_id: str, owner: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read the job's rows and images here; train and measure in the model sandbox."""
    with session_scope() as s:
        job = s.get_one(ComponentJob, job_id)
        consistency = _consistency_request(s, job) if job.kind == "consistency" else None
    if consistency is not None:
        return sandbox.current().consistency(
            **consistency, device=str(jobs.device()),
            progress=jobs.leased_reporter(ComponentJob, job_id, owner, "progress_done"),
        )  # fmt: skip
    with session_scope() as s:
        job = s.get_one(ComponentJob, job_id)
        params, layer = dict(job.params), job.layer
        model_row = s.get_one(ModelRecord, job.model_id)
        model = jobs.model_ref(model_row)
        exemplars = [
            jobs.model_ref(s.get_one(ModelRecord, exemplar)) for exemplar in job.compare_model_ids
        ]  # models too: they load only in the sandbox
        data, labelled = _data(s, s.get_one(DatasetRecord, job.dataset_id), model_row, params)
    plan = TrainingPlan(
        orders=tuple(params["orders"]), width=params["width"], epochs=params["epochs"],
        seed=params["seed"], reliability=params.get("reliability", "preview"),
    )  # fmt: skip
    return sandbox.current().components(
        model, exemplars, layer=layer, data=[t.numpy() for t in data], labelled=labelled,
        plan=plan, device=str(jobs.device()),
        progress=jobs.leased_reporter(ComponentJob, job_id, owner, "progress_done"),
        maps={"images": MAP_IMAGES, "max_values": MAX_MAP_VALUES},
    )  # fmt: skip


def _consistency_request(s: Session, job: ComponentJob) -> dict[str, Any]:
    """§8: the sandbox call's arguments, with the same images in each model's input space."""
    assert job.compare_model_id is not None and job.compare_layer is not None
    params = dict(job.params)
    rows = s.get_one(ModelRecord, job.model_id), s.get_one(ModelRecord, job.compare_model_id)
    dataset = s.get_one(DatasetRecord, job.dataset_id)
    (xa_train, _, xa_test, _), _ = _data(s, dataset, rows[0], params)
    (xb_train, _, xb_test, _), _ = _data(s, dataset, rows[1], params)
    # a model that records its training images may cut the digits' training split shorter:
    # both models get the common prefix, the same images
    n = min(len(xa_train), len(xb_train))
    plan = ConsistencyPlan(
        orders=tuple(params["orders"]), width=params["width"], epochs=params["epochs"],
        seed=params["seed"],
    )  # fmt: skip
    return {
        "model": jobs.model_ref(rows[0]),
        "compare": jobs.model_ref(rows[1]),
        "layer": job.layer,
        "compare_layer": job.compare_layer,
        "inputs": [t.numpy() for t in (xa_train[:n], xa_test, xb_train[:n], xb_test)],
        "plan": plan,
    }


def train_split(s: Session, job: ComponentJob) -> str:
    """Which images the over-fitting metric's training loss was computed on, in words."""
    model = s.get_one(ModelRecord, job.model_id)
    dataset = s.get_one(DatasetRecord, job.dataset_id)
    limit = int(job.params["max_samples"])
    n_test = max(10, limit // TEST_SHARE)
    if dataset.kind == "digits" and model.train_samples:
        n = min(limit - n_test, model.train_samples)
        return f"the first {n} of the model's own {model.train_samples} training images"
    if dataset.kind == "digits":
        return (
            f"{limit - n_test} images of the digits' training split; the model does not say "
            "which images it was trained on, so some may be new to it"
        )
    return "images of the uploaded set; whether the model was trained on them is not known"


def _data(
    s: Session, dataset: DatasetRecord, model: ModelRecord, params: dict[str, Any]
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], bool]:
    """``(x_train, y_train, x_test, y_test)`` in the model's input space, and whether labelled."""
    limit = int(params["max_samples"])
    n_test = max(10, limit // TEST_SHARE)
    if dataset.kind == "digits":
        x_train, y_train, x_test, y_test = split_digits(*load_digits_16())
        # a model that records its training images is measured on exactly those
        n_train = min(limit - n_test, model.train_samples or limit - n_test)
        x_train = normalise_batch(x_train[:n_train], model)
        x_test = normalise_batch(x_test[:n_test], model)
        return (x_train, y_train[:n_train], x_test, y_test[:n_test]), True
    assert dataset.blob_key is not None
    data = jobs.blobs().get(dataset.blob_key)
    settings = get_settings()
    manifest = read_manifest(
        data,
        max_images=settings.max_dataset_images,
        max_uncompressed=4 * settings.max_dataset_bytes,
    )
    c, h, w = model.input_shape or (1, 0, 0)
    order = np.random.default_rng(0).permutation(len(manifest.files))[:limit]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        x = torch.stack(
            [
                load_image(
                    archive.read(manifest.files[k]),
                    channels=c,
                    size=(h, w),
                    mean=model.mean,
                    std=model.std,
                )
                for k in order
            ]
        )
    labels = manifest.labels or [0] * len(manifest.files)
    y = torch.tensor([labels[k] for k in order])
    cut = len(order) - min(n_test, len(order) // 2)
    return (x[:cut], y[:cut], x[cut:], y[cut:]), manifest.labels is not None


def normalise_batch(x: torch.Tensor, model: ModelRecord) -> torch.Tensor:
    if model.mean is None and model.std is None:
        return x
    return torch.stack([normalise(img, model.mean, model.std) for img in x])


def _finish(job_id: str, owner: str, *, error: BaseException) -> None:
    status, message = jobs.outcome(error, f"component job {job_id}")
    with session_scope() as s:
        job = s.get(ComponentJob, job_id)
        if job is None or job.lease_owner != owner:  # deleted, or no longer this worker's
            return
        job.status, job.error = status, message
        job.finished_at = utcnow()
        job.lease_owner = job.lease_expires_at = None


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy stubs read ** as allow_pickle
    return buf.getvalue()
