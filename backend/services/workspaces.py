"""Workspaces: a secret in the browser's cookie (or a bearer header) owns resources."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import Workspace
from backend.storage import sha256_hex


def hash_secret(secret: str) -> str:
    return sha256_hex(secret.encode())


def create(session: Session) -> tuple[Workspace, str]:
    """A new workspace and its secret (256 random bits; only its hash is stored)."""
    secret = secrets.token_urlsafe(32)
    workspace = Workspace(secret_hash=hash_secret(secret))
    session.add(workspace)
    session.commit()
    return workspace, secret


def by_secret(session: Session, *, secret: str) -> Workspace | None:
    return session.scalar(select(Workspace).where(Workspace.secret_hash == hash_secret(secret)))
