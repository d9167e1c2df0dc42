"""Safe loading of user-supplied image classifiers.

:func:`load_model` reads a file once (at most ``max_bytes``), recognises its format from
its bytes — never from its name — and returns a :class:`LoadedModel` that maps image
batches ``[B, C, H, W]`` to logits ``[B, classes]``.

Safety, per format:

* **ONNX** — a protobuf graph run by onnxruntime; cannot execute Python. Weights kept in
  external files are refused (they would be read from paths the file names).
* **safetensors** / **state dict** (``torch.save`` zip) — weights only, loaded into an
  architecture ConceptLens defines (:data:`~.architectures.ARCHITECTURES`). State dicts
  are unpickled with ``torch.load(weights_only=True)``, which refuses anything but
  tensors and plain containers.
* **TorchScript** — a *program*: ``torch.jit.load`` runs no Python, but the TorchScript
  code it contains could do what TorchScript ops can do (including file I/O). So code
  that would run while loading (``__setstate__``) is refused before ``torch.jit.load``,
  and every method and hook of every submodule must use only pure tensor operations
  (:mod:`.torchscript_check`) before the model is called at all. Still load it only in
  worker processes, never in the web process.
* **Input size**: ``C·H·W`` of one image, given or declared, is capped
  (:data:`MAX_INPUT_VALUES` by default) before the test forward pass allocates anything.
* **Refused**: ``torch.export`` archives (``.pt2``; loading one ran a payload planted in
  its weights config), raw pickles and legacy (non-zip) ``torch.save`` files (unpickling
  can run arbitrary code).
"""

from __future__ import annotations

import io
import json
import math
import pickle
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .architectures import ARCHITECTURES
from .torchscript_check import (
    TorchScriptRefused,
    check_torchscript_archive,
    check_torchscript_module,
)

if TYPE_CHECKING:  # onnx, onnxruntime and safetensors are imported by the format that uses them
    import onnx
    import onnxruntime as ort

__all__ = [
    "FORMATS",
    "MAX_INPUT_VALUES",
    "LoadedModel",
    "ModelLoadError",
    "detect_format",
    "load_model",
    "onnx_forward",
    "onnx_session",
]

Shape = tuple[int, int, int]
"""One input image's ``(C, H, W)``."""
Forward = Callable[[torch.Tensor], torch.Tensor]

FORMATS = ("onnx", "torchscript", "safetensors", "state_dict")
"""Format names :func:`detect_format` returns and :attr:`LoadedModel.format` holds."""

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
# torch 2.13 deprecates TorchScript; we still accept it (ONNX and TorchScript are the two
# ways to bring a model whose code ConceptLens does not have).
_JIT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"
_ONNX_FIRST_BYTE = 0x08  # ModelProto field 1 (ir_version), varint — always serialised first.


MAX_INPUT_VALUES = 3 * 1024 * 1024
"""Default cap on ``C·H·W`` of one input image (a 1024×1024 RGB image): every forward pass
allocates at least this many floats per image, so a declared ``3×100000×100000`` is refused
before anything is allocated. It equals the service's default ``max_input_values``."""


class ModelLoadError(ValueError):
    """A model file cannot be used; the message says why and what to do, for a person."""


