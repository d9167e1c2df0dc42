"""Images of an image set, picked for an analysis ("the first k" or "k of each class").

Each picked image becomes an image row of the workspace that remembers its set
(``ImageRecord.dataset_id``; not listed among the workspace's own images), so an analysis
item points at an image like any other and a second analysis of the same images reuses the
rows (and, through the content-addressed bytes, the cached results).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.config import Settings
from backend.datasets import read_manifest
from backend.db.models import DatasetRecord, ImageRecord, Workspace
from backend.errors import ClientError
from backend.storage import LocalBlobStore
from backend.uploads import UploadError, check_image


def order(files: list[str]) -> list[int]:
    """Indices of ``files`` in the set's order: by file name, then folder (the class), so
    that "the first k" of a class-per-folder archive is not k images of the first class.

    Example:
        >>> order(["a/2.png", "a/9.png", "b/1.png"])
        [2, 0, 1]
    """
    paths = [PurePosixPath(f) for f in files]
    return sorted(range(len(files)), key=lambda i: (paths[i].name, str(paths[i].parent)))


def choose(labels: list[int] | None, files: list[str], pick: str, k: int) -> list[int]:
    """Indices of the picked files: the first ``k``, or the first ``k`` of each class."""
    ranked = order(files)
    if pick == "first":
        return ranked[:k]
    if labels is None:
        raise ClientError("This image set has no classes; pick the first k images instead.")
    taken: dict[int, int] = {}
    out = []
    for index in ranked:
        label = labels[index]
        if taken.get(label, 0) < k:
            taken[label] = taken.get(label, 0) + 1
            out.append(index)
    return out


def pick(
    session: Session,
    workspace: Workspace,
    dataset: DatasetRecord,
    how: str,
    k: int,
    settings: Settings,
    blobs: LocalBlobStore,
) -> list[ImageRecord]:
    """Image rows for the picked images of ``dataset`` (made once per workspace)."""
    if dataset.blob_key is None:
        raise ClientError(
            "This image set is still being prepared by a worker; try again in a moment.", 409
        )
    data = blobs.get(dataset.blob_key)
    manifest = read_manifest(
        data,
        max_images=settings.max_dataset_images,
        max_uncompressed=4 * settings.max_dataset_bytes,
    )
    chosen = choose(manifest.labels, manifest.files, how, k)
    if len(chosen) > settings.max_analysis_images:
        raise ClientError(
            f"That picks {len(chosen)} images; one analysis takes at most "
            f"{settings.max_analysis_images}. Pick fewer.",
            413,
        )
    existing = {
        row.name: row
        for row in session.scalars(
            select(ImageRecord).where(
                ImageRecord.workspace_id == workspace.id, ImageRecord.dataset_id == dataset.id
            )
        )
    }
    rows = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for index in chosen:
            file = manifest.files[index]
            name = f"{dataset.name}/{file}"[:255]
            row = existing.get(name)
            if row is None:
                image = archive.read(file)
                label = None
                if manifest.labels is not None and dataset.class_names is not None:
                    label = dataset.class_names[manifest.labels[index]][:64]
                row = _new_row(image, file, name, label, dataset, workspace, settings)
                row.blob_key = blobs.put(image)
                session.add(row)
                existing[name] = row
            rows.append(row)
    session.flush()
    return rows


def _new_row(
    data: bytes,
    file: str,
    name: str,
    label: str | None,
    dataset: DatasetRecord,
    workspace: Workspace,
    settings: Settings,
) -> ImageRecord:
    try:
        kind, width, height, mode = check_image(data, max_pixels=settings.max_image_pixels)
    except UploadError as error:  # checked at upload; a set stored before a new check
        raise ClientError(f"{file} in the image set: {error}", error.status) from None
    return ImageRecord(
        workspace_id=workspace.id, name=name, blob_key="", size_bytes=len(data),
        content_type=kind, width=width, height=height, mode=mode, label=label,
        dataset_id=dataset.id,
    )  # fmt: skip
