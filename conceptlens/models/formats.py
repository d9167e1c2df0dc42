"""Model files without torch: recognising a format from its bytes, bounded reads, input-shape
checks, and ONNX models run by onnxruntime on NumPy arrays.

:mod:`.loaders` builds on this module for every format; an analysis of an ONNX model uses
it alone (:func:`load_onnx`), so that ``conceptlens analyze model.onnx`` never imports torch
(1.6–2 s of a process whose forward passes take 0.1 s at n = 12; ``bench/README.md``,
"Whole processes"). The safety rules are those of :mod:`.loaders`: an ONNX file is refused
when any tensor in it keeps its values in an external file, and its input is sized before
onnxruntime sees it, both read from the bytes by :mod:`.onnx_wire` (``onnx`` itself is
imported only by the service's loader, which also runs ``onnx.checker``).
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from conceptlens.models.onnx_wire import OnnxFacts, OnnxInput, OnnxWireError, scan_onnx

if TYPE_CHECKING:  # onnx and onnxruntime are imported when an ONNX model is loaded
    import onnx
    import onnxruntime as ort

__all__ = [
    "FORMATS",
    "MAX_INPUT_VALUES",
    "MAX_MODEL_BYTES",
    "ModelLoadError",
    "OnnxModel",
    "detect_format",
    "load_onnx",
    "onnx_run",
    "onnx_session",
]

Array = npt.NDArray[np.float32]
Run = Callable[[Array], Array]
"""A float32 batch ``[B, C, H, W]`` → float32 logits ``[B, classes]``, both NumPy."""

Shape = tuple[int, int, int]
"""One input image's ``(C, H, W)``."""


FORMATS = ("onnx", "torchscript", "safetensors", "state_dict")
"""Format names :func:`detect_format` returns and ``LoadedModel.format`` (:mod:`.loaders`)
holds."""


_SUPPORTED = (
    "ConceptLens reads ONNX (.onnx), TorchScript (torch.jit.save), and weights of a "
    "ConceptLens architecture as safetensors or as a state dict saved with torch.save."
)


_SAVE_ADVICE = (
    "save the model's state_dict (safetensors preferred) or export it to ONNX or TorchScript"
)


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


# Legacy torch.save: pickle protocol 2, then the long integer 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


# Opcodes a protocol 0/1 pickle can start with: MARK ( EMPTY_DICT } EMPTY_LIST ] GLOBAL c …
_OLD_PICKLE_STARTS = b"(}])cNIFLSVGJKMUX"


_ONNX_FIRST_BYTE = 0x08  # ModelProto field 1 (ir_version), varint — always serialised first.


MAX_MODEL_BYTES = 200 * 2**20
"""Default cap on a model file's size: larger files are refused before they are read."""

MAX_INPUT_VALUES = 3 * 1024 * 1024
"""Default cap on ``C·H·W`` of one input image (a 1024×1024 RGB image): every forward pass
allocates at least this many floats per image, so a declared ``3×100000×100000`` is refused
before anything is allocated. It equals the service's default ``max_input_values``."""


class ModelLoadError(ValueError):
    """A model file cannot be used; the message says why and what to do, for a person."""


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _last_line(error: BaseException) -> str:
    """The informative line of a library error (TorchScript puts it last), at most 300 chars."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def detect_format(data: bytes, name: str = "The file") -> str:
    """Recognise a model file from its bytes; return one of :data:`FORMATS`.

    ``data`` must be the whole file (a zip archive's table of contents is at its end);
    ``name`` only appears in messages. Cost: a scan of the zip directory at most —
    ONNX is only recognised by its first byte here and parsed by the loader.

    Raises:
        ModelLoadError: for empty, refused (``.pt2``, pickles), damaged or unknown files.

    Example:
        >>> try:
        ...     detect_format(b"")
        ... except ModelLoadError as error:
        ...     print(error)
        The file is empty. Upload the model file again.
    """
    if not data:
        raise ModelLoadError(f"{name} is empty. Upload the model file again.")
    if data.startswith(_ZIP_MAGIC):
        return _classify_zip(data, name)
    if data.startswith(_LEGACY_TORCH_MAGIC):
        raise ModelLoadError(
            f"{name} was written by torch.save in the legacy (pre-1.6, non-zip) format, "
            "which is a pickle. ConceptLens refuses it because unpickling can run code "
            f"stored in the file; {_SAVE_ADVICE}."
        )
    if _is_safetensors(data):
        return "safetensors"
    if _is_pickle(data):
        raise ModelLoadError(
            f"{name} is a Python pickle. ConceptLens refuses pickles because unpickling "
            f"can run code stored in the file; {_SAVE_ADVICE}."
        )
    if data[0] == _ONNX_FIRST_BYTE:
        return "onnx"
    raise ModelLoadError(f"{name} is not in a model format ConceptLens recognises. {_SUPPORTED}")


def _is_safetensors(data: bytes) -> bool:
    """8-byte little-endian header length, then a JSON object that fits in the file."""
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return 2 <= header_len <= len(data) - 8 and data[8:9] == b"{"


def _is_pickle(data: bytes) -> bool:
    """Protocol 2+ pickles start with PROTO (0x80, version); older ones end with STOP ('.')."""
    if data[0] == 0x80 and len(data) > 1 and 2 <= data[1] <= 5:
        return True
    return data[:1] in {bytes([c]) for c in _OLD_PICKLE_STARTS} and data.endswith(b".")


def _archive_entries(data: bytes, name: str) -> set[str]:
    """Entry names without the archive's top folder (``m/code/x.py`` → ``code/x.py``)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise ModelLoadError(
            f"{name} is a zip archive but it is damaged or truncated ({_last_line(error)}). "
            "Upload the complete file again."
        ) from error
    return {entry.split("/", 1)[1] if "/" in entry else entry for entry in names}


