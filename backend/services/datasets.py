"""Queries on image sets: the workspace's own and the built-in demo digits."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.db.models import DatasetRecord, Workspace


def visible(session: Session, *, workspace: Workspace) -> list[DatasetRecord]:
    query = (
        select(DatasetRecord)
        .where(
            or_(DatasetRecord.workspace_id == workspace.id, DatasetRecord.workspace_id.is_(None))
        )
        .order_by(DatasetRecord.builtin.desc(), DatasetRecord.created_at.desc())
    )
    return list(session.scalars(query))


def get(session: Session, *, workspace: Workspace, dataset_id: str) -> DatasetRecord | None:
    row = session.get(DatasetRecord, dataset_id)
    if row is None or row.workspace_id not in (None, workspace.id):
        return None
    return row
