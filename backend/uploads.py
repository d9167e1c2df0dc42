"""Checks on uploaded bytes before anything is stored: size, type, structure.

Uploads are hostile until proven otherwise. The API never unpickles and never loads a
model: it only recognises the container (ONNX protobuf, zip archive, safetensors header)
and refuses pickles and ``torch.export`` archives outright. Inside a torch zip (state dict
or TorchScript) it reads every pickle's opcodes without running them and refuses any that
holds more than tensors (:mod:`backend.pickle_scan`). The declared input size — given with
the upload, or fixed by an ONNX graph — is capped (``max_input_values``) before anything
is stored, so no worker allocates for a ``3×100000×100000`` input. The worker then loads
the model in its own process and runs a test forward pass (``validate_model``); what fails
there is shown as the model's status.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from collections.abc import Sequence

from PIL import Image, UnidentifiedImageError

from backend.errors import ClientError
from backend.pickle_scan import PickleRefused, check_torch_zip_pickles

MODEL_KINDS = ("onnx", "torchscript", "state_dict", "safetensors")
_SAFE_FORMATS = "Upload ONNX, TorchScript, or weights as safetensors / a torch state_dict."


class UploadError(ClientError):
    """A refused upload; ``status`` is the HTTP status, the message is for a person."""


#: Compression methods a member of an uploaded zip may use. Python's zipfile bounds what
#: one read of a deflated member unpacks, but decompresses a whole compressed chunk of a
#: bzip2 or LZMA member at once: 40 bytes of bzip2 can be 45 MB of zeros, so a small
#: archive could fill the memory before any size cap is checked.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


def check_zip_methods(infos: Sequence[zipfile.ZipInfo]) -> None:
    """A 415 naming the first member compressed other than stored or deflated."""
    for info in infos:
        if info.compress_type not in ZIP_METHODS:
            raise UploadError(
                f"{info.filename} is compressed with method {info.compress_type} (bzip2, LZMA or "
                "another); only stored or deflated (ordinary zip) members are accepted.",
                415,
            )


def check_size(data: bytes, limit: int, what: str) -> None:
    if not data:
        raise UploadError(f"The {what} is empty (0 bytes).")
    if len(data) > limit:
        raise UploadError(
            f"The {what} is {len(data) / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB.",
            status=413,
        )


def check_input_values(shape: Sequence[int], max_values: int, *, source: str = "given") -> None:
    """Refuse an input shape ``(C, H, W)`` whose ``C·H·W`` exceeds ``max_values`` (413).

    Every forward pass allocates at least this many floats per image (and the preview
    resizes images to it), so the cap applies before a worker sees the model.
    """
    values = math.prod(shape)
    if values > max_values:
        dims = "×".join(map(str, shape))
        raise UploadError(
            f"The {source} input size {dims} (C×H×W) is {values:,} values per image; "
            f"ConceptLens accepts at most {max_values:,} (a 1024×1024 RGB image is "
            f"{3 * 1024 * 1024:,}). Use a smaller input size.",
            status=413,
        )


def sniff_model(data: bytes, *, max_input_values: int | None = None) -> str:
    """Which container the bytes are, or an :class:`UploadError` saying why they are refused.

    Beyond recognising the container: a torch zip's pickles must hold only tensors
    (:func:`~backend.pickle_scan.check_torch_zip_pickles`), and an ONNX graph must pass
    ``onnx.checker`` and, with ``max_input_values``, declare no larger image input.
    """
    if data[:1] == b"\x80" or (data[:1] in (b"(", b"}", b"]") and data[-1:] == b"."):
        raise UploadError(
            "This file is a Python pickle. Loading a pickle can run code hidden in the file, "
            f"so ConceptLens refuses it. {_SAFE_FORMATS}",
            status=415,
        )
    if data[:4] == b"PK\x03\x04":
        return _sniff_zip(data)
    if _looks_like_safetensors(data):
        return "safetensors"
    if data[:1] == b"\x08":
        _check_onnx(data, max_input_values)
        return "onnx"
    raise UploadError(f"This file is not a model format ConceptLens reads. {_SAFE_FORMATS}", 415)


#: A model zip may unpack to at most this many times its own size (plus 1 MiB): torch
#: writes its archives stored, and weights hardly compress, so more means a zip bomb that
#: the checksum test below would spend minutes unpacking.
MAX_ZIP_RATIO = 4


def _sniff_zip(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            infos = archive.infolist()
            check_zip_methods(infos)
            declared = sum(i.file_size for i in infos)
            if declared > MAX_ZIP_RATIO * len(data) + (1 << 20):
                raise UploadError(
                    f"The archive says it unpacks to {declared / 2**20:.0f} MB, over "
                    f"{MAX_ZIP_RATIO}× its own size; a model file does not compress like that.",
                    413,
                )
            broken = archive.testzip()
    except UploadError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise UploadError(f"The archive is damaged or truncated ({exc}).") from None
    if broken is not None:
        raise UploadError(f"The archive is damaged: {broken} fails its checksum.")
    inner = {name.split("/", 1)[1] if "/" in name else name for name in names}
    if any(
        n in ("archive_format", "serialized_exported_program.json") or n.startswith("models/")
        for n in inner
    ):
        raise UploadError(
            "This is a torch.export archive (.pt2). Its loader can run code stored in the "
            f"file, so ConceptLens refuses it. {_SAFE_FORMATS}",
            status=415,
        )
    if any(n.startswith("code/") for n in inner) and "constants.pkl" in inner:
        kind = "torchscript"
    elif "data.pkl" in inner:
        kind = "state_dict"
    else:
        raise UploadError(
            f"This zip archive is not a model ConceptLens reads. {_SAFE_FORMATS}", 415
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_torch_zip_pickles(archive, torchscript=kind == "torchscript")
    except PickleRefused as exc:
        raise UploadError(str(exc), exc.status) from None
    return kind


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (length,) = struct.unpack("<Q", data[:8])
    if not 2 <= length <= len(data) - 8 or data[8:9] != b"{":
        return False
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UploadError("The safetensors header is damaged.") from None
    return isinstance(header, dict)


def _check_onnx(data: bytes, max_input_values: int | None = None) -> None:
    import onnx  # protobuf only; it cannot run code from the file

    try:
        proto = onnx.load_model_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise UploadError(
            f"This ONNX file is damaged or invalid ({str(exc).splitlines()[0]})."
        ) from None
    if max_input_values is not None:
        declared = _onnx_image_dims(proto)
        if declared:
            check_input_values(declared, max_input_values, source="ONNX model's")


def _onnx_image_dims(proto: object) -> list[int]:
    """The fixed dims among C, H, W of the graph's single rank-4 input (dynamic ones left
    out: their product is a lower bound of the input size). Empty for any other graph — the
    worker explains those."""
    graph = proto.graph  # type: ignore[attr-defined]
    weights = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    if len(inputs) != 1:
        return []
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        return []
    return [int(d.dim_value) for d in list(dims)[1:] if d.dim_value > 0]


def check_image(data: bytes, *, max_pixels: int) -> tuple[str, int, int, str]:
    """PNG or JPEG only, decodable, within the pixel cap → (content type, width, height, mode)."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow must not refuse what the cap allows
    try:
        with Image.open(io.BytesIO(data)) as img:
            kind = img.format
            width, height, mode = img.width, img.height, img.mode
            if kind not in ("PNG", "JPEG"):
                raise UploadError(f"Images must be PNG or JPEG, this one is {kind}.", status=415)
            if width * height > max_pixels:
                raise UploadError(
                    f"The image is {width}×{height} pixels; at most {max_pixels:,} are accepted.",
                    status=413,
                )
            img.load()  # decodes fully: truncated or corrupt data fails here
    except UploadError:
        raise
    except UnidentifiedImageError:
        raise UploadError(
            "This file is not an image ConceptLens can read (PNG or JPEG).", 415
        ) from None
    except Image.DecompressionBombError:
        raise UploadError(
            f"The image has too many pixels; at most {max_pixels:,} are accepted.", status=413
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UploadError(f"The image is damaged or truncated ({exc}).") from None
    return ("image/png" if kind == "PNG" else "image/jpeg"), width, height, mode