def _classify_zip(data: bytes, name: str) -> str:
    """Tell torch.export (.pt2), TorchScript and torch.save archives apart by their layout.

    torch 2.13 ``torch.export.save`` writes ``archive_format``, ``models/model.json`` and
    ``data/weights/…`` (older versions: ``serialized_exported_program.json``);
    ``torch.jit.save`` writes ``code/…`` and ``constants.pkl``; ``torch.save`` writes
    ``data.pkl`` and no code.
    """
    entries = _archive_entries(data, name)
    if {"archive_format", "serialized_exported_program.json"} & entries or any(
        entry.startswith("models/") for entry in entries
    ):
        raise ModelLoadError(
            f"{name} is a torch.export archive (.pt2). ConceptLens refuses these because "
            "loading them can execute code stored in the file; export the model to ONNX or "
            "TorchScript instead."
        )
    if "constants.pkl" in entries and any(entry.startswith("code/") for entry in entries):
        return "torchscript"
    if "data.pkl" in entries:
        return "state_dict"
    raise ModelLoadError(
        f"{name} is a zip archive, but not one written by torch.jit.save or torch.save. "
        f"{_SUPPORTED}"
    )


def _scan_onnx(data: bytes) -> OnnxFacts:
    """The facts :mod:`.onnx_wire` reads from an ONNX file; refuse a damaged one and one
    that keeps any tensor (weights, constants, subgraphs' tensors) in external files."""
    try:
        facts = scan_onnx(data)
    except OnnxWireError as error:
        raise _unreadable_onnx(error) from error
    if facts.external:
        raise ModelLoadError(
            "This ONNX model keeps its weights in separate files (external data), which "
            "ConceptLens does not read. Export it with all weights inside one .onnx file."
        )
    return facts


def _unreadable_onnx(error: BaseException) -> ModelLoadError:
    return ModelLoadError(
        "The file starts like an ONNX model but could not be read as one; it may be "
        f"truncated or damaged ({_last_line(error)}). Export the model again."
    )


def onnx_proto(data: bytes) -> onnx.ModelProto:
    """The parsed graph, checked by ``onnx.checker`` (for the service's loader, which lists
    node outputs as layers; imports ``onnx``). Call :func:`parse_onnx_model` first."""
    import onnx

    try:
        proto = onnx.load_model_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as error:
        raise _unreadable_onnx(error) from error
    return proto


#: ``TensorProto.DataType`` names, for messages (a test checks them against ``onnx``).
_ONNX_TYPES = [
    "UNDEFINED",
    "FLOAT",
    "UINT8",
    "INT8",
    "UINT16",
    "INT16",
    "INT32",
    "INT64",
    "STRING",
    "BOOL",
    "FLOAT16",
    "DOUBLE",
    "UINT32",
    "UINT64",
    "COMPLEX64",
    "COMPLEX128",
    "BFLOAT16",
    "FLOAT8E4M3FN",
    "FLOAT8E4M3FNUZ",
    "FLOAT8E5M2",
    "FLOAT8E5M2FNUZ",
    "UINT4",
    "INT4",
    "FLOAT4E2M1",
]
_ONNX_FLOAT = 1


