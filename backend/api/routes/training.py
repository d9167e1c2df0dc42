"""Training runs with the order losses L+ and L− (SCIENCE.md §5, seed 000).

A run trains a project architecture on a labelled image set; checkpoints land as a model
series while it runs, the final weights as an ordinary model, and an exact analysis of that
model measures where its interactions lie. An *experiment* is runs started together, one per
preset, compared side by side on the bottleneck page.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from backend.api.deps import BlobsDep, SessionDep, SettingsDep, WorkspaceDep
from backend.db.models import DatasetRecord, TrainingRun
from backend.errors import ClientError
from backend.queue import TASK_TRAIN, enqueue
from backend.schemas import (
    TrainingExperimentCreate,
    TrainingRunCreate,
    TrainingRunPublic,
    TrainingRunsPublic,
)
from backend.services import analyses
from backend.services import training as service

router = APIRouter(prefix="/training-runs", tags=["training"])


def present(session: Session, run: TrainingRun) -> TrainingRunPublic:
    dataset = session.get(DatasetRecord, run.dataset_id)
    metrics = run.metrics and {k: v for k, v in run.metrics.items() if not k.endswith("_key")}
    return TrainingRunPublic.model_validate(run).model_copy(
        update={
            "dataset_name": dataset.name if dataset else None,
            "eta_seconds": analyses.eta_seconds(run, run.progress_done, run.progress_total),
            "metrics": metrics,
        }
    )


def _listing(session: Session, runs: list[TrainingRun]) -> TrainingRunsPublic:
    return TrainingRunsPublic(data=[present(session, r) for r in runs], count=len(runs))


@router.post("", response_model=TrainingRunPublic, status_code=201)
def create_run(
    body: TrainingRunCreate, session: SessionDep, workspace: WorkspaceDep, settings: SettingsDep
) -> TrainingRunPublic:
    """Queue one training run. The preset sets the order-loss terms unless ``plus`` or
    ``minus`` are given (then those are used as given, the preset's others dropped)."""
    run = service.create(session, workspace=workspace, body=body, settings=settings)
    enqueue(TASK_TRAIN, run.id)
    return present(session, run)


@router.post("/experiment", response_model=TrainingRunsPublic, status_code=201)
def create_experiment(
    body: TrainingExperimentCreate,
    session: SessionDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
) -> TrainingRunsPublic:
    """Queue one run per preset (default: normal, encourage low, middle, high) with the
    other settings shared; the runs share an ``experiment`` id for the bottleneck page."""
    runs = service.create_experiment(session, workspace=workspace, body=body, settings=settings)
    for run in runs:
        enqueue(TASK_TRAIN, run.id)
    return _listing(session, runs)


@router.get("", response_model=TrainingRunsPublic)
def list_runs(
    session: SessionDep,
    workspace: WorkspaceDep,
    experiment: str | None = Query(default=None, max_length=32),
) -> TrainingRunsPublic:
    """The workspace's runs, newest first; ``experiment`` keeps one experiment's."""
    return _listing(session, service.visible(session, workspace=workspace, experiment=experiment))


@router.get("/{run_id}", response_model=TrainingRunPublic)
def get_run(run_id: str, session: SessionDep, workspace: WorkspaceDep) -> TrainingRunPublic:
    return present(session, service.get(session, workspace=workspace, run_id=run_id))


@router.post("/{run_id}/cancel", response_model=TrainingRunPublic)
def cancel_run(run_id: str, session: SessionDep, workspace: WorkspaceDep) -> TrainingRunPublic:
    run = service.get(session, workspace=workspace, run_id=run_id)
    service.cancel(session, run)
    return present(session, run)


@router.post("/{run_id}/retry", response_model=TrainingRunPublic)
def retry_run(run_id: str, session: SessionDep, workspace: WorkspaceDep) -> TrainingRunPublic:
    run = service.get(session, workspace=workspace, run_id=run_id)
    service.retry(session, run)
    enqueue(TASK_TRAIN, run.id)
    return present(session, run)


@router.get(
    "/{run_id}/model.{fmt}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_model(
    run_id: str, fmt: Literal["safetensors", "onnx"], session: SessionDep,
    workspace: WorkspaceDep, blobs: BlobsDep,
) -> Response:  # fmt: skip
    """The trained model as safetensors (weights with their architecture, what
    ``init_model_id`` and the Models page take) or ONNX (input ``input``, output ``logits``)."""
    run = service.get(session, workspace=workspace, run_id=run_id)
    key = (run.metrics or {}).get(f"{fmt}_key")
    if run.status != "done" or key is None:
        raise ClientError(f"The training run has no trained model yet ({run.status}).", 409)
    filename = f"{run.params['architecture']}-{run.id[:8]}.{fmt}"
    return Response(
        blobs.get(key), media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )  # fmt: skip


@router.delete("/{run_id}", status_code=204)
def delete_run(run_id: str, session: SessionDep, workspace: WorkspaceDep) -> Response:
    """Delete the run's record (cancelling it first if it is still queued or running); the
    models it produced stay."""
    service.delete(session, service.get(session, workspace=workspace, run_id=run_id))
    return Response(status_code=204)
