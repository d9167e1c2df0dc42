"""Reading a model series from one zip: steps from names or steps.json; hostile zips refused."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from backend.series_zip import read_series_zip
from backend.uploads import UploadError

CAPS = {"max_files": 50, "max_file_bytes": 1000, "max_total_bytes": 2500}


def zipped(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def refused(data: bytes, words: str, status: int = 400, **caps: int) -> None:
    with pytest.raises(UploadError) as caught:
        read_series_zip(data, **{**CAPS, **caps})
    assert words in str(caught.value), str(caught.value)
    assert caught.value.status == status


def test_steps_come_from_the_file_names_in_step_order() -> None:
    data = zipped({"run/epoch-10.onnx": b"b", "run/epoch-2.onnx": b"a", ".DS_Store": b"x",
                   "__MACOSX/run/._epoch-2.onnx": b"junk"})  # fmt: skip
    got = read_series_zip(data, **CAPS)
    assert [(c.name, c.step, c.data) for c in got] == [
        ("epoch-2.onnx", 2, b"a"), ("epoch-10.onnx", 10, b"b")
    ]  # fmt: skip


def test_a_manifest_gives_the_steps_and_names_the_checkpoints() -> None:
    steps = {"early.onnx": 0, "late.onnx": 1000}
    data = zipped({"early.onnx": b"a", "late.onnx": b"b", "notes.txt": b"n",
                   "steps.json": json.dumps(steps).encode()})  # fmt: skip
    got = read_series_zip(data, **CAPS)
    assert [(c.name, c.step) for c in got] == [("early.onnx", 0), ("late.onnx", 1000)]


@pytest.mark.parametrize(
    "members,words",
    [
        ({"a.onnx": b"a", "b.onnx": b"b"}, "no training step in its name"),
        ({"step1.onnx": b"a", "run1.onnx": b"b"}, "have the same step (1)"),
        ({"step1.onnx": b"a"}, "2 to 50 checkpoints; the archive holds 1"),
        ({"step1.onnx": b"a", "step2.onnx": b"b", "steps.json": b"{"}, "not valid JSON"),
        ({"step1.onnx": b"a", "steps.json": b'{"x.onnx": 1}'}, "not in the archive"),
        ({"s1.onnx": b"a", "s2.onnx": b"b", "steps.json": b'{"s1.onnx": "one"}'}, "whole-number"),
        ({"../step1.onnx": b"a", "step2.onnx": b"b"}, "outside it"),
        ({"/etc/step1.onnx": b"a", "step2.onnx": b"b"}, "outside it"),
        ({"C:/step1.onnx": b"a", "step2.onnx": b"b"}, "outside it"),
        ({"ok/..\\..\\step1.onnx": b"a", "step2.onnx": b"b"}, "outside it"),
    ],
)
def test_refusals_say_why(members: dict[str, bytes], words: str) -> None:
    refused(zipped(members), words)


def test_not_a_zip() -> None:
    refused(b"not a zip at all", "not a .zip", 415)


def test_too_many_files() -> None:
    refused(zipped({f"step{k}.onnx": b"x" for k in range(6)}), "2 to 5 checkpoints", max_files=5)
    refused(zipped({f"d{k}/": b"" for k in range(30)}), "30 entries", 413, max_files=5)


def test_a_checkpoint_over_the_per_file_cap() -> None:
    refused(zipped({"s1.onnx": b"a" * 1001, "s2.onnx": b"b"}), "s1.onnx: it unpacks", 413)


def test_checkpoints_over_the_series_cap() -> None:
    members = {f"s{k}.onnx": b"a" * 900 for k in range(3)}
    refused(zipped(members), "limit for one series", 413)


def test_a_bomb_whose_headers_lie_is_stopped_at_the_cap() -> None:
    """A member that declares 10 bytes but inflates to 10 MB is refused: :mod:`zipfile`
    unpacks no more than the declared size and then finds the checksum wrong (the chunked
    read's own cap stands behind it)."""
    data = bytearray(zipped({"s1.onnx": b"\0" * 10_000_000, "s2.onnx": b"b"}))
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = archive.getinfo("s1.onnx")
    # patch the declared size in the local header and in the central directory
    real = info.file_size.to_bytes(4, "little")
    fake = (10).to_bytes(4, "little")
    assert data.count(real) == 2
    data = bytearray(bytes(data).replace(real, fake))
    refused(bytes(data), "s1.onnx: the archive is damaged")


def test_encrypted_members_are_refused() -> None:
    data = bytearray(zipped({"s1.onnx": b"a", "s2.onnx": b"b"}, zipfile.ZIP_STORED))
    # set the encryption flag bit in both central-directory records
    offset = 0
    while (offset := data.find(b"PK\x01\x02", offset)) >= 0:
        data[offset + 8] |= 0x1
        offset += 4
    refused(bytes(data), "encrypted")


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_members_compressed_other_than_deflate_are_refused(method: int) -> None:
    """zipfile bounds a read of a deflated member, but decompresses a bzip2 or LZMA chunk
    whole: 800 MB of zeros fit in about a kilobyte of bzip2, and reading them to find the
    lie took 820 MB of memory (found in review). They are refused before any is read."""
    refused(zipped({"s1.onnx": b"a", "s2.onnx": b"b"}, method), "only stored or deflated", 415)
