"""The logit table of a model that runs on NumPy arrays (ONNX), without torch.

:func:`array_logit_table` is :func:`conceptlens.game.logit_table` for a NumPy ``run``
(:attr:`conceptlens.models.formats.OnnxModel.run`): the same coalitions in the same
batches, the same masked inputs bit for bit (:func:`~conceptlens.players.masked_arrays`),
so the same table as the torch path gives for the same ONNX model — while the process never
imports torch (``conceptlens analyze model.onnx``: 1.6–2 s less per process).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from conceptlens.aliases import FloatArray, ProgressFn
from conceptlens.players import Players, masked_arrays

Array = npt.NDArray[np.float32]

INLINE_BATCHES = 2
"""Ranges of at most this many batches run without a second thread (nothing to overlap)."""

T = TypeVar("T")


class InlineExecutor:
    """The part of ``ThreadPoolExecutor`` the logit tables use, running each call at
    submission in the calling thread: its result or exception is kept by the future and
    comes out of ``result()``, as from a thread."""

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as error:
            future.set_exception(error)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


def mask_range_bits(start: int, stop: int, n: int) -> npt.NDArray[np.bool_]:
    """Boolean coalitions ``[stop−start, n]`` of the bitmasks ``start … stop−1``.

    Example:
        >>> mask_range_bits(5, 7, 3).astype(int).tolist()
        [[1, 0, 1], [0, 1, 1]]
    """
    masks = np.arange(start, stop, dtype=np.int64)
    return ((masks[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(bool)


def array_logit_table(
    run: Callable[[Array], Array],
    x: Array,
    baseline: Array,
    players: Players,
    *,
    batch_size: int = 2048,
    start: int = 0,
    stop: int | None = None,
    progress: ProgressFn | None = None,
) -> FloatArray:
    """Logit table rows ``start … stop−1`` (default: all ``2**n``) of ``run`` on the masked
    inputs of ``x`` (``[C, H, W]``, absent players take ``baseline``), row index = bitmask.

    Batches of ``batch_size``; with more than :data:`INLINE_BATCHES` of them the model runs
    each batch in a second thread while this one builds the next (onnxruntime releases the
    GIL), as :func:`conceptlens.game.logit_table` does. ``progress(done, total)`` after
    every batch; it may raise to stop between batches. Unlike the torch path it does not
    halve the batch when memory runs out (onnxruntime's errors are not torch's
    out-of-memory error, which the torch path catches, so neither ever did it for ONNX).
    """
    n = players.n
    stop = (1 << n) if stop is None else stop
    if not 0 <= start <= stop <= (1 << n):
        raise ValueError(f"mask range {start}..{stop} is outside 0..{1 << n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if x.shape != baseline.shape:
        raise ValueError(f"input {x.shape} and baseline {baseline.shape} differ in shape")
    expected = (players.grid.height, players.grid.width)
    if tuple(x.shape[1:]) != expected:
        raise ValueError(f"input is {tuple(x.shape[1:])}, the grid expects {expected}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    baseline = np.ascontiguousarray(baseline, dtype=np.float32)
    total = stop - start
    out: FloatArray | None = None
    threaded = -(-total // batch_size) > INLINE_BATCHES
    pending: deque[tuple[int, int, Future[Array]]] = deque()
    pool = ThreadPoolExecutor(max_workers=1) if threaded else InlineExecutor()
    try:
        for offset in range(0, total, batch_size):
            size = min(batch_size, total - offset)
            coalitions = mask_range_bits(start + offset, start + offset + size, n)
            inputs = masked_arrays(x, baseline, players.present_pixels(coalitions))
            pending.append((offset, size, pool.submit(run, inputs)))
            del inputs  # the batch thread alone holds them
            while pending and (len(pending) > 1 or offset + size == total or not threaded):
                done_at, done_size, finished = pending.popleft()
                logits = finished.result()
                if out is None:
                    out = np.empty((total, logits.shape[1]), dtype=np.float32)
                out[done_at : done_at + done_size] = logits
                if progress is not None:
                    progress(done_at + done_size, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out if out is not None else np.empty((0, 0), dtype=np.float32)
