"""Images: upload one or many (PNG/JPEG), list (own + built-in samples), get, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, UploadFile
from fastapi.responses import Response

from backend.api.deps import BlobsDep, SessionDep, SettingsDep, WorkspaceDep
from backend.api.routes.results import PNG
from backend.api.uploading import read_capped_sync
from backend.db.models import ImageRecord, ModelRecord
from backend.previews import preview_png
from backend.schemas import ImagePublic, ImagesPublic
from backend.services import resources
from backend.uploads import UploadError, check_image, check_size

router = APIRouter(prefix="/images", tags=["images"])

IMAGE_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "the uploaded bytes"}
}


@router.get("", response_model=ImagesPublic)
def list_images(session: SessionDep, workspace: WorkspaceDep) -> ImagesPublic:
    rows = resources.visible(session, ImageRecord, workspace=workspace)
    return ImagesPublic(data=[ImagePublic.model_validate(r) for r in rows], count=len(rows))


@router.post("", response_model=ImagesPublic, status_code=201)
def upload_images(
    session: SessionDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    files: Annotated[list[UploadFile], File(description="PNG or JPEG files")],
) -> ImagesPublic:
    """All or nothing: if one file is refused, none is stored. A plain ``def``: decoding
    runs in a worker thread, never on the event loop."""
    if len(files) > settings.max_images_per_upload:
        raise HTTPException(400, f"At most {settings.max_images_per_upload} images per upload.")
    checked = []
    for file in files:
        name = file.filename or "image"
        data = read_capped_sync(file.file, settings.max_image_bytes, f"image {name}")
        try:
            check_size(data, settings.max_image_bytes, f"image {name}")
            kind, width, height, mode = check_image(data, max_pixels=settings.max_image_pixels)
        except UploadError as error:  # name the file: an upload may hold many
            raise UploadError(f"{name}: {error}", error.status) from None
        checked.append((name, data, kind, width, height, mode))
    rows = []
    for name, data, kind, width, height, mode in checked:
        row = ImageRecord(
            workspace_id=workspace.id, name=name[:255], blob_key=blobs.put(data),
            size_bytes=len(data), content_type=kind, width=width, height=height, mode=mode,
        )  # fmt: skip
        session.add(row)
        rows.append(row)
    session.commit()
    return ImagesPublic(data=[ImagePublic.model_validate(r) for r in rows], count=len(rows))


@router.get("/{image_id}", response_model=ImagePublic)
def get_image(image_id: str, session: SessionDep, workspace: WorkspaceDep) -> ImageRecord:
    return _get(session, workspace, image_id)


@router.get("/{image_id}/file", response_class=Response, responses=IMAGE_FILE)
def image_file(
    image_id: str, session: SessionDep, workspace: WorkspaceDep, blobs: BlobsDep
) -> Response:
    """The original bytes as uploaded."""
    row = _get(session, workspace, image_id)
    return Response(blobs.get(row.blob_key), media_type=row.content_type)


@router.get("/{image_id}/preview", response_class=Response, responses=PNG)
def image_preview(
    image_id: str,
    session: SessionDep,
    workspace: WorkspaceDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    model_id: Annotated[str | None, Query(description="preprocess for this model's input")] = None,
    scale: Annotated[int, Query(ge=1, le=32)] = 1,
) -> Response:
    """The image as the model sees it (channels, size), as a PNG, optionally enlarged; the
    scale is lowered to keep the PNG within ``CONCEPTLENS_MAX_PREVIEW_PIXELS``."""
    row = _get(session, workspace, image_id)
    shape = None
    if model_id is not None:
        shape = resources.get(session, ModelRecord, workspace=workspace, id=model_id).input_shape
    png = preview_png(blobs.get(row.blob_key), shape, scale, settings.max_preview_pixels)
    return Response(png, media_type="image/png")


@router.delete("/{image_id}", status_code=204)
def delete_image(image_id: str, session: SessionDep, workspace: WorkspaceDep) -> None:
    resources.delete(session, _get(session, workspace, image_id))


def _get(session: SessionDep, workspace: WorkspaceDep, image_id: str) -> ImageRecord:
    return resources.get(session, ImageRecord, workspace=workspace, id=image_id)
