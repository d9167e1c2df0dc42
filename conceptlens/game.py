"""The masked-model game and exact enumeration of its logit table — SCIENCE.md, Conventions.

A model ``f`` (anything mapping a float batch ``[B, C, H, W]`` to logits ``[B, classes]``),
an input ``x``, players and a baseline define a game: coalition ``S`` ↦ logits of ``f(x_S)``.
Masked inputs are built batch by batch on the model's device, never all ``2**n`` at once,
under ``torch.inference_mode``; the batch size halves on an out-of-memory error.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from conceptlens.aliases import Coalitions, FloatArray, ProgressFn
from conceptlens.array_game import INLINE_BATCHES, InlineExecutor, mask_range_bits
from conceptlens.outputs import OutputKind, output_values
from conceptlens.players import Players, masked_inputs

Predict = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_BATCH = 2048


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Cancelled(Exception):
    """Raised by a progress callback to stop an enumeration between batches."""


@dataclass
class MaskedModelGame:
    """Coalitions of patches ↦ model logits on the masked input.

    ``logits(coalitions)`` is the raw artefact; calling the game applies the output function
    (``output``, ``target``) to it, which makes it a :class:`~conceptlens.aliases.Game`.
    """

    predict: Predict
    x: torch.Tensor
    players: Players
    baseline: torch.Tensor
    device: torch.device = field(default_factory=default_device)
    batch_size: int = DEFAULT_BATCH
    target: int = 0
    output: OutputKind = "log-odds"

    def __post_init__(self) -> None:
        if self.x.shape != self.baseline.shape:
            raise ValueError("input and baseline must have the same shape")
        expected = (self.players.grid.height, self.players.grid.width)
        if tuple(self.x.shape[1:]) != expected:
            raise ValueError(f"input is {tuple(self.x.shape[1:])}, the grid expects {expected}")
        self.x = self.x.to(self.device, torch.float32)
        self.baseline = self.baseline.to(self.device, torch.float32)

    @property
    def n_players(self) -> int:
        return self.players.n

    def logits(self, coalitions: Coalitions | torch.Tensor) -> FloatArray:
        """Logits ``[b, classes]`` (float32) of the masked inputs for boolean coalitions."""
        coal = torch.as_tensor(coalitions, device=self.device)
        return _to_numpy(self._forward_batched(coal))

    def __call__(self, coalitions: Coalitions) -> FloatArray:
        return output_values(self.logits(coalitions), self.target, self.output)

    def forward_masks(self, coalitions: torch.Tensor) -> torch.Tensor:
        """One batch: coalitions on the device → logits on the device."""
        return self.predict(self.masked_batch(coalitions))

    def masked_batch(self, coalitions: torch.Tensor) -> torch.Tensor:
        """The model's inputs for a batch of coalitions: the image where players are
        present, the baseline where they are absent."""
        return masked_inputs(self.x, self.baseline, self.players.pixel_presence(coalitions))

    def _forward_batched(self, coal: torch.Tensor) -> torch.Tensor:
        outs = []
        start = 0
        with torch.inference_mode():
            while start < coal.shape[0]:
                stop = min(start + self.batch_size, coal.shape[0])
                try:
                    outs.append(self.forward_masks(coal[start:stop]).float())
                except torch.OutOfMemoryError:
                    self._back_off()
                    continue
                start = stop
        return torch.cat(outs)

    def _back_off(self) -> None:
        if self.batch_size == 1:
            raise MemoryError("the model does not fit in memory even one input at a time")
        self.batch_size //= 2
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def mask_range_coalitions(start: int, stop: int, n: int, device: torch.device) -> torch.Tensor:
    """Boolean coalitions ``[stop−start, n]`` of the bitmasks ``start … stop−1``."""
    masks = torch.arange(start, stop, device=device, dtype=torch.int64)
    shifts = torch.arange(n, device=device, dtype=torch.int64)
    return ((masks[:, None] >> shifts) & 1).bool()


def logit_table(
    game: MaskedModelGame,
    *,
    start: int = 0,
    stop: int | None = None,
    progress: ProgressFn | None = None,
) -> FloatArray:
    """The logit table rows ``start … stop−1`` (default: all ``2**n``), row index = bitmask.

    One forward pass per row, in batches of ``game.batch_size`` built on the device. The
    model runs each batch in a second thread while this one builds the next batch's masked
    inputs (model runtimes release the GIL), so building inputs costs almost no wall time
    where a second core is free. (Until 2026-12-02 the second thread built each batch's
    inputs itself, just before running it: nothing overlapped the model.)
    With at most ``INLINE_BATCHES`` batches there is nothing to overlap, and the batches
    run in the calling thread (the hand-off alone made n = 12 2.5× the bare passes); the
    batches and so the table are the same either way.
    ``progress(done, total)`` is called after every batch; it may raise :class:`Cancelled`.
    A range lets several workers share one table (chunk tasks).
    """
    n = game.n_players
    stop = (1 << n) if stop is None else stop
    if not 0 <= start <= stop <= (1 << n):
        raise ValueError(f"mask range {start}..{stop} is outside 0..{1 << n}")
    total = stop - start
    out: np.ndarray | None = None
    done = queued = 0
    pending: deque[tuple[int, int, Future[torch.Tensor]]] = deque()
    threaded = -(-total // max(game.batch_size, 1)) > INLINE_BATCHES
    depth = 2 if threaded else 1
    pool: ThreadPoolExecutor | InlineExecutor = (
        ThreadPoolExecutor(max_workers=1) if threaded else InlineExecutor()
    )
    failed = threading.Event()  # set by a batch out of memory: the ones after it are skipped
    building_failed = False  # building the next inputs ran out of memory: drain, then retry
    with pool, torch.inference_mode():
        while done < total:
            if queued < total and len(pending) < depth and not (building_failed and pending):
                size = min(game.batch_size, total - queued)
                coal = mask_range_coalitions(start + queued, start + queued + size, n, game.device)
                try:  # no local name keeps the inputs: the batch thread's frame alone holds them
                    future = pool.submit(_run_batch, game, game.masked_batch(coal), failed)
                except torch.OutOfMemoryError as error:  # building them, in this thread
                    _release(error)
                    if pending:  # the batches in flight may free enough: let them finish
                        building_failed = True
                    else:
                        game._back_off()
                    continue
                building_failed = False
                pending.append((queued, size, future))
                queued += size
                continue
            offset, size, future = pending.popleft()
            try:
                logits = future.result()
            except torch.OutOfMemoryError as error:
                # The error (kept by the future, and its traceback's frames) holds the failed
                # batch's inputs: release them first, or every retry fails beside them.
                _release(error)
                del future
                _drain(pending)
                game._back_off()
                failed.clear()  # nothing is pending now: the retry runs
                queued = offset
                continue
            if out is None:
                out = np.empty((total, logits.shape[1]), dtype=np.float32)
            out[offset : offset + size] = _to_numpy(logits)
            done += size
            if progress is not None:
                progress(done, total)
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


class _Skipped(Exception):
    """A batch submitted before an earlier one ran out of memory: not run."""


def _run_batch(
    game: MaskedModelGame, inputs: torch.Tensor, failed: threading.Event
) -> torch.Tensor:
    """One batch's logits from its masked inputs. Once a batch has run out of memory
    (``failed``), those already submitted after it are skipped until the caller has released
    it and backed off: run while its inputs are still held, they would only fail beside
    them too."""
    if failed.is_set():
        raise _Skipped
    try:
        with torch.inference_mode():
            return game.predict(inputs).float()
    except torch.OutOfMemoryError:
        failed.set()
        raise


def _release(error: BaseException) -> None:
    """Free the tensors that the frames of ``error``'s traceback hold (a failed batch)."""
    traceback.clear_frames(error.__traceback__)
    error.__traceback__ = None


def _drain(pending: deque[tuple[int, int, Future[torch.Tensor]]]) -> None:
    """Wait out batches already submitted (their results are dropped)."""
    while pending:
        _, _, future = pending.popleft()
        if not future.cancel() and (error := future.exception()) is not None:
            _release(error)


@dataclass
class CallableGame:
    """A plain function of coalitions as a game: ``v(coalitions bool [b, n]) -> [b]``."""

    fn: Callable[[Coalitions], FloatArray]
    n_players: int

    def __call__(self, coalitions: Coalitions) -> FloatArray:
        return np.asarray(self.fn(coalitions), dtype=np.float64)


def value_table(
    game: Callable[[Coalitions], FloatArray], n: int, *, batch: int = 1 << 16
) -> FloatArray:
    """``v`` over all ``2**n`` bitmasks of any game, in batches of ``batch`` coalitions."""
    out = np.empty(1 << n, dtype=np.float64)
    for start in range(0, 1 << n, batch):
        stop = min(start + batch, 1 << n)
        out[start:stop] = game(mask_range_bits(start, stop, n))
    return out


def _to_numpy(t: torch.Tensor) -> FloatArray:
    return t.detach().to("cpu").numpy()
