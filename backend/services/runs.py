"""Organising runs (issue 13 §2): the name, note and tags of an analysis or a component
analysis, the filters of their lists, and deleting one.

Deleting a run that is still queued or running cancels it first, then removes it in one
transaction: its rows (an analysis's images and chunks, the share links) go together, and a
worker still on it finds its rows gone at its next batch and writes nothing. Blobs are
content-addressed and may be shared with other runs through the cache, so they stay until
``conceptlens gc`` finds them unreferenced (:mod:`backend.gc`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import Analysis, ComponentJob, DatasetRecord, ImageRecord
from backend.schemas import RunLabelsUpdate
from backend.services import analyses

Run = TypeVar("Run", Analysis, ComponentJob)

ACTIVE = ("queued", "running")


def label(session: Session, run: Run, body: RunLabelsUpdate) -> Run:
    """Set the fields ``body`` names; blank text and an empty tag list clear a field."""
    given = body.model_fields_set
    if "name" in given:
        run.name = (body.name or "").strip() or None
    if "note" in given:
        run.note = (body.note or "").strip() or None
    if "tags" in given:
        run.tags = list(dict.fromkeys(body.tags or [])) or None
    session.commit()
    return run


def has_tag(run: Analysis | ComponentJob, tag: str | None) -> bool:
    """Whether ``run`` carries ``tag`` (case and surrounding blanks ignored); any run without
    a tag asked for."""
    if not tag:
        return True
    wanted = " ".join(tag.split()).casefold()
    return any(t.casefold() == wanted for t in run.tags or [])


def analysis_datasets(session: Session, analysis: Analysis) -> list[str]:
    """The image sets an analysis's images were taken from (none for uploaded images)."""
    image_ids = {item.image_id for item in analysis.items}
    if not image_ids:
        return []
    query = select(ImageRecord.dataset_id).where(ImageRecord.id.in_(image_ids)).distinct()
    return sorted(d for d in session.scalars(query) if d)


def dataset_name(session: Session, dataset_id: str | None) -> str | None:
    dataset = session.get(DatasetRecord, dataset_id) if dataset_id else None
    return dataset.name if dataset else None


def filter_analyses(
    session: Session,
    rows: Iterable[Analysis],
    *,
    model_id: str | None = None,
    dataset_id: str | None = None,
    tag: str | None = None,
    mode: str | None = None,
) -> list[Analysis]:
    """The analyses that match every filter given."""
    out = []
    for row in rows:
        if model_id and row.model_id != model_id:
            continue
        if mode and row.params.get("mode", "exact") != mode:
            continue
        if not has_tag(row, tag):
            continue
        if dataset_id and dataset_id not in analysis_datasets(session, row):
            continue
        out.append(row)
    return out


def filter_jobs(
    rows: Iterable[ComponentJob],
    *,
    model_id: str | None = None,
    dataset_id: str | None = None,
    tag: str | None = None,
) -> list[ComponentJob]:
    """The component analyses that match every filter given (``model_id`` matches the
    model or an exemplar it was compared with)."""
    return [
        row
        for row in rows
        if (not model_id or model_id in (row.model_id, *row.compare_model_ids))
        and (not dataset_id or row.dataset_id == dataset_id)
        and has_tag(row, tag)
    ]


def delete_analysis(session: Session, analysis: Analysis) -> None:
    """Cancel the analysis if it is still queued or running, then delete it and what
    belongs only to it (images' results, chunks, share links) in one transaction."""
    if analysis.status in ACTIVE:
        analyses.cancel(session, analysis)
    session.delete(analysis)
    session.commit()
