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
import pickle
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .architectures import ARCHITECTURES
from .formats import (
    _SAVE_ADVICE,
    FORMATS,
    MAX_INPUT_VALUES,
    MAX_MODEL_BYTES,
    ModelLoadError,
    Shape,
    _check_input_values,
    _checked_shape,
    _last_line,
    _read_bounded,
    _resolve_shape,
    checked_test_output,
    detect_format,
    failure_on_test_input,
    onnx_proto,
    onnx_run,
    parse_onnx_model,
)
from .formats import onnx_session as _onnx_session
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

Forward = Callable[[torch.Tensor], torch.Tensor]


# torch 2.13 deprecates TorchScript; we still accept it (ONNX and TorchScript are the two
# ways to bring a model whose code ConceptLens does not have).
_JIT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"


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


# --------------------------------------------------------------------------- ONNX


def onnx_session(data: bytes, device: torch.device) -> ort.InferenceSession:
    """An onnxruntime session with torch's intra-op thread count (the process's policy,
    :mod:`conceptlens.threads`), on CUDA first when ``device`` is a CUDA device."""
    return _onnx_session(data, str(device), torch.get_num_threads())


def onnx_forward(
    session: ort.InferenceSession, fixed_batch: int | None, device: torch.device
) -> Forward:
    """:func:`.formats.onnx_run` on torch batches: through NumPy on the CPU, back to ``device``."""
    run = onnx_run(session, fixed_batch)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(run(x.detach().cpu().numpy())).to(device)

    return forward


def _load_onnx(
    data: bytes, input_shape: Shape | None, device: torch.device, max_input_values: int
) -> _Prepared:
    dims, shape = parse_onnx_model(data, input_shape, max_input_values)
    proto = onnx_proto(data)
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
        raise failure_on_test_input(shape, error, _failure_hint(prepared)) from error
    if not isinstance(out, torch.Tensor):
        return checked_test_output(None, type(out).__name__, True)  # raises
    return checked_test_output(
        tuple(out.shape), str(list(out.shape)), bool(torch.isfinite(out).all())
    )


def load_model(
    path: str | Path,
    *,
    input_shape: tuple[int, int, int] | None = None,
    architecture: str | None = None,
    device: str | torch.device = "cpu",
    max_bytes: int = MAX_MODEL_BYTES,
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
