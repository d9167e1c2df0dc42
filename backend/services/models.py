"""Queries on models: list, get (own or built-in), create, delete."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.db.models import ModelRecord, Workspace


def visible(session: Session, *, workspace: Workspace) -> list[ModelRecord]:
    query = (
        select(ModelRecord)
        .where(or_(ModelRecord.workspace_id == workspace.id, ModelRecord.workspace_id.is_(None)))
        .order_by(ModelRecord.builtin.desc(), ModelRecord.created_at.desc())
    )
    return list(session.scalars(query))


def get(session: Session, *, workspace: Workspace, model_id: str) -> ModelRecord | None:
    row = session.get(ModelRecord, model_id)
    if row is None or row.workspace_id not in (None, workspace.id):
        return None
    return row