@dataclass(kw_only=True)
class LoadedModel:
    """A classifier ready for inference, whatever format it came in.

    Attributes:
        format: one of :data:`FORMATS`.
        input_shape: ``(C, H, W)`` the model takes — from the ONNX graph when static,
            from the architecture for weights-only files, else as given to
            :func:`load_model` (which requires it when the file does not say).
        num_classes: width of the logits, measured by the test forward pass.
        layers: names for picking intermediate layers later — ONNX node outputs, or
            ``named_modules`` of the torch module (TorchScript or architecture).
        device: where :meth:`predict` takes and returns tensors.
        architecture: the ConceptLens architecture name for weights-only files, else None.
        module: the torch module (TorchScript or architecture), for forward hooks.
        onnx_model: the parsed ONNX graph, e.g. to expose intermediate outputs.
    """

    format: str
    input_shape: Shape
    num_classes: int
    layers: list[str]
    device: torch.device
    architecture: str | None = None
    module: nn.Module | None = field(default=None, repr=False)
    onnx_model: onnx.ModelProto | None = field(default=None, repr=False)
    _forward: Forward = field(repr=False, compare=False)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` (float32, on :attr:`device`) of a float32 ``[B, C, H, W]``.

        Runs under ``torch.inference_mode()``. ONNX models go through numpy on the CPU
        (onnxruntime), in chunks when the graph fixes the batch size.
        """
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"predict() takes a batch of shape [B, {', '.join(map(str, self.input_shape))}]"
                f", got {list(x.shape)}."
            )
        with torch.inference_mode():
            return self._forward(x.to(torch.float32)).to(torch.float32)


@dataclass(kw_only=True)
class _Prepared:
    """What a format-specific loader hands over before the test forward pass."""

    format: str
    forward: Forward
    input_shape: Shape
    layers: list[str]
    architecture: str | None = None
    module: nn.Module | None = None
    onnx_model: onnx.ModelProto | None = None


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _last_line(error: BaseException) -> str:
    """The informative line of a library error (TorchScript puts it last), at most 300 chars."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


# --------------------------------------------------------------------------- detection


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


# --------------------------------------------------------------------------- ONNX


def _parse_onnx(data: bytes) -> onnx.ModelProto:
    """Parse and check an ONNX model held in memory; refuse external weight files."""
    import onnx

    try:
        proto = onnx.load_model_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as error:
        raise ModelLoadError(
            "The file starts like an ONNX model but could not be read as one; it may be "
            f"truncated or damaged ({_last_line(error)}). Export the model again."
        ) from error
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in proto.graph.initializer):
        raise ModelLoadError(
            "This ONNX model keeps its weights in separate files (external data), which "
            "ConceptLens does not read. Export it with all weights inside one .onnx file."
        )
    return proto


def _onnx_input(proto: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The single float32 rank-4 image input (initialisers listed as inputs are skipped)."""
    import onnx

    weights = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in weights]
    if len(inputs) != 1:
        raise ModelLoadError(
            f"This ONNX model has {len(inputs)} inputs; ConceptLens needs a classifier with "
            "exactly one input, a batch of images [B, C, H, W]."
        )
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise ModelLoadError(
            f"This ONNX model takes {kind} input; ConceptLens feeds float32 images. "
            "Export the model with a float32 input."
        )
    if len(tensor_type.shape.dim) != 4:
        raise ModelLoadError(
            f"This ONNX model takes a rank-{len(tensor_type.shape.dim)} input; ConceptLens "
            "feeds image batches of rank 4, [B, C, H, W]."
        )
    return inputs[0]


def _static_dims(value: onnx.ValueInfoProto) -> list[int | None]:
    """Input dims, None where symbolic or unset."""
    return [d.dim_value if d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim]


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


def onnx_session(data: bytes, device: torch.device) -> ort.InferenceSession:
    """An onnxruntime session on CPU (CUDA first when asked for and available)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads = torch.get_num_threads()
    # onnxruntime's pool threads otherwise spin after each run and starve the torch and
    # BLAS work (masking, transforms) that runs between forward passes: ×10 slower here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(data, sess_options=options, providers=providers)
    except Exception as error:
        raise ModelLoadError(
            f"onnxruntime cannot run this ONNX model ({_last_line(error)}). Export it again "
            "with a standard opset (e.g. 17)."
        ) from error


def onnx_forward(
    session: ort.InferenceSession, fixed_batch: int | None, device: torch.device
) -> Forward:
    """Run the session on a torch batch; with a fixed graph batch N, in zero-padded chunks of N."""
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    def run(array: np.ndarray) -> np.ndarray:
        return np.asarray(session.run([output_name], {input_name: array})[0], dtype=np.float32)

    def forward(x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        if fixed_batch is None or len(array) == fixed_batch:
            out = run(array)
        else:
            starts = range(0, len(array), fixed_batch)
            chunks = [array[i : i + fixed_batch] for i in starts]
            out = np.concatenate([_run_padded(run, chunk, fixed_batch) for chunk in chunks])
        return torch.from_numpy(out).to(device)

    return forward


def _run_padded(
    run: Callable[[np.ndarray], np.ndarray], chunk: np.ndarray, size: int
) -> np.ndarray:
    """Run a chunk of at most ``size`` samples, zero-padded to exactly ``size``."""
    padding = np.zeros((size - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
    return run(np.concatenate([chunk, padding]))[: len(chunk)]


def _load_onnx(
    data: bytes, input_shape: Shape | None, device: torch.device, max_input_values: int
) -> _Prepared:
    proto = _parse_onnx(data)
    dims = _static_dims(_onnx_input(proto))
    shape = _resolve_shape(tuple(dims[1:]), input_shape, "ONNX model")
    _check_input_values(shape, max_input_values)  # before onnxruntime plans any memory
    session = onnx_session(data, device)
    return _Prepared(
        format="onnx",
        forward=onnx_forward(session, dims[0], device),
        input_shape=shape,
        layers=[output for node in proto.graph.node for output in node.output if output],
        onnx_model=proto,
    )


# --------------------------------------------------------------------------- TorchScript


def _load_torchscript(data: bytes, input_shape: Shape | None, device: torch.device) -> _Prepared:
    """Load a TorchScript archive with ``torch.jit.load``.

    TorchScript is a program: the code inside runs whenever the model does and can use
    any TorchScript op, file I/O included. Only load it in worker processes. The file
    does not record its input size, so ``input_shape`` is required.
    """
    if input_shape is None:
        raise ModelLoadError(
            "TorchScript files do not record the input size; give the input shape "
            "(C, H, W) the model was trained on."
        )
    shape = _checked_shape(input_shape)
    try:
        check_torchscript_archive(data)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=DeprecationWarning)
            module = torch.jit.load(io.BytesIO(data), map_location=device)
    except TorchScriptRefused as error:
        raise ModelLoadError(str(error)) from error
    except Exception as error:
        raise ModelLoadError(
            f"The TorchScript file could not be loaded; it may be truncated or damaged "
            f"({_last_line(error)}). Save it again with torch.jit.save."
        ) from error
    try:
        check_torchscript_module(module)
    except TorchScriptRefused as error:
        raise ModelLoadError(str(error)) from error
    module.eval()
    return _Prepared(
        format="torchscript",
        forward=module,
        input_shape=shape,
        layers=[name for name, _ in module.named_modules() if name],
        module=module,
    )


# --------------------------------------------------------------------------- weights only


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` string map of a safetensors header (empty if absent)."""
    header_len = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError("The safetensors header is damaged; save the file again.") from error
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return dict(metadata) if isinstance(metadata, dict) else {}


def _read_safetensors(data: bytes) -> tuple[dict[str, torch.Tensor], str | None]:
    """Tensors and the architecture name recorded in the header, if any."""
    import safetensors.torch

    metadata = _safetensors_metadata(data)
    try:
        tensors = safetensors.torch.load(data)
    except Exception as error:
        raise ModelLoadError(
            f"The safetensors file could not be read; it may be truncated or damaged "
            f"({_last_line(error)}). Save it again."
        ) from error
    return tensors, metadata.get("conceptlens_architecture")


def _read_state_dict(data: bytes) -> tuple[Any, str | None]:
    """Unpickle a torch.save zip, weights only; unwrap ``{"architecture", "state_dict"}``."""
    try:
        obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise ModelLoadError(
            "This torch.save file holds Python objects other than tensors (for example a "
            "whole model saved with torch.save(model)). ConceptLens refuses them because "
            f"unpickling can run code; {_SAVE_ADVICE}."
        ) from error
    except Exception as error:
        raise ModelLoadError(
            f"The torch.save file could not be read; it may be truncated or damaged "
            f"({_last_line(error)}). Save it again."
        ) from error
    if isinstance(obj, Mapping) and "state_dict" in obj and "architecture" in obj:
        name = obj["architecture"]
        return obj["state_dict"], name if isinstance(name, str) else None
    return obj, None


def _choose_architecture(given: str | None, recorded: str | None) -> str:
    """The architecture argument or the one the file records; both must be known and agree."""
    known = ", ".join(sorted(ARCHITECTURES))
    for name in (given, recorded):
        if name is not None and name not in ARCHITECTURES:
            raise ModelLoadError(
                f"Unknown architecture '{name}'. ConceptLens knows: {known}. Weights-only "
                "files can only be loaded into these; otherwise export the model to ONNX."
            )
    if given is not None and recorded is not None and given != recorded:
        raise ModelLoadError(
            f"The file says its architecture is '{recorded}', but '{given}' was given. "
            "Leave the architecture empty or choose the one the weights were trained for."
        )
    name = given or recorded
    if name is None:
        raise ModelLoadError(
            "These weights do not say which architecture they belong to; choose one of the "
            f"ConceptLens architectures ({known})."
        )
    return name


def _check_state(state: Any, expected: Mapping[str, torch.Tensor], name: str) -> None:
    """Fail on the first missing, unexpected or misshapen tensor, naming it."""
    if not isinstance(state, Mapping):
        raise ModelLoadError(
            f"The file holds a {type(state).__name__}, not a state dict of tensors; save "
            "model.state_dict()."
        )
    for key, tensor in expected.items():
        value = state.get(key)
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(
                f"The weights lack tensor '{key}' (shape {tuple(tensor.shape)}) that "
                f"architecture '{name}' needs."
            )
        if value.shape != tensor.shape:
            raise ModelLoadError(
                f"Tensor '{key}' has shape {tuple(value.shape)}, but architecture '{name}' "
                f"expects {tuple(tensor.shape)}."
            )
    for key in state:
        if key not in expected:
            raise ModelLoadError(
                f"The weights contain tensor '{key}', which architecture '{name}' does not "
                "have; these weights are for a different model."
            )


def _load_weights(
    state: Any, name: str, input_shape: Shape | None, device: torch.device, fmt: str
) -> _Prepared:
    """Build a registered architecture and load the checked weights into it."""
    spec = ARCHITECTURES[name]
    shape = _resolve_shape(spec.input_shape, input_shape, f"architecture '{name}'")
    module = spec.build()
    _check_state(state, module.state_dict(), name)
    module.load_state_dict(state, strict=True)
    module.to(device).eval()
    return _Prepared(
        format=fmt,
        forward=module,
        input_shape=shape,
        layers=[layer for layer, _ in module.named_modules() if layer],
        architecture=name,
        module=module,
    )


# --------------------------------------------------------------------------- entry point


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


def _prepare(
    data: bytes,
    fmt: str,
    input_shape: Shape | None,
    architecture: str | None,
    device: torch.device,
    max_input_values: int,
) -> _Prepared:
    if fmt == "onnx":
        return _load_onnx(data, input_shape, device, max_input_values)
    if fmt == "torchscript":
        return _load_torchscript(data, input_shape, device)
    if fmt == "safetensors":
        state, recorded = _read_safetensors(data)
    else:
        state, recorded = _read_state_dict(data)
    name = _choose_architecture(architecture, recorded)
    return _load_weights(state, name, input_shape, device, fmt)


def _first_conv_channels(module: nn.Module | None) -> int | None:
    """Input channels of the first 4-D weight (a convolution), if the module has one."""
    if module is None:
        return None
    for name, parameter in module.named_parameters():
        if name.endswith("weight") and parameter.dim() == 4:
            return int(parameter.shape[1])
    return None


def _failure_hint(prepared: _Prepared) -> str:
    channels = _first_conv_channels(prepared.module)
    if channels is None or channels == prepared.input_shape[0]:
        return "Check the input shape."
    return f"Its first convolution takes {channels} input channel(s); check the input shape."


def _count_classes(prepared: _Prepared, device: torch.device) -> int:
    """Run one forward pass on zeros; return the number of logits, or explain the failure."""
    shape = prepared.input_shape
    try:
        with torch.inference_mode():
            out = prepared.forward(torch.zeros((1, *shape), device=device))
    except Exception as error:
        raise ModelLoadError(
            f"The model failed on a test input of shape {_fmt_shape(shape)} (C×H×W): "
            f"{_last_line(error)}. {_failure_hint(prepared)}"
        ) from error
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelLoadError(
            f"For one input the model returned {got}; ConceptLens needs a classifier that "
            "returns one tensor of logits, shape [1, classes]."
        )
    if not bool(torch.isfinite(out).all()):
        raise ModelLoadError("The model returned NaN or infinite logits for a blank image.")
    return int(out.shape[1])


def load_model(
    path: str | Path,
    *,
    input_shape: tuple[int, int, int] | None = None,
    architecture: str | None = None,
    device: str | torch.device = "cpu",
    max_bytes: int = 200 * 2**20,
    max_input_values: int = MAX_INPUT_VALUES,
) -> LoadedModel:
    """Load an image classifier from a file, safely, and check it with one forward pass.

    Args:
        path: the model file; its format is recognised from its bytes (see
            :func:`detect_format`), the extension is ignored.
        input_shape: ``(C, H, W)``. Required for TorchScript and for ONNX graphs whose
            image size is dynamic; otherwise checked against what the file declares.
        architecture: a key of :data:`~.architectures.ARCHITECTURES` for weights-only
            files (safetensors, state dicts); overrides nothing — a file that records
            another architecture is refused. Ignored for ONNX and TorchScript.
        device: where :meth:`LoadedModel.predict` takes and returns tensors.
        max_bytes: larger files are refused before being read.
        max_input_values: the most values ``C·H·W`` one input image may have, whether
            given or declared by the file; checked before the model is loaded (given) or
            run (declared), so no input-sized memory is allocated for a refused model.

    Cost: one read of the file (kept in memory while loading), one parse, and one
    forward pass on a single zero image. TorchScript is a program: call this for
    TorchScript files only in worker processes.

    Raises:
        ModelLoadError: with a message for a person, whatever went wrong.
    """
    file = Path(path)
    dev = torch.device(device)
    if input_shape is not None:
        _check_input_values(input_shape, max_input_values)
    data = _read_bounded(file, max_bytes)
    fmt = detect_format(data, name="The file")
    prepared = _prepare(data, fmt, input_shape, architecture, dev, max_input_values)
    _check_input_values(prepared.input_shape, max_input_values)
    return LoadedModel(
        format=prepared.format,
        input_shape=prepared.input_shape,
        num_classes=_count_classes(prepared, dev),
        layers=prepared.layers,
        device=dev,
        architecture=prepared.architecture,
        module=prepared.module,
        onnx_model=prepared.onnx_model,
        _forward=prepared.forward,
    )
