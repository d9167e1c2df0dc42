"""Analyses: create (with its cost), list (filtered), get (progress, ETA), name/note/tags,
cancel, retry, delete."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from backend.api.deps import (
    BlobsDep,
    OwnedAnalysisDep,
    OwnedAnalysisResultsDep,
    SessionDep,
    SettingsDep,
    WorkspaceDep,
)
from backend.api.present import present_analysis
from backend.queue import TASK_START_ANALYSIS, enqueue
from backend.schemas import AnalysesPublic, AnalysisCreate, AnalysisPublic, RunLabelsUpdate
from backend.services import analyses as service
from backend.services import runs

router = APIRouter(prefix="/analyses", tags=["analyses"])


@router.post("", response_model=AnalysisPublic, status_code=201)
def create_analysis(
    body: AnalysisCreate,
    session: SessionDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    blobs: BlobsDep,
) -> AnalysisPublic:
    """Queue an analysis; ``forward_passes`` says what it will cost (cached tables are free)."""
    analysis = service.create(
        session, workspace=workspace, body=body, settings=settings, blobs=blobs
    )
    enqueue(TASK_START_ANALYSIS, analysis.id)
    return present_analysis(session, analysis)


@router.post("/estimate")
def estimate_analysis(
    body: AnalysisCreate, session: SessionDep, workspace: WorkspaceDep, settings: SettingsDep
) -> dict[str, Any]:
    """What an analysis would cost (images, forward passes; for a sampled one its orders and
    pairs), checked like a real request but not created: the form's cost line."""
    return service.estimate(session, workspace=workspace, body=body, settings=settings)


@router.get("", response_model=AnalysesPublic)
def list_analyses(
    session: SessionDep,
    workspace: WorkspaceDep,
    model_id: Annotated[str | None, Query(max_length=64, description="only this model's")] = None,
    dataset_id: Annotated[
        str | None, Query(max_length=64, description="only those of this image set's images")
    ] = None,
    tag: Annotated[str | None, Query(max_length=40, description="only those with this tag")] = None,
    mode: Annotated[
        Literal["exact", "sampled", "stability", "dynamics"] | None,
        Query(description="only this kind of analysis"),
    ] = None,
) -> AnalysesPublic:
    """The workspace's analyses, newest first; each filter given narrows the list."""
    rows = runs.filter_analyses(
        session,
        service.visible(session, workspace=workspace),
        model_id=model_id,
        dataset_id=dataset_id,
        tag=tag,
        mode=mode,
    )
    return AnalysesPublic(data=[present_analysis(session, r) for r in rows], count=len(rows))


@router.get("/{analysis_id}", response_model=AnalysisPublic)
def get_analysis(analysis: OwnedAnalysisResultsDep, session: SessionDep) -> AnalysisPublic:
    return present_analysis(session, analysis)


@router.patch("/{analysis_id}", response_model=AnalysisPublic)
def label_analysis(
    body: RunLabelsUpdate, analysis: OwnedAnalysisDep, session: SessionDep
) -> AnalysisPublic:
    """Name, annotate or tag the analysis (fields left out stay as they are)."""
    runs.label(session, analysis, body)
    return present_analysis(session, analysis)


@router.post("/{analysis_id}/cancel", response_model=AnalysisPublic)
def cancel_analysis(analysis: OwnedAnalysisDep, session: SessionDep) -> AnalysisPublic:
    service.cancel(session, analysis)
    return present_analysis(session, analysis)


@router.post("/{analysis_id}/retry", response_model=AnalysisPublic)
def retry_analysis(analysis: OwnedAnalysisDep, session: SessionDep) -> AnalysisPublic:
    service.retry(session, analysis)
    enqueue(TASK_START_ANALYSIS, analysis.id)
    return present_analysis(session, analysis)


@router.delete("/{analysis_id}", status_code=204)
def delete_analysis(analysis: OwnedAnalysisDep, session: SessionDep) -> None:
    """Delete the analysis with its results and share links; a queued or running one is
    cancelled first (its workers stop at their next batch and write nothing)."""
    runs.delete_analysis(session, analysis)
