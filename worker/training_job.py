"""The training job (SCIENCE.md §5, seed 000): train a project architecture with the order
losses, keep checkpoints as a model series, store the final model, measure it.

Only project code runs here: the architectures live in :mod:`conceptlens.models`, and a
model to fine-tune is a safetensors file (tensors, no code), so no uploaded code enters the
worker process. Training is deterministic under the run's seed on the CPU, which is what
makes a retry after a crash safe: it starts again from the beginning, and a checkpoint kept
by the earlier attempt is recognised by its step and not stored twice.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sqlalchemy import select

from backend.config import get_settings
from backend.datasets import read_manifest
from backend.db.base import utcnow
from backend.db.models import DatasetRecord, ModelRecord, TrainingRun, Workspace
from backend.db.session import session_scope
from backend.queue import TASK_START_ANALYSIS, TASK_VALIDATE_MODEL, enqueue
from backend.schemas import AnalysisCreate
from backend.services import analyses as analyses_service
from backend.services.dataset_images import order as dataset_order
from conceptlens.game import Cancelled
from conceptlens.images import load_image
from conceptlens.models.architectures import ARCHITECTURES
from conceptlens.models.demo import export_onnx, load_digits_16, split_digits
from conceptlens.models.weights import weights_bytes
from conceptlens.order_loss import OrderLossConfig, OrderTerm
from conceptlens.training import (
    PRESETS,
    EpochRecord,
    TrainConfig,
    adversarial_accuracy,
    train_model,
)
from worker import jobs, leases

log = logging.getLogger(__name__)

#: Test images the adversarial accuracy is measured on (the first of the test split).
MAX_ATTACK_IMAGES = 500


def run_training(run_id: str) -> None:
    """Claim the run's lease, train, store checkpoints, final model and metrics."""
    owner = leases.new_owner()
    claimed = leases.claim(
        TrainingRun, run_id, owner, TrainingRun.status.in_(("queued", "running")),
        TrainingRun.cancel_requested.is_(False),
        status="running", started_at=utcnow(), error=None, progress_done=0, history=[],
    )  # fmt: skip
    if not claimed:
        return
    with leases.Heartbeat(TrainingRun, run_id, owner):
        try:
            _train(run_id, owner)
        except Exception as error:
            status, message = jobs.outcome(error, f"training run {run_id}")
            jobs._release(
                TrainingRun, run_id, owner, status=status, error=message, finished_at=utcnow()
            )


def order_config(params: dict[str, Any]) -> OrderLossConfig | None:
    """The run's order losses: the preset's, unless ``plus``/``minus`` were given."""
    plus, minus = params.get("plus"), params.get("minus")
    rows, cols = (int(p) for p in params["grid"].split("x"))
    if plus is None and minus is None:
        preset = PRESETS[params["preset"]]
        if preset is None:
            return None
        plus, minus = _term_dict(preset.plus), _term_dict(preset.minus)
    return OrderLossConfig(
        grid=(rows, cols), baseline=params["baseline"], samples=int(params["samples"]),
        plus=OrderTerm(**plus) if plus else None, minus=OrderTerm(**minus) if minus else None,
    )  # fmt: skip


def _term_dict(term: OrderTerm | None) -> dict[str, float] | None:
    return None if term is None else {"weight": term.weight, "r1": term.r1, "r2": term.r2}


