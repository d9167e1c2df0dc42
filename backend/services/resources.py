"""Queries shared by the workspace's resources that may also be built in (models, images,
image sets): rows of the caller's workspace plus the built-in ones (``workspace_id`` NULL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.interfaces import ORMOption

from backend.db.models import (
    Analysis,
    ComponentJob,
    DatasetRecord,
    ImageRecord,
    ModelRecord,
    Workspace,
)
from backend.errors import ClientError

R = TypeVar("R", ModelRecord, ImageRecord, DatasetRecord)
J = TypeVar("J", Analysis, ComponentJob)

#: How a person calls each resource in messages.
NOUNS = {ModelRecord: "model", ImageRecord: "image", DatasetRecord: "image set"}


def visible(session: Session, kind: type[R], *, workspace: Workspace) -> list[R]:
    """Built-in rows first, by name; then the workspace's own, newest first."""
    query = (
        select(kind)
        .where(or_(kind.workspace_id == workspace.id, kind.workspace_id.is_(None)))
        .order_by(kind.created_at.desc())
    )
    if kind is ImageRecord:  # images taken from an image set are listed with the set
        query = query.where(ImageRecord.dataset_id.is_(None))
    rows = list(session.scalars(query))
    return sorted(rows, key=lambda r: (not r.builtin, r.name if r.builtin else ""))


def find(session: Session, kind: type[R], *, workspace: Workspace, id: str) -> R | None:
    row = session.get(kind, id)
    if row is None or row.workspace_id not in (None, workspace.id):
        return None
    return row


def get(session: Session, kind: type[R], *, workspace: Workspace, id: str) -> R:
    """The row, or a 404 naming the resource; another workspace's rows are not found."""
    row = find(session, kind, workspace=workspace, id=id)
    if row is None:
        raise ClientError(f"No such {NOUNS[kind]} in this workspace.", 404)
    return row


def delete(session: Session, row: ModelRecord | ImageRecord | DatasetRecord) -> None:
    """Delete a workspace's own row; built-in ones are refused (403)."""
    if row.builtin:
        raise ClientError(f"Built-in {NOUNS[type(row)]}s cannot be deleted.", 403)
    session.delete(row)
    session.commit()


def owned(
    session: Session, kind: type[J], *, workspace: Workspace, options: Sequence[ORMOption] = ()
) -> list[J]:
    """A workspace's jobs (analyses, component analyses), newest first; never built in.
    ``options``: loader options for the query."""
    query = select(kind).where(kind.workspace_id == workspace.id).order_by(kind.created_at.desc())
    return list(session.scalars(query.options(*options)))


def find_owned(
    session: Session,
    kind: type[J],
    *,
    workspace: Workspace,
    id: str,
    options: Sequence[ORMOption] = (),
) -> J | None:
    """The job ``id`` if it belongs to ``workspace``; ``options``: loader options."""
    row = session.get(kind, id, options=options)
    return row if row is not None and row.workspace_id == workspace.id else None
