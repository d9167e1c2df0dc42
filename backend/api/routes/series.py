"""Model series: checkpoints of one model, uploaded together, each validated like a model.

A series is the models that share a ``series`` name (in this workspace, or built in),
ordered by ``series_step``; the dynamics analysis compares every checkpoint's interactions
with the last one's (SCIENCE.md §6).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from sqlalchemy import or_, select

from backend.api.deps import BlobsDep, SessionDep, SettingsDep, WorkspaceDep
from backend.api.routes.models import TrainSamples, _input_shape, new_model
from backend.api.uploading import read_capped
from backend.db.models import ModelRecord
from backend.queue import TASK_VALIDATE_MODEL, enqueue
from backend.schemas import SeriesListPublic, SeriesPublic
from backend.uploads import UploadError, check_input_values

router = APIRouter(prefix="/model-series", tags=["models"])

#: Checkpoints of one series upload.
MAX_CHECKPOINTS = 50


def series_models(session: SessionDep, workspace: WorkspaceDep, name: str) -> list[ModelRecord]:
    """The checkpoints of series ``name`` visible to the workspace, in step order."""
    query = select(ModelRecord).where(
        ModelRecord.series == name,
        or_(ModelRecord.workspace_id == workspace.id, ModelRecord.workspace_id.is_(None)),
    )
    return sorted(session.scalars(query), key=lambda m: (m.series_step or 0, m.created_at))


@router.get("", response_model=SeriesListPublic)
def list_series(session: SessionDep, workspace: WorkspaceDep) -> SeriesListPublic:
    names = session.scalars(
        select(ModelRecord.series)
        .where(
            ModelRecord.series.is_not(None),
            or_(ModelRecord.workspace_id == workspace.id, ModelRecord.workspace_id.is_(None)),
        )
        .distinct()
    )
    data = []
    for name in sorted(n for n in names if n):
        rows = series_models(session, workspace, name)
        data.append(
            SeriesPublic(
                name=name, builtin=all(r.builtin for r in rows),
                steps=[r.series_step or 0 for r in rows], model_ids=[r.id for r in rows],
                statuses=[r.status for r in rows],
            )
        )  # fmt: skip
    return SeriesListPublic(data=data, count=len(data))


@router.post("", response_model=SeriesPublic, status_code=201)
async def upload_series(
    session: SessionDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    files: Annotated[list[UploadFile], File(description="the checkpoints, one file each")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    steps: Annotated[str, Form(description="each file's training step, comma-separated")],
    input_size: Annotated[str | None, Form(description="HxW, if the files do not say")] = None,
    channels: Annotated[int | None, Form(ge=1, le=4)] = None,
    mean: Annotated[str | None, Form()] = None,
    std: Annotated[str | None, Form()] = None,
    labels: Annotated[str | None, Form()] = None,
    architecture: Annotated[str | None, Form(description="for weights-only files")] = None,
    train_samples: TrainSamples = None,
) -> SeriesPublic:
    """Upload the checkpoints of one training run; each is validated like a model."""
    if not 2 <= len(files) <= MAX_CHECKPOINTS:
        raise UploadError(f"A series holds 2 to {MAX_CHECKPOINTS} checkpoints; {len(files)} given.")
    try:
        numbers = [int(t) for t in steps.replace(" ", "").split(",") if t]
    except ValueError:
        raise UploadError(
            "Steps must be whole numbers separated by commas, one per file."
        ) from None
    if len(numbers) != len(files) or len(set(numbers)) != len(numbers):
        raise UploadError(f"Give one distinct step per file: {len(files)} files, steps {steps!r}.")
    if series_models(session, workspace, name.strip()):
        raise UploadError(
            f"A series named {name.strip()!r} exists already; choose another name.", 409
        )
    shape = _input_shape(input_size, channels)
    if shape is not None:
        check_input_values(shape, settings.max_input_values)
    rows = []
    for file, step in zip(files, numbers, strict=True):
        data = await read_capped(file, settings.max_model_bytes, "model file")
        try:
            row = await new_model(
                session, workspace, settings, blobs, data, file.filename,
                name=f"{name.strip()} · step {step}", shape=shape, mean=mean, std=std,
                labels=labels, architecture=architecture, series=name.strip(), step=step,
                train_samples=train_samples,
            )  # fmt: skip
        except UploadError as error:  # nothing of the series is kept
            session.rollback()
            raise UploadError(f"{file.filename} (step {step}): {error}", error.status) from None
        rows.append(row)
    session.commit()
    for row in rows:
        enqueue(TASK_VALIDATE_MODEL, row.id)
    ordered = sorted(rows, key=lambda r: r.series_step or 0)
    return SeriesPublic(
        name=name.strip(), builtin=False, steps=[r.series_step or 0 for r in ordered],
        model_ids=[r.id for r in ordered], statuses=[r.status for r in ordered],
    )  # fmt: skip
