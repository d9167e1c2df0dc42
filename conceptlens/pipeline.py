"""One analysis end to end: model file + image file → :class:`InteractionResult`.

This is what the CLI runs and what worker tasks will call: resolve the input shape, read
and preprocess the image, build players and baseline, enumerate the logit table (every
forward pass, with progress), then derive everything else from that table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from conceptlens.aliases import ProgressFn
from conceptlens.analysis import InteractionResult, interactions_from_logits
from conceptlens.game import MaskedModelGame, default_device, logit_table
from conceptlens.images import load_image
from conceptlens.memory import release_heap
from conceptlens.models.loaders import LoadedModel, detect_format, load_model
from conceptlens.outputs import OutputKind
from conceptlens.players import BaselineKind, PatchGrid, Players, make_baseline, parse_grid

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


def resolve_model(request: AnalysisRequest, device: torch.device) -> LoadedModel:
    """Load the model; the input shape comes from the file where its format records it,
    else from ``input_size``/``channels``, else from the image itself."""
    given = _given_shape(request)
    if (
        given is None
        and detect_format(request.model.read_bytes(), "The model file") == "torchscript"
    ):
        native = load_image(request.image)
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
    device = torch.device(request.device) if request.device else default_device()
    model = resolve_model(request, device)
    channels, height, width = model.input_shape
    x = load_image(
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
    baseline = make_baseline(x, _baseline_kind(request, channels, height, width))
    game = MaskedModelGame(
        model.predict, x, players, baseline, device=device, batch_size=request.batch_size
    )
    t0 = time.perf_counter()
    logits = logit_table(game, progress=progress)
    forward_s = time.perf_counter() - t0
    fmt = model.format
    del game, model  # the model, its runtime's arena and the batches are done with:
    if players.n >= RELEASE_MIN_PLAYERS:  # what they held is not kept beside the tables
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
            "model_format": fmt,
            "image": str(request.image),
            "input_shape": [channels, height, width],
            "grid": f"{rows}x{cols}",
            "players": players.cells,
            "others_present": request.others_present,
            "baseline": request.baseline,
            "forward_passes": 1 << players.n,
            "forward_seconds": round(forward_s, 3),
            "device": str(device),
        },
    )


def _given_shape(request: AnalysisRequest) -> tuple[int, int, int] | None:
    if request.input_size is None and request.channels is None:
        return None
    if request.input_size is None or request.channels is None:
        raise ValueError("give both --input-size and --channels, or neither")
    return (request.channels, *request.input_size)


def _baseline_kind(request: AnalysisRequest, c: int, h: int, w: int) -> BaselineKind | torch.Tensor:
    if request.baseline in ("zero", "mean", "blur"):
        return request.baseline  # type: ignore[return-value]
    path = Path(request.baseline)
    if not path.exists():
        raise ValueError(
            f"baseline must be zero, mean, blur or an image file; {path} does not exist"
        )
    return load_image(path, channels=c, size=(h, w), mean=request.mean, std=request.std)