def _train(run_id: str, owner: str) -> None:
    with session_scope() as s:
        run = s.get_one(TrainingRun, run_id)
        params, series, name = dict(run.params), run.series, run.name
        dataset = s.get_one(DatasetRecord, run.dataset_id)
        digits = dataset.kind == "digits"
        train_x, train_y, test_x, test_y, labels = _data(dataset, params)
        if params.get("init_model") and run.init_model_id is None:
            raise ValueError(
                "the model this run fine-tunes was deleted; start a new run from another model"
            )
        init_state = (
            _init_state(s.get_one(ModelRecord, run.init_model_id)) if (run.init_model_id) else None
        )
        workspace_id = run.workspace_id
    order = order_config(params)
    effective = {"plus": _term_dict(order.plus), "minus": _term_dict(order.minus)} if order else {}
    config = TrainConfig(
        architecture=params["architecture"], epochs=int(params["epochs"]),
        batch_size=int(params["batch_size"]), lr=float(params["lr"]), seed=int(params["seed"]),
        order=order,
    )  # fmt: skip
    total = int(params["epochs"]) * int(params["batches_per_epoch"])
    progress = jobs.leased_reporter(
        TrainingRun, run_id, owner, "progress_done",
        also_stop=lambda s: s.scalar(
            select(TrainingRun.cancel_requested).where(TrainingRun.id == run_id)
        ) in (True, None),
    )  # fmt: skip
    history: list[dict[str, Any]] = []
    every = int(params["checkpoint_every"])

    def on_epoch(record: EpochRecord, model: torch.nn.Module) -> None:
        losses = (record.loss, record.loss_cls, record.loss_plus, record.loss_minus)
        if not all(math.isfinite(x) for x in losses if x is not None):
            # L+ has no lower bound: a large λ or learning rate runs it to infinity
            raise ValueError(
                f"training diverged at epoch {record.epoch} (loss {record.loss}); lower the "
                "learning rate or the order losses' λ"
            )
        history.append(record.as_dict())
        keep = record.epoch % every == 0 or record.epoch == config.epochs
        with session_scope() as s:
            row = s.get_one(TrainingRun, run_id)
            if row.lease_owner != owner:
                raise Cancelled
            row.history = list(history)
            row.progress_done = record.epoch * int(params["batches_per_epoch"])
            checkpoint = (
                _keep_checkpoint(s, row, model, record.epoch, labels, params) if keep else None
            )
        if checkpoint is not None:
            enqueue(TASK_VALIDATE_MODEL, checkpoint)

    model, _ = train_model(
        config, train_x, train_y, test_x, test_y, init_state=init_state,
        on_batch=lambda done, _total: progress(done, total + len(params["attack"]["eps"])),
        on_epoch=on_epoch, device=str(jobs.device()),
    )  # fmt: skip
    model = model.cpu().eval()
    attack = params["attack"]
    adversarial: dict[str, float] = {}
    xs, ys = test_x[:MAX_ATTACK_IMAGES], test_y[:MAX_ATTACK_IMAGES]
    for k, eps in enumerate(attack["eps"]):
        adversarial[str(eps)] = adversarial_accuracy(
            model, xs, ys, eps=float(eps), steps=int(attack["steps"])
        )
        progress(total + k + 1, total + len(attack["eps"]))
    final = history[-1] if history else {}
    metrics = {
        "test_accuracy": final.get("test_accuracy"),
        "train_accuracy": final.get("train_accuracy"),
        "adversarial": adversarial,
        "attack_images": len(ys),
        "order_terms": effective,
        "passes": sum(int(h["passes"]) for h in history),
        "seconds": sum(float(h["seconds"]) for h in history),
        # the final model's files for download (blob keys; the API shows only that they exist)
        "onnx_key": jobs.blobs().put(_onnx_bytes(model, params["architecture"])),
    }
    with session_scope() as s:
        row = s.get_one(TrainingRun, run_id)
        if row.lease_owner != owner:
            return
        data = weights_bytes(model, params["architecture"])
        key = jobs.blobs().put(data)
        # a run retried after it stored its model (worker killed before it finished) finds
        # the same weights, under the same key: that model, not a second one
        final_model = s.scalar(
            select(ModelRecord).where(
                ModelRecord.workspace_id == workspace_id, ModelRecord.blob_key == key,
                ModelRecord.series.is_(None), ModelRecord.name == f"{name} (trained)",
            )
        ) or ModelRecord(
            workspace_id=workspace_id, name=f"{name} (trained)",
            filename=f"{params['architecture']}.safetensors", blob_key=key,
            size_bytes=len(data), labels=labels, architecture=params["architecture"],
            train_samples=params["n_train"] if digits else None,
        )  # fmt: skip
        s.add(final_model)
        s.flush()
        evaluated = row.evaluation_id
        row.model_id = final_model.id
        row.metrics = {**metrics, "safetensors_key": final_model.blob_key}
        model_id = final_model.id
    jobs.validate_model(model_id)  # nothing to do when that model is ready already
    evaluation = evaluated or (
        _evaluate(run_id, model_id, params) if params.get("evaluate") else None
    )
    jobs._release(
        TrainingRun, run_id, owner, status="done", finished_at=utcnow(),
        progress_done=total + len(attack["eps"]), evaluation_id=evaluation,
    )  # fmt: skip
    log.info("training run %s (%s) done: series %s", run_id, name, series)


