"""One analysis end to end: model file + image file → :class:`InteractionResult`.

This is what the CLI runs: resolve the input shape, read and preprocess the image, build
players and baseline, enumerate the logit table (every forward pass, with progress), then
derive everything else from that table. In a process that has not imported torch (the
``conceptlens analyze`` command), an ONNX model runs on NumPy arrays throughout
(:mod:`conceptlens.models.formats`, :mod:`conceptlens.array_game`) and, without AND-OR
steps (:mod:`conceptlens.and_or` computes in torch), the process never imports it:
1.5–2 s less per command. Everything else runs on tensors (:mod:`conceptlens.game`): the
torch formats, and ONNX where torch is loaded anyway (a notebook, a worker), because there
the torch path's table came 2–13 % sooner (``bench/README.md``, "Whole processes"). Both
give the same table for the same ONNX model, bit for bit.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conceptlens.aliases import FloatArray, ProgressFn
from conceptlens.analysis import InteractionResult, interactions_from_logits
from conceptlens.images import read_image
from conceptlens.memory import release_heap
from conceptlens.models.formats import MAX_MODEL_BYTES, _read_bounded, detect_format
from conceptlens.outputs import OutputKind
from conceptlens.players import (
    Array,
    BaselineKind,
    PatchGrid,
    Players,
    baseline_array,
    parse_grid,
)

if TYPE_CHECKING:
    import torch

    from conceptlens.models.loaders import LoadedModel

#: Exact enumeration costs 2**n forward passes; beyond this, use sampling.
MAX_EXACT_PLAYERS = 24
#: From this many players on, the heap the passes freed is given back before the value
#: tables are made (issue 14: 1,016 → 910 MiB at n = 24, 301 → 281 MiB at n = 22); below
#: it the tables are small and the trim (milliseconds: 8 ms at n = 16) would only cost.
RELEASE_MIN_PLAYERS = 22


@dataclass
class AnalysisRequest:
    """What to analyse and how; the CLI's flags, one to one."""

    model: Path
    image: Path
    grid: str = "4x4"
    players: list[int] | None = None
    others_present: bool = True
    baseline: str = "mean"
    target: int | str = "predicted"
    output: OutputKind = "log-odds"
    tau: float = 0.05
    top_k: int = 10
    and_or_steps: int = 0
    input_size: tuple[int, int] | None = None
    channels: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    architecture: str | None = None
    batch_size: int = 2048
    device: str | None = None


def resolve_model(
    request: AnalysisRequest, device: torch.device, fmt: str | None = None
) -> LoadedModel:
    """Load a model for tensors; the input shape comes from the file where its format
    (``fmt``, read from the file when not given) records it, else from
    ``input_size``/``channels``, else from the image itself."""
    from conceptlens.models.loaders import load_model

    given = _given_shape(request)
    if given is None and (fmt or _format(request)) == "torchscript":
        native = read_image(request.image)
        given = (
            request.channels or int(native.shape[0]),
            *(request.input_size or (int(native.shape[1]), int(native.shape[2]))),
        )
    return load_model(
        request.model, input_shape=given, architecture=request.architecture, device=device
    )


def run_analysis(
    request: AnalysisRequest, *, progress: ProgressFn | None = None
) -> InteractionResult:
    """Every forward pass of the exact analysis, then all derived results."""
    fmt = _format(request)
    on_arrays = fmt == "onnx" and "torch" not in sys.modules
    enumerate_table = _onnx_table if on_arrays else _torch_table
    t0 = time.perf_counter()
    logits, players, facts = enumerate_table(request, fmt, progress)
    forward_s = time.perf_counter() - t0
    if players.n >= RELEASE_MIN_PLAYERS:  # what the passes held is not kept beside the tables
        release_heap()
    return interactions_from_logits(
        logits,
        target=request.target,
        output=request.output,
        tau=request.tau,
        k=request.top_k,
        and_or_steps=request.and_or_steps,
        meta={
            "model": str(request.model),
            "model_format": facts["model_format"],
            "image": str(request.image),
            "input_shape": facts["input_shape"],
            "grid": f"{players.grid.rows}x{players.grid.cols}",
            "players": players.cells,
            "others_present": request.others_present,
            "baseline": request.baseline,
            "forward_passes": 1 << players.n,
            "forward_seconds": round(forward_s, 3),
            "device": facts["device"],
        },
    )


