"""Analyses: create (with its cost), list, get (progress, ETA), cancel, retry, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import BlobsDep, OwnedAnalysisDep, SessionDep, SettingsDep, WorkspaceDep
from backend.api.present import present_analysis
from backend.queue import TASK_START_ANALYSIS, enqueue
from backend.schemas import AnalysesPublic, AnalysisCreate, AnalysisPublic
from backend.services import analyses as service

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
def list_analyses(session: SessionDep, workspace: WorkspaceDep) -> AnalysesPublic:
    rows = service.visible(session, workspace=workspace)
    return AnalysesPublic(data=[present_analysis(session, r) for r in rows], count=len(rows))


@router.get("/{analysis_id}", response_model=AnalysisPublic)
def get_analysis(analysis: OwnedAnalysisDep, session: SessionDep) -> AnalysisPublic:
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
    analysis.cancel_requested = True  # running tasks stop at their next batch
    session.commit()
    session.delete(analysis)
    session.commit()
