"""Model series: checkpoints of one model, uploaded together, each validated like a model.

The checkpoints come as several files with a ``steps`` field, or as one zip
(:mod:`backend.series_zip` says how steps are read from it and which zips are refused).

A series is the models that share a ``series`` name (in this workspace, or built in),
ordered by ``series_step``; the dynamics analysis compares every checkpoint's interactions
with the last one's (SCIENCE.md §6).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import or_, select

from backend.api.deps import BlobsDep, SessionDep, SettingsDep, WorkspaceDep
from backend.api.routes.models import TrainSamples, _input_shape, new_model
from backend.api.uploading import read_capped
from backend.db.models import ModelRecord
from backend.queue import TASK_VALIDATE_MODEL, enqueue
from backend.schemas import SeriesListPublic, SeriesPublic
from backend.series_zip import Checkpoint, read_series_zip
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
    name: Annotated[str, Form(min_length=1, max_length=200)],
    files: Annotated[
        list[UploadFile] | None, File(description="the checkpoints, one file each")
    ] = None,
    steps: Annotated[
        str | None, Form(description="with files: each file's training step, comma-separated")
    ] = None,
    archive: Annotated[
        UploadFile | None,
        File(
            description="instead of files: one .zip of the checkpoints, each step the last "
            "number in its file name (step_100.onnx) or given by a steps.json inside"
        ),
    ] = None,
    input_size: Annotated[str | None, Form(description="HxW, if the files do not say")] = None,
    channels: Annotated[int | None, Form(ge=1, le=4)] = None,
    mean: Annotated[str | None, Form()] = None,
    std: Annotated[str | None, Form()] = None,
    labels: Annotated[str | None, Form()] = None,
    architecture: Annotated[str | None, Form(description="for weights-only files")] = None,
    train_samples: TrainSamples = None,
) -> SeriesPublic:
    """Upload the checkpoints of one training run; each is validated like a model."""
    if (archive is None) == (not files):
        raise UploadError(
            "Give the checkpoints either as files (with their steps) or as one zip archive."
        )
    if files:
        checkpoints = await _listed(files, steps, settings.max_model_bytes)
    else:
        assert archive is not None
        whole = await read_capped(archive, settings.max_series_bytes, "series archive")
        checkpoints = await run_in_threadpool(
            read_series_zip, whole, max_files=MAX_CHECKPOINTS,
            max_file_bytes=settings.max_model_bytes, max_total_bytes=settings.max_series_bytes,
        )  # fmt: skip
    if series_models(session, workspace, name.strip()):
        raise UploadError(
            f"A series named {name.strip()!r} exists already; choose another name.", 409
        )
    shape = _input_shape(input_size, channels)
    if shape is not None:
        check_input_values(shape, settings.max_input_values)
    rows = []
    for checkpoint in checkpoints:
        step, data = checkpoint.step, checkpoint.data
        try:
            row = await new_model(
                session, workspace, settings, blobs, data, checkpoint.name,
                name=f"{name.strip()} · step {step}", shape=shape, mean=mean, std=std,
                labels=labels, architecture=architecture, series=name.strip(), step=step,
                train_samples=train_samples,
            )  # fmt: skip
        except UploadError as error:  # nothing of the series is kept
            session.rollback()
            raise UploadError(f"{checkpoint.name} (step {step}): {error}", error.status) from None
        rows.append(row)
    session.commit()
    for row in rows:
        enqueue(TASK_VALIDATE_MODEL, row.id)
    ordered = sorted(rows, key=lambda r: r.series_step or 0)
    return SeriesPublic(
        name=name.strip(), builtin=False, steps=[r.series_step or 0 for r in ordered],
        model_ids=[r.id for r in ordered], statuses=[r.status for r in ordered],
    )  # fmt: skip


async def _listed(files: list[UploadFile], steps: str | None, limit: int) -> list[Checkpoint]:
    """The uploaded files with the steps of the ``steps`` field, in the files' order."""
    if not 2 <= len(files) <= MAX_CHECKPOINTS:
        raise UploadError(f"A series holds 2 to {MAX_CHECKPOINTS} checkpoints; {len(files)} given.")
    if steps is None:
        raise UploadError("Give each file's training step in steps, e.g. 0, 100, 1000.")
    try:
        numbers = [int(t) for t in steps.replace(" ", "").split(",") if t]
    except ValueError:
        raise UploadError(
            "Steps must be whole numbers separated by commas, one per file."
        ) from None
    if len(numbers) != len(files) or len(set(numbers)) != len(numbers):
        raise UploadError(f"Give one distinct step per file: {len(files)} files, steps {steps!r}.")
    return [
        Checkpoint(name=file.filename or "model", step=step,
                   data=await read_capped(file, limit, "model file"))
        for file, step in zip(files, numbers, strict=True)
    ]  # fmt: skip