def _onnx_type_name(elem_type: int) -> str:
    known = 0 <= elem_type < len(_ONNX_TYPES)
    return _ONNX_TYPES[elem_type] if known else f"element type {elem_type}"


def _onnx_input(facts: OnnxFacts) -> OnnxInput:
    """The single float32 rank-4 image input (initialisers listed as inputs are skipped)."""
    inputs = [value for value in facts.inputs if value.name not in facts.initializers]
    if len(inputs) != 1:
        raise ModelLoadError(
            f"This ONNX model has {len(inputs)} inputs; ConceptLens needs a classifier with "
            "exactly one input, a batch of images [B, C, H, W]."
        )
    if inputs[0].elem_type != _ONNX_FLOAT:
        raise ModelLoadError(
            f"This ONNX model takes {_onnx_type_name(inputs[0].elem_type)} input; ConceptLens "
            "feeds float32 images. Export the model with a float32 input."
        )
    if len(inputs[0].dims) != 4:
        raise ModelLoadError(
            f"This ONNX model takes a rank-{len(inputs[0].dims)} input; ConceptLens "
            "feeds image batches of rank 4, [B, C, H, W]."
        )
    return inputs[0]


def _resolve_shape(graph_shape: tuple[int | None, ...], given: Shape | None, kind: str) -> Shape:
    """Reconcile the shape a model declares with the one the user gave."""
    if all(d is not None for d in graph_shape):
        declared = tuple(int(d) for d in graph_shape if d is not None)
        if given is not None and tuple(given) != declared:
            raise ModelLoadError(
                f"The {kind} expects inputs of shape {_fmt_shape(declared)} (C×H×W), but "
                f"{_fmt_shape(tuple(given))} was given. Use {_fmt_shape(declared)}."
            )
        return (declared[0], declared[1], declared[2])
    if given is None:
        raise ModelLoadError(
            f"The {kind} does not fix its input size; give the input shape (C, H, W) the "
            "model was trained on."
        )
    return _checked_shape(given)


def _checked_shape(shape: tuple[int, ...]) -> Shape:
    if len(shape) != 3 or any(int(d) <= 0 for d in shape):
        raise ModelLoadError(
            f"The input shape must be three positive numbers (C, H, W), got {tuple(shape)}."
        )
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _check_input_values(shape: tuple[int, ...], max_values: int) -> None:
    """Refuse an input shape whose ``C·H·W`` exceeds ``max_values``, before any allocation."""
    values = math.prod(int(d) for d in shape)
    if values > max_values:
        raise ModelLoadError(
            f"The input shape {_fmt_shape(tuple(shape))} (C×H×W) is {values:,} values per "
            f"image; ConceptLens accepts at most {max_values:,} (3×1024×1024 by default). "
            "Use a smaller input size."
        )


def _human_size(n_bytes: int) -> str:
    """``1000`` → ``'1000 bytes'``, ``2048`` → ``'2.0 KiB'``, ``3 * 2**20`` → ``'3.0 MiB'``."""
    if n_bytes < 2**10:
        return f"{n_bytes} bytes"
    if n_bytes < 2**20:
        return f"{n_bytes / 2**10:.1f} KiB"
    return f"{n_bytes / 2**20:.1f} MiB"


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """Read the whole file, refusing more than ``max_bytes`` (checked before and while reading)."""
    if not path.is_file():
        raise ModelLoadError(f"There is no model file at {path}.")
    size = path.stat().st_size
    if size <= max_bytes:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
        size = len(data)
    if size > max_bytes:
        raise ModelLoadError(
            f"The file is {_human_size(size)}, larger than the {_human_size(max_bytes)} limit. "
            "Use a smaller model or ask for the limit to be raised."
        )
    return data


