"""Share links: an unguessable token (256 bits) opens one analysis read-only, no account."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import select

from backend.api.deps import (
    OwnedAnalysisDep,
    SessionDep,
    WorkspaceDep,
    current_workspace,
    owned_analysis,
)
from backend.db.base import utcnow
from backend.db.models import Analysis, ShareLink
from backend.schemas import SharePublic, SharesPublic

router = APIRouter(tags=["shares"])


def present(link: ShareLink, request: Request) -> SharePublic:
    return SharePublic(
        id=link.id,
        analysis_id=link.analysis_id,
        token=link.token,
        url=str(request.url_for("shared_page", token=link.token)),
        created_at=link.created_at,
        revoked=link.revoked_at is not None,
    )


@router.post("/analyses/{analysis_id}/shares", response_model=SharePublic, status_code=201)
def create_share(analysis: OwnedAnalysisDep, request: Request, session: SessionDep) -> SharePublic:
    link = ShareLink(analysis_id=analysis.id, token=secrets.token_urlsafe(32))
    session.add(link)
    session.commit()
    return present(link, request)


@router.get("/analyses/{analysis_id}/shares", response_model=SharesPublic)
def list_shares(analysis: OwnedAnalysisDep, request: Request, session: SessionDep) -> SharesPublic:
    links = session.scalars(
        select(ShareLink).where(ShareLink.analysis_id == analysis.id).order_by(ShareLink.created_at)
    ).all()
    return SharesPublic(data=[present(link, request) for link in links], count=len(links))


@router.delete("/shares/{share_id}", status_code=204)
def revoke_share(share_id: str, session: SessionDep, workspace: WorkspaceDep) -> None:
    link = session.get(ShareLink, share_id)
    analysis = session.get(Analysis, link.analysis_id) if link else None
    if link is None or analysis is None or analysis.workspace_id != workspace.id:
        raise HTTPException(404, "No such share link in this workspace.")
    link.revoked_at = link.revoked_at or utcnow()
    session.commit()


def shared_analysis(token: str, session: SessionDep) -> Analysis:
    """The analysis a live share token opens (a dependency of the shared result routes)."""
    link = session.scalar(select(ShareLink).where(ShareLink.token == token))
    if link is None or link.revoked_at is not None:
        raise HTTPException(404, "This share link does not exist or has been revoked.")
    return session.get_one(Analysis, link.analysis_id)


def readable_analysis(request: Request, session: SessionDep) -> Analysis:
    """The analysis of a result route: by share token (no workspace needed), or by id within
    the caller's workspace."""
    token = request.path_params.get("token")
    if token is not None:
        return shared_analysis(token, session)
    workspace = current_workspace(request, session)
    return owned_analysis(request.path_params["analysis_id"], session, workspace)