def _keep_checkpoint(
    s: Any,
    run: TrainingRun,
    model: torch.nn.Module,
    epoch: int,
    labels: list[str] | None,
    params: dict[str, Any],
) -> str | None:
    """Store the epoch's weights as a model of the run's series (once per step)."""
    found = s.scalar(
        select(ModelRecord.id).where(
            ModelRecord.series == run.series,
            ModelRecord.workspace_id == run.workspace_id,
            ModelRecord.series_step == epoch,
        )
    )
    if found is not None:
        return None
    data = weights_bytes(model, params["architecture"])
    row = ModelRecord(
        workspace_id=run.workspace_id, name=f"{run.name} · epoch {epoch}",
        filename=f"{params['architecture']}.safetensors", blob_key=jobs.blobs().put(data),
        size_bytes=len(data), labels=labels, architecture=params["architecture"],
        series=run.series, series_step=epoch,
    )  # fmt: skip
    s.add(row)
    s.flush()
    return str(row.id)


def _evaluate(run_id: str, model_id: str, params: dict[str, Any]) -> str | None:
    """Start the exact analysis of the final model on the first test images, if it can."""
    spec = params["evaluate"]
    with session_scope() as s:
        run = s.get_one(TrainingRun, run_id)
        if s.get_one(ModelRecord, model_id).status != "ready":
            return None
        dataset = s.get_one(DatasetRecord, run.dataset_id)
        workspace = s.get_one(Workspace, run.workspace_id)
        body = AnalysisCreate(
            model_id=model_id, dataset_id=dataset.id, dataset_pick="first",
            dataset_k=int(spec["images"]), grid=spec["grid"], baseline=spec["baseline"],
            output=spec["output"], target="predicted",
        )  # fmt: skip
        analysis = analyses_service.create(
            s, workspace=workspace, body=body, settings=get_settings(), blobs=jobs.blobs()
        )
        analysis.name = f"{run.name}: interactions of the trained model"
        analysis_id = str(analysis.id)
    enqueue(TASK_START_ANALYSIS, analysis_id)
    return analysis_id


def _onnx_bytes(model: torch.nn.Module, architecture: str) -> bytes:
    """The trained model as ONNX (input ``input``, output ``logits``, any batch size)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, architecture=architecture)
        return path.read_bytes()


def _init_state(model: ModelRecord) -> dict[str, torch.Tensor]:
    import safetensors.torch

    return dict(safetensors.torch.load(jobs.blobs().get(model.blob_key)))


def _fit_input(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Images ``[N, C, H, W]`` in [0, 1] → the architecture's input shape."""
    c, h, w = shape
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    if x.shape[1] != c:
        x = x.mean(dim=1, keepdim=True).expand(-1, c, -1, -1).contiguous()
    return x


def _data(
    dataset: DatasetRecord, params: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str] | None]:
    """``(train_x, train_y, test_x, test_y, class labels)`` in the architecture's input space."""
    shape = ARCHITECTURES[params["architecture"]].input_shape
    n_train, n_test = int(params["n_train"]), int(params["n_test"])
    if dataset.kind == "digits":
        train_x, train_y, test_x, test_y = split_digits(*load_digits_16())
        return (
            _fit_input(train_x[:n_train], shape), train_y[:n_train],
            _fit_input(test_x, shape), test_y, [str(d) for d in range(10)],
        )  # fmt: skip
    assert dataset.blob_key is not None
    data = jobs.blobs().get(dataset.blob_key)
    settings = get_settings()
    manifest = read_manifest(
        data,
        max_images=settings.max_dataset_images,
        max_uncompressed=4 * settings.max_dataset_bytes,
    )
    if manifest.labels is None:
        raise ValueError("the image set has no labels (one folder per class)")
    c, h, w = shape
    # held out: the first images in the set's order, the very ones the evaluation analysis
    # picks ("the first k"); training takes the rest
    ranked = dataset_order(manifest.files)
    held, rest = ranked[:n_test], ranked[n_test:]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        x = torch.stack(
            [
                load_image(archive.read(manifest.files[k]), channels=c, size=(h, w))
                for k in rest + held
            ]
        )
    y = torch.tensor([manifest.labels[k] for k in rest + held])
    test = len(rest)
    classes = ARCHITECTURES[params["architecture"]].num_classes
    names = list(dataset.class_names or [])
    labels = names + [f"(unused {k})" for k in range(len(names), classes)]
    return x[: min(n_train, test)], y[: min(n_train, test)], x[test:], y[test:], labels
