"""Feature components of different complexity (SCIENCE.md §7): jobs and their results.

The owner's routes live under ``/components``; the read-only result routes are built by
:func:`component_results_router` for the owner (``/components/{job_id}``) and for a share
link (``/shared-components/{token}``), each with its own way to find the job.

No ``from __future__ import annotations`` here: the result routes' signatures use ``JobDep``,
an alias local to :func:`component_results_router`, which FastAPI must see as an object.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from backend import figures, results
from backend.api.deps import BlobsDep, SessionDep, SettingsDep, WorkspaceDep
from backend.api.present import present_job
from backend.config import Settings
from backend.db.models import ComponentJob, ModelRecord
from backend.errors import ClientError
from backend.queue import TASK_RUN_COMPONENTS, enqueue
from backend.schemas import (
    ComponentJobCreate,
    ComponentJobPublic,
    ComponentJobsPublic,
    RunLabelsUpdate,
)
from backend.services import components as service
from backend.services import runs

router = APIRouter(prefix="/components", tags=["components"])


@router.post("", response_model=ComponentJobPublic, status_code=201)
def create_job(
    body: ComponentJobCreate, session: SessionDep, workspace: WorkspaceDep, settings: SettingsDep
) -> ComponentJobPublic:
    """Queue a component analysis; ``orders``, ``width``, ``epochs`` and ``max_samples`` are
    capped by the ``CONCEPTLENS_MAX_COMPONENT_*`` settings (422 past them)."""
    check_limits(body, settings)
    job = service.create(session, workspace=workspace, body=body)
    enqueue(TASK_RUN_COMPONENTS, job.id)
    return present_job(session, job)


def check_limits(body: ComponentJobCreate, settings: Settings) -> None:
    """A 422 naming the first parameter past its configured cap."""
    caps = {
        "width": (body.width, settings.max_component_width),
        "epochs": (body.epochs, settings.max_component_epochs),
        "max_samples": (body.max_samples, settings.max_component_samples),
        "orders": (max(body.orders), settings.max_component_order),
    }
    for name, (value, cap) in caps.items():
        if value > cap:
            what = "every order" if name == "orders" else name
            raise ClientError(f"{what} must be at most {cap}; {value} is too large.", 422)


@router.get("", response_model=ComponentJobsPublic)
def list_jobs(
    session: SessionDep,
    workspace: WorkspaceDep,
    model_id: Annotated[
        str | None, Query(max_length=64, description="only those of (or compared with) this model")
    ] = None,
    dataset_id: Annotated[
        str | None, Query(max_length=64, description="only this image set's")
    ] = None,
    tag: Annotated[str | None, Query(max_length=40, description="only those with this tag")] = None,
) -> ComponentJobsPublic:
    """The workspace's component analyses, newest first; each filter given narrows the list."""
    rows = runs.filter_jobs(
        service.visible(session, workspace=workspace),
        model_id=model_id,
        dataset_id=dataset_id,
        tag=tag,
    )
    return ComponentJobsPublic(data=[present_job(session, r) for r in rows], count=len(rows))


@router.patch("/{job_id}", response_model=ComponentJobPublic)
def label_job(
    job_id: str, body: RunLabelsUpdate, session: SessionDep, workspace: WorkspaceDep
) -> ComponentJobPublic:
    """Name, annotate or tag the component analysis (fields left out stay as they are)."""
    job = service.get(session, workspace=workspace, job_id=job_id)
    runs.label(session, job, body)
    return present_job(session, job)


@router.post("/{job_id}/cancel", response_model=ComponentJobPublic)
def cancel_job(job_id: str, session: SessionDep, workspace: WorkspaceDep) -> ComponentJobPublic:
    job = service.get(session, workspace=workspace, job_id=job_id)
    service.cancel(session, job)
    return present_job(session, job)


@router.post("/{job_id}/retry", response_model=ComponentJobPublic)
def retry_job(job_id: str, session: SessionDep, workspace: WorkspaceDep) -> ComponentJobPublic:
    job = service.get(session, workspace=workspace, job_id=job_id)
    service.retry(session, job)
    enqueue(TASK_RUN_COMPONENTS, job.id)
    return present_job(session, job)


@router.delete("/{job_id}", status_code=204)
def delete_job(job_id: str, session: SessionDep, workspace: WorkspaceDep) -> None:
    """Delete the component analysis and its share links; a queued or running one is
    cancelled first (its worker stops at its next epoch and writes nothing)."""
    service.delete(session, service.get(session, workspace=workspace, job_id=job_id))


@router.get("/compare/significance")
def compare(ids: str, session: SessionDep, workspace: WorkspaceDep) -> dict[str, Any]:
    """``ρ^(l)`` of several finished analyses on one chart (``ids`` comma-separated)."""
    series = []
    for job_id in [i for i in ids.split(",") if i]:
        job = service.get(session, workspace=workspace, job_id=job_id)
        if job.kind != "components":
            raise ClientError(f"Analysis {job_id} is not a component analysis.", 409)
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


def component_results_router(prefix: str, tag: str, find: Callable[..., ComponentJob]) -> APIRouter:
    """The read-only routes of one component analysis under ``prefix``; ``find`` is the
    dependency that resolves the job from the path's parameter."""
    results_router = APIRouter(prefix=prefix, tags=[tag])
    JobDep = Annotated[ComponentJob, Depends(find)]

    @results_router.get("", response_model=ComponentJobPublic)
    def get_job(job: JobDep, session: SessionDep) -> ComponentJobPublic:
        return present_job(session, job)

    @results_router.get("/figures")
    def job_figures(job: JobDep) -> dict[str, Any]:
        """Plotly JSON: significance by order (with fit quality), reliability, effects."""
        if job.metrics is None:
            raise ClientError(f"The component analysis has no results yet ({job.status}).", 409)
        return figures.component_figures(job.metrics)

    @results_router.get("/maps")
    def component_maps(
        job: JobDep, blobs: BlobsDep, index: int = 0, channel: int | None = None
    ) -> dict[str, Any]:
        """Component maps of the ``index``-th stored test image at ``channel`` (default: the
        most activated), with a Plotly figure."""
        if job.kind != "components":
            raise ClientError("A knowledge-consistency analysis has no component maps.", 409)
        if job.status != "done":
            raise ClientError(f"The component analysis has no results yet ({job.status}).", 409)
        if job.result_key is None:
            note = ((job.metrics or {}).get("notes") or {}).get("maps")
            raise ClientError(f"No component maps: {note or 'none were stored'}.")
        out = results.component_map(results.load(blobs.get(job.result_key)), index, channel)
        out["figure"] = figures.component_maps_figure(
            out["image"], out["feature"], out["components"], out["residual"], out["orders"],
            out["channel"], most_activated=out["channel"] == out["most_activated"],
        )  # fmt: skip
        return out

    return results_router
