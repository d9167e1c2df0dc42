"""Image-set archives: what a zip holds, checked without extracting anything to disk.

Layouts: ``class/image.png`` (labelled, one folder per class, optionally under one common
top folder) or ``image.png`` (flat, unlabelled). ``__MACOSX/`` and dot-files are skipped.
The worker reads the same archive with :func:`read_manifest`, so both sides agree.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from backend.uploads import UploadError, check_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Manifest:
    files: list[str]
    labels: list[int] | None
    class_names: list[str] | None

    @property
    def class_counts(self) -> list[int] | None:
        if self.labels is None or self.class_names is None:
            return None
        return [self.labels.count(k) for k in range(len(self.class_names))]


def read_manifest(data: bytes, *, max_images: int, max_uncompressed: int) -> Manifest:
    """The archive's image files and labels, or an :class:`UploadError` saying what is wrong."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UploadError(
            "Image sets are uploaded as a .zip archive; this file is not one.", 415
        ) from None
    with archive:
        entries = [i for i in archive.infolist() if not i.is_dir() and not _skipped(i.filename)]
    if not entries:
        raise UploadError("The archive holds no images.")
    bad = [i.filename for i in entries if not i.filename.lower().endswith(IMAGE_SUFFIXES)]
    if bad:
        raise UploadError(f"Only PNG and JPEG images are accepted; {bad[0]} is neither.", 415)
    if len(entries) > max_images:
        raise UploadError(
            f"The archive holds {len(entries)} images; the limit is {max_images}.", 413
        )
    if sum(i.file_size for i in entries) > max_uncompressed:
        raise UploadError(
            f"The archive unpacks to more than {max_uncompressed / 2**20:.0f} MB, the limit.",
            413,
        )
    names = sorted(i.filename for i in entries)
    return _layout(names)


def _skipped(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def _layout(names: list[str]) -> Manifest:
    parts = [n.split("/") for n in names]
    depth = {len(p) for p in parts}
    if len(depth) != 1:
        raise UploadError(
            "Mixed layout: put every image either in one folder per class (class/image.png) "
            "or all at the top level (unlabelled)."
        )
    (d,) = depth
    if d == 3 and len({p[0] for p in parts}) == 1:  # one common top folder
        parts = [p[1:] for p in parts]
        d = 2
    if d == 1:
        return Manifest(files=names, labels=None, class_names=None)
    if d != 2:
        raise UploadError("Folders nest too deep: use class/image.png, one folder per class.")
    classes = sorted({p[0] for p in parts})
    if len(classes) < 2:
        raise UploadError("A labelled set needs at least two class folders.")
    index = {c: k for k, c in enumerate(classes)}
    return Manifest(files=names, labels=[index[p[0]] for p in parts], class_names=classes)


def check_images(data: bytes, manifest: Manifest, *, max_pixels: int) -> None:
    """Decode every image (PNG/JPEG, within the pixel cap); the first failure names its file."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in manifest.files:
            try:
                check_image(archive.read(name), max_pixels=max_pixels)
            except UploadError as error:
                raise UploadError(f"{name}: {error}", error.status) from None
            except (zipfile.BadZipFile, OSError) as error:
                raise UploadError(f"{name}: the archive is damaged ({error}).") from None
