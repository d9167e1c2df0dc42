"""Image-set archives: what a zip holds, checked without extracting anything to disk.

Layouts: ``class/image.png`` (labelled, one folder per class, optionally under one common
top folder) or ``image.png`` (flat, unlabelled). ``__MACOSX/`` and dot-files are skipped.
The worker reads the same archive with :func:`read_manifest`, so both sides agree.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from backend.uploads import UploadError, check_image, check_zip_methods

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CHUNK = 1 << 20


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
    check_zip_methods(entries)
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


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied while an image set is checked, one member at a time."""

    max_bytes: int
    """Unpacked bytes of one image."""
    max_pixels: int
    """Pixels of one image."""
    max_total_pixels: int
    """Pixels of all images together."""


def check_images(data: bytes, manifest: Manifest, limits: ImageLimits) -> None:
    """Decode every image (PNG/JPEG) within ``limits``; the first failure names its file.

    Memory stays within one image: each member is read in chunks and dropped at its cap, and
    its declared size and its dimensions (from the image header) are checked before it is
    unpacked or decoded.
    """
    total = 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in manifest.files:
            try:
                total += _check_member(archive, name, limits, room=limits.max_total_pixels - total)
            except UploadError as error:
                raise UploadError(f"{name}: {error}", error.status) from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
                raise UploadError(f"{name}: the archive is damaged ({error}).") from None


def _check_member(archive: zipfile.ZipFile, name: str, limits: ImageLimits, room: int) -> int:
    """The member's pixel count, once it is read within the caps and decoded."""
    info = archive.getinfo(name)
    if info.file_size > limits.max_bytes:
        raise UploadError(_too_big(limits.max_bytes), 413)
    data = _read_member(archive, info, limits.max_bytes)
    pixels = _header_pixels(data)
    if pixels > room:
        raise UploadError(
            f"the set's images hold more than {limits.max_total_pixels:,} pixels together, "
            "the limit for one image set.",
            413,
        )
    check_image(data, max_pixels=limits.max_pixels)
    return pixels


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    with archive.open(info) as member:
        while chunk := member.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise UploadError(_too_big(limit), 413)
            parts.append(chunk)
    return b"".join(parts)


def _too_big(limit: int) -> str:
    return f"it unpacks to more than {limit / 2**20:.0f} MB, the limit for one image."


def _header_pixels(data: bytes) -> int:
    """Width × height from the image header alone (0 when Pillow cannot tell: then
    :func:`check_image` says why)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.width * img.height)
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return 0
