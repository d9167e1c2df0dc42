"""Models: upload, list, get, delete. Validation runs in a worker (``validate_model``).

Before anything is stored, an upload must pass what the API can check without loading
the model (:mod:`backend.uploads`): size, container, pickles that hold only tensors, and
an input size — given in the form or fixed by an ONNX graph — within
``max_input_values``. A refused upload leaves no row and no blob.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool

from backend.api.deps import BlobsDep, SessionDep, SettingsDep, WorkspaceDep
from backend.api.uploading import read_capped
from backend.db.models import ModelRecord
from backend.queue import TASK_VALIDATE_MODEL, enqueue
from backend.schemas import ModelPublic, ModelsPublic
from backend.services import resources
from backend.services.training import DIGITS_TRAIN as TRAIN_SIZE
from backend.uploads import UploadError, check_input_values, check_size, sniff_model

router = APIRouter(prefix="/models", tags=["models"])

#: The form field that says which images of the built-in digits a model was trained on.
TrainSamples = Annotated[
    int | None,
    Form(
        ge=1,
        le=TRAIN_SIZE,
        description=(
            "trained on the first N images of the built-in digits' training split "
            f"(1 to {TRAIN_SIZE}); the over-fitting metric then uses those images"
        ),
    ),
]


@router.get("", response_model=ModelsPublic)
def list_models(session: SessionDep, workspace: WorkspaceDep) -> ModelsPublic:
    rows = resources.visible(session, ModelRecord, workspace=workspace)
    return ModelsPublic(data=[ModelPublic.model_validate(r) for r in rows], count=len(rows))


@router.get("/{model_id}", response_model=ModelPublic)
def get_model(model_id: str, session: SessionDep, workspace: WorkspaceDep) -> ModelRecord:
    return resources.get(session, ModelRecord, workspace=workspace, id=model_id)


@router.post("", response_model=ModelPublic, status_code=201)
async def upload_model(
    session: SessionDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    file: Annotated[
        UploadFile, File(description="ONNX, TorchScript, safetensors or .pt state_dict")
    ],
    name: Annotated[str | None, Form(max_length=200)] = None,
    input_size: Annotated[
        str | None, Form(description="HxW, e.g. 32x32 (if the file does not say)")
    ] = None,
    channels: Annotated[int | None, Form(ge=1, le=4)] = None,
    mean: Annotated[
        str | None, Form(description="one value or one per channel, comma-separated")
    ] = None,
    std: Annotated[
        str | None, Form(description="one value or one per channel, comma-separated")
    ] = None,
    labels: Annotated[
        str | None, Form(description="class labels: comma-separated or a JSON list")
    ] = None,
    architecture: Annotated[
        str | None, Form(description="for weights-only files, e.g. digit_cnn")
    ] = None,
    train_samples: TrainSamples = None,
) -> ModelRecord:
    shape = _input_shape(input_size, channels)
    if shape is not None:
        check_input_values(shape, settings.max_input_values)
    data = await read_capped(file, settings.max_model_bytes, "model file")
    row = await new_model(
        session, workspace, settings, blobs, data, file.filename,
        name=name, shape=shape, mean=mean, std=std, labels=labels, architecture=architecture,
        train_samples=train_samples,
    )  # fmt: skip
    session.commit()
    enqueue(TASK_VALIDATE_MODEL, row.id)
    return row


async def new_model(
    session: SessionDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    data: bytes,
    filename: str | None,
    *,
    name: str | None,
    shape: list[int] | None,
    mean: str | None,
    std: str | None,
    labels: str | None,
    architecture: str | None,
    series: str | None = None,
    step: int | None = None,
    train_samples: int | None = None,
) -> ModelRecord:
    """Check one uploaded model file and add its row (not committed; validation is queued by
    the caller after the commit)."""
    check_size(data, settings.max_model_bytes, "model file")
    # Parsing ONNX and walking pickles takes up to seconds: not on the event loop.
    await run_in_threadpool(sniff_model, data, max_input_values=settings.max_input_values)
    row = ModelRecord(
        workspace_id=workspace.id,
        name=(name or filename or "model").strip()[:200],
        filename=(filename or "model")[:255],
        blob_key="",
        size_bytes=len(data),
        input_shape=shape,
        mean=_floats(mean, "mean"),
        std=_floats(std, "std"),
        labels=_labels(labels),
        architecture=architecture or None,
        series=series,
        series_step=step,
        train_samples=train_samples,
    )
    row.blob_key = blobs.put(data)
    session.add(row)
    return row


@router.delete("/{model_id}", status_code=204)
def delete_model(model_id: str, session: SessionDep, workspace: WorkspaceDep) -> None:
    resources.delete(session, resources.get(session, ModelRecord, workspace=workspace, id=model_id))


def _input_shape(size: str | None, channels: int | None) -> list[int] | None:
    if size is None and channels is None:
        return None
    if size is None or channels is None:
        raise UploadError("Give both the input size (HxW) and the number of channels, or neither.")
    parts = size.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UploadError(f"The input size must look like 32x32, not {size!r}.")
    return [channels, int(parts[0]), int(parts[1])]


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None or not text.strip():
        return None
    try:
        values = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UploadError(
            f"The {what} must be numbers separated by commas, not {text!r}."
        ) from None
    if what == "std" and any(v <= 0 for v in values):
        raise UploadError("Every std value must be positive.")
    return values


def _labels(text: str | None) -> list[str] | None:
    if text is None or not text.strip():
        return None
    if text.strip().startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            raise UploadError("The labels are not a valid JSON list.") from None
        if not isinstance(parsed, list):
            raise UploadError("The labels must be a list.")
        return [str(x) for x in parsed]
    return [t.strip() for t in text.split(",")]
