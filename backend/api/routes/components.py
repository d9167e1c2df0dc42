"""Feature components of different complexity (SCIENCE.md §7): jobs and their results."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend import figures, results
from backend.api.deps import BlobsDep, SessionDep, WorkspaceDep
from backend.db.models import ComponentJob, ModelRecord
from backend.errors import ClientError
from backend.queue import TASK_RUN_COMPONENTS, enqueue
from backend.schemas import ComponentJobCreate, ComponentJobPublic, ComponentJobsPublic
from backend.services import components as service

router = APIRouter(prefix="/components", tags=["components"])


@router.post("", response_model=ComponentJobPublic, status_code=201)
def create_job(
    body: ComponentJobCreate, session: SessionDep, workspace: WorkspaceDep
) -> ComponentJob:
    job = service.create(session, workspace=workspace, body=body)
    enqueue(TASK_RUN_COMPONENTS, job.id)
    return job


@router.get("", response_model=ComponentJobsPublic)
def list_jobs(session: SessionDep, workspace: WorkspaceDep) -> ComponentJobsPublic:
    rows = service.visible(session, workspace=workspace)
    return ComponentJobsPublic(
        data=[ComponentJobPublic.model_validate(r) for r in rows], count=len(rows)
    )


@router.get("/{job_id}", response_model=ComponentJobPublic)
def get_job(job_id: str, session: SessionDep, workspace: WorkspaceDep) -> ComponentJob:
    return service.get(session, workspace=workspace, job_id=job_id)


@router.post("/{job_id}/cancel", response_model=ComponentJobPublic)
def cancel_job(job_id: str, session: SessionDep, workspace: WorkspaceDep) -> ComponentJob:
    job = service.get(session, workspace=workspace, job_id=job_id)
    service.cancel(session, job)
    return job


@router.post("/{job_id}/retry", response_model=ComponentJobPublic)
def retry_job(job_id: str, session: SessionDep, workspace: WorkspaceDep) -> ComponentJob:
    job = service.get(session, workspace=workspace, job_id=job_id)
    service.retry(session, job)
    enqueue(TASK_RUN_COMPONENTS, job.id)
    return job


@router.delete("/{job_id}", status_code=204)
def delete_job(job_id: str, session: SessionDep, workspace: WorkspaceDep) -> None:
    job = service.get(session, workspace=workspace, job_id=job_id)
    job.cancel_requested = True
    session.commit()
    session.delete(job)
    session.commit()


@router.get("/compare/significance")
def compare(ids: str, session: SessionDep, workspace: WorkspaceDep) -> dict[str, Any]:
    """``ρ^(l)`` of several finished analyses on one chart (``ids`` comma-separated)."""
    series = []
    for job_id in [i for i in ids.split(",") if i]:
        job = service.get(session, workspace=workspace, job_id=job_id)
        if job.metrics is None:
            raise ClientError(f"Analysis {job_id} has no results yet ({job.status}).", 409)
        model = session.get_one(ModelRecord, job.model_id)
        series.append(
            (
                f"{model.name} · {job.layer}",
                job.metrics["orders"],
                job.metrics["significance"]["component"],
            )
        )
    if len(series) < 2:
        raise ClientError("Give at least two analyses to compare.")
    return figures.compare_significance(series)


@router.get("/{job_id}/figures")
def job_figures(job_id: str, session: SessionDep, workspace: WorkspaceDep) -> dict[str, Any]:
    """Plotly JSON: significance by order (with fit quality), reliability, effects."""
    job = service.get(session, workspace=workspace, job_id=job_id)
    if job.metrics is None:
        raise ClientError(f"The component analysis has no results yet ({job.status}).", 409)
    return figures.component_figures(job.metrics)


@router.get("/{job_id}/maps")
def component_maps(
    job_id: str, session: SessionDep, workspace: WorkspaceDep, blobs: BlobsDep, index: int = 0
) -> dict[str, Any]:
    """Component maps (most activated channel) of the ``index``-th stored test image."""
    job = service.get(session, workspace=workspace, job_id=job_id)
    if job.status != "done" or job.result_key is None:
        raise ClientError(f"The component analysis has no results yet ({job.status}).", 409)
    arrays = results.load(blobs.get(job.result_key))
    if not 0 <= index < len(arrays["images"]):
        raise ClientError(f"index must be in 0–{len(arrays['images']) - 1}.")
    orders, channel = arrays["orders"].tolist(), int(arrays["channels"][index])
    figure = figures.component_maps_figure(
        arrays["images"][index], arrays["features"][index], arrays["components"][index],
        arrays["residuals"][index], orders, channel,
    )  # fmt: skip
    return {
        "figure": figure,
        "count": len(arrays["images"]),
        "orders": orders,
        "channel": channel,
        "image": arrays["images"][index].tolist(),
        "feature": arrays["features"][index].tolist(),
        "components": arrays["components"][index].tolist(),
        "residual": arrays["residuals"][index].tolist(),
    }
