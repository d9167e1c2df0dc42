"""A model series uploaded as one zip: the checkpoints inside, each with its training step.

Layout: every file in the archive is a checkpoint (folders are allowed; macOS and hidden
files are skipped). Its step is the last whole number in its file name (``step_100.onnx``,
``epoch-3.safetensors``), unless the archive holds a ``steps.json`` that maps file names (as
stored in the archive) to steps: ``{"early.onnx": 0, "late.onnx": 1000}``; then exactly the
files it names are the checkpoints.

Nothing is extracted to disk. Before a byte is unpacked, the archive is refused if it holds
too many files, a name that climbs out of the archive (``..``, an absolute path, a drive),
an encrypted member, or members whose declared sizes exceed the caps; while unpacking, each
member is read in chunks and dropped at the per-file cap and at the total cap, so a member
whose header lies about its size (a zip bomb) costs at most the cap.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass

from backend.uploads import UploadError, check_zip_methods

MANIFEST = "steps.json"
#: Bytes read at a time from one member.
CHUNK = 1 << 20
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Checkpoint:
    name: str
    """The member's file name (without folders)."""
    step: int
    data: bytes


def read_series_zip(
    data: bytes, *, max_files: int, max_file_bytes: int, max_total_bytes: int
) -> list[Checkpoint]:
    """The archive's checkpoints in step order, or an :class:`UploadError` saying why not."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UploadError("The series archive is not a .zip file.", 415) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > 4 * max_files:  # folders and skipped files count here, loosely
            raise UploadError(
                f"The archive holds {len(infos)} entries; a series holds at most {max_files} "
                "checkpoints.",
                413,
            )
        for info in infos:
            _check_name(info.filename)
        entries = [i for i in infos if not i.is_dir() and not _skipped(i.filename)]
        if any(i.flag_bits & 0x1 for i in entries):
            raise UploadError("The archive is encrypted; upload a plain .zip.")
        check_zip_methods(entries)
        manifest = [i for i in entries if i.filename.rsplit("/", 1)[-1] == MANIFEST]
        members = [i for i in entries if i not in manifest]
        if len(manifest) > 1:
            raise UploadError(f"The archive holds {len(manifest)} {MANIFEST} files; give one.")
        if manifest:
            raw = _read(archive, manifest[0], 1 << 20, f"{MANIFEST}: ", "it is over 1 MB.")
            steps = _manifest_steps(raw, members)
            members = [i for i in members if i.filename in steps]
        else:
            steps = {i.filename: _step_from_name(i.filename) for i in members}
        if not 2 <= len(members) <= max_files:
            raise UploadError(
                f"A series holds 2 to {max_files} checkpoints; the archive holds {len(members)}."
            )
        _check_distinct(members, steps)
        declared = 0
        for info in members:
            if info.file_size > max_file_bytes:
                raise UploadError(f"{info.filename}: {_too_big(max_file_bytes)}", 413)
            declared += info.file_size
        if declared > max_total_bytes:
            raise UploadError(_total_too_big(max_total_bytes), 413)
        checkpoints, total = [], 0
        for info in members:
            room = max_total_bytes - total
            if room < max_file_bytes:
                body = _read(archive, info, room, "", _total_too_big(max_total_bytes))
            else:
                body = _read(archive, info, max_file_bytes, f"{info.filename}: ")
            total += len(body)
            name = info.filename.rsplit("/", 1)[-1]
            checkpoints.append(Checkpoint(name=name, step=steps[info.filename], data=body))
    return sorted(checkpoints, key=lambda c: c.step)


def _check_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
        raise UploadError(f"The archive holds a path that points outside it ({name!r}); refused.")


def _skipped(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def _step_from_name(name: str) -> int:
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
    numbers = _NUMBER.findall(stem)
    if not numbers:
        raise UploadError(
            f"{name}: no training step in its name. Name each checkpoint with its step "
            f"(e.g. step_100.onnx) or add a {MANIFEST} mapping file names to steps."
        )
    return int(numbers[-1])


def _manifest_steps(raw: bytes, members: list[zipfile.ZipInfo]) -> dict[str, int]:
    try:
        parsed = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UploadError(f"{MANIFEST} is not valid JSON.") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in parsed.items()
    ):
        raise UploadError(
            f'{MANIFEST} must map file names to whole-number steps, e.g. {{"a.onnx": 0}}.'
        )
    names = {i.filename for i in members}
    missing = sorted(set(parsed) - names)
    if missing:
        raise UploadError(f"{MANIFEST} names {missing[0]!r}, which is not in the archive.")
    return dict(parsed)


def _check_distinct(members: list[zipfile.ZipInfo], steps: dict[str, int]) -> None:
    seen: dict[int, str] = {}
    for info in members:
        step = steps[info.filename]
        if step < 0:
            raise UploadError(f"{info.filename}: a step cannot be negative ({step}).")
        if step in seen:
            raise UploadError(
                f"{seen[step]} and {info.filename} have the same step ({step}); "
                "each checkpoint needs its own."
            )
        seen[step] = info.filename


def _read(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, what: str, why: str = ""
) -> bytes:
    """The member's bytes, refused (413) as soon as more than ``limit`` are unpacked."""
    parts: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise UploadError(what + (why or _too_big(limit)), 413)
                parts.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
        raise UploadError(f"{what}the archive is damaged ({error}).") from None
    return b"".join(parts)


def _too_big(limit: int) -> str:
    return f"it unpacks to more than {limit / 2**20:.0f} MB, the limit for one checkpoint."


def _total_too_big(limit: int) -> str:
    return f"The archive unpacks to more than {limit / 2**20:.0f} MB, the limit for one series."
