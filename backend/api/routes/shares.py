"""Share links: an unguessable token (256 bits) opens one result read-only, no account.

A link points at an interaction analysis (page ``/s/{token}``, API ``/api/shared/{token}``)
or at a component analysis (page ``/s/c/{token}``, API ``/api/shared-components/{token}``).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import ColumnElement, select

from backend.api.deps import (
    OwnedAnalysisDep,
    SessionDep,
    WorkspaceDep,
)
from backend.db.base import utcnow
from backend.db.models import Analysis, ComponentJob, ShareLink
from backend.schemas import SharePublic, SharesPublic
from backend.services import analyses, components

router = APIRouter(tags=["shares"])

_GONE = "This share link does not exist or has been revoked."


def present(link: ShareLink, request: Request) -> SharePublic:
    page = "shared_page" if link.analysis_id else "shared_components_page"
    return SharePublic(
        id=link.id,
        analysis_id=link.analysis_id,
        component_job_id=link.component_job_id,
        token=link.token,
        url=str(request.url_for(page, token=link.token)),
        created_at=link.created_at,
        revoked=link.revoked_at is not None,
    )


def _create(session: SessionDep, request: Request, link: ShareLink) -> SharePublic:
    link.token = secrets.token_urlsafe(32)
    session.add(link)
    session.commit()
    return present(link, request)


def _listed(session: SessionDep, request: Request, where: ColumnElement[bool]) -> SharesPublic:
    links = session.scalars(select(ShareLink).where(where).order_by(ShareLink.created_at)).all()
    return SharesPublic(data=[present(link, request) for link in links], count=len(links))


def owned_job(job_id: str, session: SessionDep, workspace: WorkspaceDep) -> ComponentJob:
    """The component analysis ``job_id`` of the caller's workspace, or 404."""
    return components.get(session, workspace=workspace, job_id=job_id)


OwnedJobDep = Annotated[ComponentJob, Depends(owned_job)]


@router.post("/analyses/{analysis_id}/shares", response_model=SharePublic, status_code=201)
def create_share(analysis: OwnedAnalysisDep, request: Request, session: SessionDep) -> SharePublic:
    return _create(session, request, ShareLink(analysis_id=analysis.id))


@router.get("/analyses/{analysis_id}/shares", response_model=SharesPublic)
def list_shares(analysis: OwnedAnalysisDep, request: Request, session: SessionDep) -> SharesPublic:
    return _listed(session, request, ShareLink.analysis_id == analysis.id)


@router.post("/components/{job_id}/shares", response_model=SharePublic, status_code=201)
def create_component_share(job: OwnedJobDep, request: Request, session: SessionDep) -> SharePublic:
    return _create(session, request, ShareLink(component_job_id=job.id))


@router.get("/components/{job_id}/shares", response_model=SharesPublic)
def list_component_shares(job: OwnedJobDep, request: Request, session: SessionDep) -> SharesPublic:
    return _listed(session, request, ShareLink.component_job_id == job.id)


@router.delete("/shares/{share_id}", status_code=204)
def revoke_share(share_id: str, session: SessionDep, workspace: WorkspaceDep) -> None:
    link = session.get(ShareLink, share_id)
    target: Analysis | ComponentJob | None = None
    if link is not None and link.analysis_id:
        target = session.get(Analysis, link.analysis_id)
    elif link is not None and link.component_job_id:
        target = session.get(ComponentJob, link.component_job_id)
    if link is None or target is None or target.workspace_id != workspace.id:
        raise HTTPException(404, "No such share link in this workspace.")
    link.revoked_at = link.revoked_at or utcnow()
    session.commit()


def _live_link(token: str, session: SessionDep) -> ShareLink:
    link = session.scalar(select(ShareLink).where(ShareLink.token == token))
    if link is None or link.revoked_at is not None:
        raise HTTPException(404, _GONE)
    return link


def shared_analysis(token: str, session: SessionDep) -> Analysis:
    """The analysis a live share token opens (a dependency of the shared page, its result
    routes and comparisons): the items without their chunks, which none of them reads."""
    link = _live_link(token, session)
    if link.analysis_id is None:
        raise HTTPException(404, "This share link opens a component analysis, not an analysis.")
    return session.get_one(Analysis, link.analysis_id, options=[analyses.ITEMS_WITHOUT_CHUNKS])


def shared_job(token: str, session: SessionDep) -> ComponentJob:
    """The component analysis a live share token opens."""
    link = _live_link(token, session)
    if link.component_job_id is None:
        raise HTTPException(404, "This share link opens an analysis, not a component analysis.")
    return session.get_one(ComponentJob, link.component_job_id)
