"""Dependencies as ``Annotated`` aliases: the session, settings, blobs, the workspace."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from sqlalchemy.orm.interfaces import ORMOption

from backend.config import Settings, get_settings
from backend.db.models import Analysis, Workspace
from backend.db.session import get_sessionmaker
from backend.services import analyses, workspaces
from backend.storage import LocalBlobStore

COOKIE = "conceptlens_workspace"


def get_session() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


def get_blobs(settings: Annotated[Settings, Depends(get_settings)]) -> LocalBlobStore:
    return LocalBlobStore(settings.blobs)


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BlobsDep = Annotated[LocalBlobStore, Depends(get_blobs)]


def workspace_secret(request: Request) -> str | None:
    """The secret from ``Authorization: Bearer …`` (scripts) or the browser's cookie."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.cookies.get(COOKIE)


def current_workspace(request: Request, session: SessionDep) -> Workspace:
    secret = workspace_secret(request)
    if secret is None:
        raise HTTPException(
            401,
            "No workspace: open the dashboard in a browser, or create one with "
            "POST /api/workspace and send its secret as 'Authorization: Bearer <secret>'.",
        )
    workspace = workspaces.by_secret(session, secret=secret)
    if workspace is None:
        raise HTTPException(401, "Unknown workspace secret.")
    return workspace


WorkspaceDep = Annotated[Workspace, Depends(current_workspace)]


def _owned_analysis(
    session: Session, workspace: Workspace, analysis_id: str, options: Sequence[ORMOption] = ()
) -> Analysis:
    analysis = analyses.get(session, workspace=workspace, analysis_id=analysis_id, options=options)
    if analysis is None:
        raise HTTPException(404, "No such analysis in this workspace.")
    return analysis


def owned_analysis(analysis_id: str, session: SessionDep, workspace: WorkspaceDep) -> Analysis:
    """The analysis ``analysis_id`` of the caller's workspace, or 404."""
    return _owned_analysis(session, workspace, analysis_id)


OwnedAnalysisDep = Annotated[Analysis, Depends(owned_analysis)]


def owned_analysis_results(
    analysis_id: str, session: SessionDep, workspace: WorkspaceDep
) -> Analysis:
    """:func:`owned_analysis` for the result routes and the analysis's page (polled while
    it runs): the items without their chunks."""
    return _owned_analysis(session, workspace, analysis_id, [analyses.ITEMS_WITHOUT_CHUNKS])


OwnedAnalysisResultsDep = Annotated[Analysis, Depends(owned_analysis_results)]
