"""Image sets for component analysis: upload a zip (class-per-folder or flat), list, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from backend.api.deps import BlobsDep, SessionDep, SettingsDep, WorkspaceDep
from backend.api.uploading import read_capped_sync
from backend.datasets import ImageLimits, check_images, read_manifest
from backend.db.models import DatasetRecord
from backend.schemas import DatasetPublic, DatasetsPublic
from backend.services import resources
from backend.uploads import check_size

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.get("", response_model=DatasetsPublic)
def list_datasets(session: SessionDep, workspace: WorkspaceDep) -> DatasetsPublic:
    rows = resources.visible(session, DatasetRecord, workspace=workspace)
    return DatasetsPublic(data=[DatasetPublic.model_validate(r) for r in rows], count=len(rows))


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: str, session: SessionDep, workspace: WorkspaceDep) -> DatasetRecord:
    return resources.get(session, DatasetRecord, workspace=workspace, id=dataset_id)


@router.post("", response_model=DatasetPublic, status_code=201)
def upload_dataset(
    session: SessionDep,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    file: Annotated[UploadFile, File(description="a .zip: class/image.png (labelled) or flat")],
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> DatasetRecord:
    """Checked whole before anything is stored: layout, limits, every image decodable. A
    plain ``def``: the check runs in a worker thread, never on the event loop."""
    data = read_capped_sync(file.file, settings.max_dataset_bytes, "image set")
    check_size(data, settings.max_dataset_bytes, "image set")
    manifest = read_manifest(
        data,
        max_images=settings.max_dataset_images,
        max_uncompressed=4 * settings.max_dataset_bytes,
    )
    limits = ImageLimits(
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        max_total_pixels=settings.max_dataset_pixels,
    )
    check_images(data, manifest, limits)
    row = DatasetRecord(
        workspace_id=workspace.id,
        name=(name or file.filename or "image set").strip()[:200],
        kind="zip",
        blob_key=blobs.put(data),
        size_bytes=len(data),
        n_images=len(manifest.files),
        labelled=manifest.labels is not None,
        class_names=manifest.class_names,
        class_counts=manifest.class_counts,
    )
    session.add(row)
    session.commit()
    return row


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: str, session: SessionDep, workspace: WorkspaceDep) -> None:
    resources.delete(
        session, resources.get(session, DatasetRecord, workspace=workspace, id=dataset_id)
    )
