"""Knowledge consistency between two models (SCIENCE.md §8): jobs and exports.

A consistency job is a component job of kind ``"consistency"``: it is read, cancelled,
retried, deleted and shared through the component routes (``/components/{job_id}``, its
figures, ``/shared-components/{token}``); this module adds its creation and list under
``/consistency``, and the exports (JSON, CSV, npz) of either kind of component job, built by
:func:`job_exports_router` for the owner and for a share link.

No ``from __future__ import annotations`` here: the export route's signature uses
``JobDep``, an alias local to :func:`job_exports_router`, which FastAPI must see as an object.
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.responses import Response

from backend import consistency as exports
from backend.api.deps import BlobsDep, SessionDep, SettingsDep, WorkspaceDep
from backend.api.present import present_job
from backend.api.routes.results import EXPORTS
from backend.config import Settings
from backend.db.models import ComponentJob
from backend.errors import ClientError
from backend.queue import TASK_RUN_COMPONENTS, enqueue
from backend.schemas import ComponentJobPublic, ComponentJobsPublic, ConsistencyJobCreate
from backend.services import components as service

router = APIRouter(prefix="/consistency", tags=["consistency"])


@router.post("", response_model=ComponentJobPublic, status_code=201)
def create_job(
    body: ConsistencyJobCreate, session: SessionDep, workspace: WorkspaceDep, settings: SettingsDep
) -> ComponentJobPublic:
    """Queue a knowledge-consistency analysis of model A at ``layer`` against model B at
    ``compare_layer``; ``width``, ``epochs`` and ``max_samples`` are capped by the
    ``CONCEPTLENS_MAX_COMPONENT_*`` settings (422 past them)."""
    check_limits(body, settings)
    job = service.create_consistency(session, workspace=workspace, body=body)
    enqueue(TASK_RUN_COMPONENTS, job.id)
    return present_job(session, job)


def check_limits(body: ConsistencyJobCreate, settings: Settings) -> None:
    """A 422 naming the first parameter past its configured cap."""
    caps = {
        "width": (body.width, settings.max_component_width),
        "epochs": (body.epochs, settings.max_component_epochs),
        "max_samples": (body.max_samples, settings.max_component_samples),
    }
    for name, (value, cap) in caps.items():
        if value > cap:
            raise ClientError(f"{name} must be at most {cap}; {value} is too large.", 422)


@router.get("", response_model=ComponentJobsPublic)
def list_jobs(session: SessionDep, workspace: WorkspaceDep) -> ComponentJobsPublic:
    """The workspace's knowledge-consistency analyses, newest first."""
    rows = service.visible(session, workspace=workspace, kind="consistency")
    return ComponentJobsPublic(data=[present_job(session, r) for r in rows], count=len(rows))


def job_exports_router(prefix: str, tag: str, find: Callable[..., ComponentJob]) -> APIRouter:
    """``{prefix}/export.{fmt}`` of a component or consistency job; ``find`` resolves it."""
    exports_router = APIRouter(prefix=prefix, tags=[tag])
    JobDep = Annotated[ComponentJob, Depends(find)]

    @exports_router.get("/export.{fmt}", response_class=Response, responses=EXPORTS)
    def export(
        fmt: Annotated[str, Path(description="npz, json or csv")], job: JobDep, blobs: BlobsDep
    ) -> Response:
        """The finished job's results: metrics as JSON; as CSV the variance of each part
        (consistency) or each order's fit and significance (components); as npz the stored
        arrays (per-channel variances, or component maps)."""
        if fmt not in ("npz", "json", "csv"):
            raise HTTPException(404, "Exports are npz, json or csv.")
        if job.status != "done" or job.metrics is None:
            raise ClientError(f"The analysis has no results yet ({job.status}).", 409)
        if fmt == "npz":
            if job.result_key is None:
                raise ClientError("This analysis stored no arrays; export JSON or CSV.", 409)
            body, media = blobs.get(job.result_key), "application/octet-stream"
        elif fmt == "json":
            body, media = exports.to_json(job.kind, job.metrics).encode(), "application/json"
        else:
            body, media = exports.to_csv(job.kind, job.metrics).encode(), "text/csv"
        name = f"conceptlens-{job.kind}-{job.id[:8]}"
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
        )

    return exports_router