Enumerated = tuple[FloatArray, Players, dict[str, Any]]
"""The logit table, the players, and the facts of the model it came from."""


def _onnx_table(request: AnalysisRequest, fmt: str, progress: ProgressFn | None) -> Enumerated:
    """The table of an ONNX model (``fmt``) through onnxruntime on NumPy arrays: no torch."""
    from conceptlens.array_game import array_logit_table
    from conceptlens.models.formats import load_onnx

    model = load_onnx(
        request.model,
        input_shape=_given_shape(request),
        device=request.device or _onnx_default_device(),
        threads=_threads(),
    )
    x, players, baseline = _inputs(request, model.input_shape)
    logits = array_logit_table(
        model.run, x, baseline, players, batch_size=request.batch_size, progress=progress
    )
    return logits, players, _facts(model.format, model.input_shape, model.device)


def _torch_table(request: AnalysisRequest, fmt: str, progress: ProgressFn | None) -> Enumerated:
    """The table of a model of format ``fmt`` on tensors (torch formats, and ONNX where torch
    is loaded)."""
    import torch

    from conceptlens.game import MaskedModelGame, default_device, logit_table

    device = torch.device(request.device) if request.device else default_device()
    model = resolve_model(request, device, fmt)
    x, players, baseline = _inputs(request, model.input_shape)
    game = MaskedModelGame(
        model.predict,
        torch.from_numpy(x),
        players,
        torch.from_numpy(baseline),
        device=device,
        batch_size=request.batch_size,
    )
    logits = logit_table(game, progress=progress)
    return logits, players, _facts(model.format, model.input_shape, str(device))


def _inputs(request: AnalysisRequest, shape: tuple[int, int, int]) -> tuple[Array, Players, Array]:
    """The preprocessed image, the players on it and the baseline, as NumPy arrays."""
    channels, height, width = shape
    x = read_image(
        request.image, channels=channels, size=(height, width), mean=request.mean, std=request.std
    )
    rows, cols = parse_grid(request.grid)
    players = Players(
        PatchGrid(rows, cols, height, width), request.players, others_present=request.others_present
    )
    if players.n > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"{players.n} players need 2^{players.n} forward passes; exact analysis allows at most "
            f"{MAX_EXACT_PLAYERS} players — choose a coarser grid or fewer players"
        )
    baseline = baseline_array(x, _baseline_kind(request, channels, height, width))
    return x, players, baseline


def _facts(fmt: str, shape: tuple[int, int, int], device: str) -> dict[str, Any]:
    return {"model_format": fmt, "input_shape": list(shape), "device": device}


def _format(request: AnalysisRequest) -> str:
    """The model file's format, from at most :data:`MAX_MODEL_BYTES` of it (the loaders'
    own limit: a larger file is refused here, unread)."""
    return detect_format(_read_bounded(request.model, MAX_MODEL_BYTES), "The model file")


def _onnx_default_device() -> str:
    """``cuda`` where onnxruntime has its CUDA provider, else ``cpu``."""
    import onnxruntime as ort

    return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"


def _threads() -> int:
    """onnxruntime's intra-op threads without torch: ``OMP_NUM_THREADS`` when set (as torch
    reads it), else one per CPU this process may run on."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _given_shape(request: AnalysisRequest) -> tuple[int, int, int] | None:
    if request.input_size is None and request.channels is None:
        return None
    if request.input_size is None or request.channels is None:
        raise ValueError("give both --input-size and --channels, or neither")
    return (request.channels, *request.input_size)


def _baseline_kind(request: AnalysisRequest, c: int, h: int, w: int) -> BaselineKind | Array:
    if request.baseline in ("zero", "mean", "blur"):
        return request.baseline  # type: ignore[return-value]
    path = Path(request.baseline)
    if not path.exists():
        raise ValueError(
            f"baseline must be zero, mean, blur or an image file; {path} does not exist"
        )
    return read_image(path, channels=c, size=(h, w), mean=request.mean, std=request.std)
