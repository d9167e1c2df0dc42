"""Queries on images: the workspace's own and the built-in samples."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.db.models import ImageRecord, Workspace


def visible(session: Session, *, workspace: Workspace) -> list[ImageRecord]:
    query = (
        select(ImageRecord)
        .where(or_(ImageRecord.workspace_id == workspace.id, ImageRecord.workspace_id.is_(None)))
        .order_by(ImageRecord.builtin.desc(), ImageRecord.created_at.desc(), ImageRecord.name)
    )
    return list(session.scalars(query))


def get(session: Session, *, workspace: Workspace, image_id: str) -> ImageRecord | None:
    row = session.get(ImageRecord, image_id)
    if row is None or row.workspace_id not in (None, workspace.id):
        return None
    return row
