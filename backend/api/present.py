"""Turning rows into response bodies (progress and ETA are derived on read).

Bodies never carry internal blob keys (``…_key``): share links show these bodies to anyone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from backend.db.models import Analysis, ComponentJob, DatasetRecord, ModelRecord
from backend.schemas import AnalysisPublic, ComponentJobPublic, ItemPublic
from backend.services import analyses as service
from backend.services import runs


def present_analysis(session: Session, analysis: Analysis) -> AnalysisPublic:
    items = []
    done = 0
    chunked = service.chunk_progress(session, analysis.items)
    for item in analysis.items:
        progress = service.item_progress(item, chunked)
        done += progress
        items.append(
            ItemPublic(
                id=item.id,
                image_id=item.image_id,
                variant=item.variant,
                status=item.status,  # type: ignore[arg-type]
                progress_done=progress,
                progress_total=item.progress_total,
                cached=bool(item.summary and item.summary.get("cached")),
                error=item.error,
                summary=public(item.summary),
            )
        )
    total = sum(item.progress_total for item in analysis.items)
    model = session.get_one(ModelRecord, analysis.model_id)
    datasets = runs.analysis_datasets(session, analysis)
    return AnalysisPublic(
        id=analysis.id,
        name=analysis.name,
        note=analysis.note,
        tags=analysis.tags or [],
        dataset_id=datasets[0] if datasets else None,
        dataset_name=runs.dataset_name(session, datasets[0]) if datasets else None,
        model_id=analysis.model_id,
        model_name=model.name,
        labels=model.labels,
        input_shape=model.input_shape,
        params=public(analysis.params) or {},
        n_players=analysis.n_players,
        status=analysis.status,  # type: ignore[arg-type]
        progress_done=done,
        progress_total=total,
        eta_seconds=service.eta_seconds(analysis, done, total),
        forward_passes=service.forward_passes(session, analysis),
        error=analysis.error,
        interrupted=bool(analysis.error and analysis.error.startswith("interrupted")),
        created_at=analysis.created_at,
        started_at=analysis.started_at,
        finished_at=analysis.finished_at,
        summary=public(analysis.summary),
        items=items,
    )


def present_job(session: Session, job: ComponentJob) -> ComponentJobPublic:
    """A component analysis with the names of its models and image set."""
    compare = session.get(ModelRecord, job.compare_model_id) if job.compare_model_id else None
    dataset = session.get(DatasetRecord, job.dataset_id)
    return ComponentJobPublic.model_validate(job).model_copy(
        update={
            "model_name": session.get_one(ModelRecord, job.model_id).name,
            "compare_model_name": compare.name if compare else None,
            "compare_model_names": [
                row.name
                for row in (session.get(ModelRecord, m) for m in job.compare_model_ids)
                if row is not None
            ],
            "dataset_name": dataset.name if dataset else None,
            "eta_seconds": service.eta_seconds(job, job.progress_done, job.progress_total),
            "params": public(job.params) or {},
            "metrics": public(job.metrics),
        }
    )


def public(fields: dict[str, Any] | None) -> dict[str, Any] | None:
    """``fields`` without internal blob keys (names ending in ``_key``)."""
    if fields is None:
        return None
    return {k: v for k, v in fields.items() if not k.endswith("_key")}