def onnx_session(data: bytes, device: str, threads: int) -> ort.InferenceSession:
    """An onnxruntime session on CPU with ``threads`` intra-op threads (CUDA first when
    ``device`` is a CUDA device, ``"cuda"`` or ``"cuda:K"``, and onnxruntime has it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads = threads
    # onnxruntime's pool threads otherwise spin after each run and starve the work between
    # forward passes (masking, transforms, in torch or NumPy): ×10 slower here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    cuda = device.split(":")[0] == "cuda"
    if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(data, sess_options=options, providers=providers)
    except Exception as error:
        raise ModelLoadError(
            f"onnxruntime cannot run this ONNX model ({_last_line(error)}). Export it again "
            "with a standard opset (e.g. 17)."
        ) from error


def onnx_run(session: ort.InferenceSession, fixed_batch: int | None) -> Run:
    """The session as a NumPy function; with a fixed graph batch N, in zero-padded chunks of N."""
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    def run_one(array: Array) -> Array:
        return np.asarray(session.run([output_name], {input_name: array})[0], dtype=np.float32)

    def run(array: Array) -> Array:
        array = np.ascontiguousarray(array, dtype=np.float32)
        if fixed_batch is None or len(array) == fixed_batch:
            return run_one(array)
        starts = range(0, len(array), fixed_batch)
        chunks = [array[i : i + fixed_batch] for i in starts]
        return np.concatenate([_run_padded(run_one, chunk, fixed_batch) for chunk in chunks])

    return run


def _run_padded(run: Run, chunk: Array, size: int) -> Array:
    """Run a chunk of at most ``size`` samples, zero-padded to exactly ``size``."""
    padding = np.zeros((size - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
    return run(np.concatenate([chunk, padding]))[: len(chunk)]


def checked_test_output(shape: tuple[int, ...] | None, got: str, finite: bool) -> int:
    """The number of classes from the logits of one blank input (``shape``: ``None`` when
    the model returned no tensor; ``got`` then names what it returned), or a
    :class:`ModelLoadError` that says what is wrong with them."""
    if shape is None or len(shape) != 2 or shape[0] != 1:
        raise ModelLoadError(
            f"For one input the model returned {got}; ConceptLens needs a classifier that "
            "returns one tensor of logits, shape [1, classes]."
        )
    if not finite:
        raise ModelLoadError("The model returned NaN or infinite logits for a blank image.")
    return int(shape[1])


def failure_on_test_input(shape: Shape, error: BaseException, hint: str) -> ModelLoadError:
    """The error for a model that raised on its test input of ``shape``."""
    return ModelLoadError(
        f"The model failed on a test input of shape {_fmt_shape(shape)} (C×H×W): "
        f"{_last_line(error)}. {hint}"
    )


@dataclass(kw_only=True)
class OnnxModel:
    """An ONNX classifier on NumPy arrays (:func:`load_onnx`); :attr:`run` maps float32
    ``[B, C, H, W]`` to float32 logits ``[B, num_classes]`` without checking the shape."""

    input_shape: Shape
    num_classes: int
    device: str
    run: Run = field(repr=False, compare=False)
    format: str = "onnx"


def load_onnx(
    path: str | Path,
    *,
    input_shape: Shape | None = None,
    device: str = "cpu",
    threads: int = 1,
    max_bytes: int = MAX_MODEL_BYTES,
    max_input_values: int = MAX_INPUT_VALUES,
) -> OnnxModel:
    """Load an ONNX classifier as :func:`.loaders.load_model` does (the same checks and
    messages, one test pass on a blank input), without torch.

    Raises:
        ModelLoadError: with a message for a person, whatever went wrong — including a file
            that is not ONNX.
    """
    if input_shape is not None:
        _check_input_values(input_shape, max_input_values)
    data = _read_bounded(Path(path), max_bytes)
    fmt = detect_format(data, name="The file")
    if fmt != "onnx":
        raise ModelLoadError(f"The file is a {fmt} model, not an ONNX model.")
    dims, shape = parse_onnx_model(data, input_shape, max_input_values)
    run = onnx_run(onnx_session(data, device, threads), dims[0])
    try:
        out = run(np.zeros((1, *shape), dtype=np.float32))
    except Exception as error:
        raise failure_on_test_input(shape, error, "Check the input shape.") from error
    classes = checked_test_output(out.shape, str(list(out.shape)), bool(np.isfinite(out).all()))
    return OnnxModel(input_shape=shape, num_classes=classes, device=device, run=run)


def parse_onnx_model(
    data: bytes, input_shape: Shape | None, max_input_values: int
) -> tuple[list[int | None], Shape]:
    """The graph input's dims (``None`` where dynamic) and the input shape ``(C, H, W)``
    reconciled with ``input_shape`` and capped, read from the bytes (:mod:`.onnx_wire`)
    before any session exists; a damaged file, or one with external data, is refused."""
    dims = _onnx_input(_scan_onnx(data)).dims
    shape = _resolve_shape(tuple(dims[1:]), input_shape, "ONNX model")
    _check_input_values(shape, max_input_values)  # before onnxruntime plans any memory
    return dims, shape
