"""The workspace of the caller: created on a browser's first visit, or for a script."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from backend.api.deps import COOKIE, SessionDep, SettingsDep, workspace_secret
from backend.config import Settings
from backend.schemas import WorkspacePublic
from backend.services import workspaces

router = APIRouter(prefix="/workspace", tags=["workspace"])

ONE_YEAR = 365 * 24 * 3600


@router.get("", response_model=WorkspacePublic)
def get_or_create(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> WorkspacePublic:
    """The caller's workspace; a browser without one gets a new one (and its cookie)."""
    secret = workspace_secret(request)
    if secret is not None:
        found = workspaces.by_secret(session, secret=secret)
        if found is not None:
            return WorkspacePublic(id=found.id)
    return _create(session, response, secure=over_https(request, settings))


@router.post("", response_model=WorkspacePublic, status_code=201)
def create(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> WorkspacePublic:
    """A new workspace. Scripts send the secret back as ``Authorization: Bearer <secret>``."""
    return _create(session, response, secure=over_https(request, settings))


def over_https(request: Request, settings: Settings) -> bool:
    """Whether the browser reached us over HTTPS: the request's own scheme, or a proxy's
    ``X-Forwarded-Proto`` when ``CONCEPTLENS_TRUST_FORWARDED_HEADERS`` says to believe it."""
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return settings.trust_forwarded_headers and forwarded == "https"


def _create(session: SessionDep, response: Response, *, secure: bool) -> WorkspacePublic:
    workspace, secret = workspaces.create(session)
    response.set_cookie(
        COOKIE, secret, max_age=ONE_YEAR, httponly=True, samesite="lax", path="/", secure=secure
    )
    return WorkspacePublic(id=workspace.id, secret=secret)
