"""The engine's thread policy: how many threads torch, BLAS and OpenMP kernels may use.

torch, OpenBLAS/MKL and OpenMP each start a pool of one thread per core. On a machine
whose cores are shared (two jobs, two worker processes, a model sandbox beside its worker)
those pools oversubscribe the cores and small kernels collapse: the Harsanyi transform at
n = 20 took 203–222 ms on 2 threads against 14.3 ms on 1 (issue 14), BLAS post-processing
1–2 s against 0.05 s. So the policy is **one thread per process** (:data:`DEFAULT_THREADS`)
and parallelism by processes — Celery's prefork pool, one worker process per core; see
``bench/README.md``, section "Threads per process", for the measurements behind it.

* :func:`configure_process` — once, when a worker or sandbox process starts: the thread
  variables of its environment (inherited by what it starts), torch's intra-op threads
  (onnxruntime sessions follow them, :mod:`conceptlens.models.loaders`) and the BLAS/OpenMP
  pools already loaded (through ``threadpoolctl`` when it is installed).
* :func:`limit_threads` — a block that runs with another number of threads and puts the
  previous numbers back afterwards.

torch's thread count is a process-wide setting that each thread reads when it first runs
a parallel kernel (OpenMP keeps a count per thread): set it before starting threads (as
the workers do); :func:`limit_threads` changes the calling thread and threads that have
not computed yet, and is not meant for threads running side by side.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

__all__ = [
    "DEFAULT_THREADS",
    "THREAD_ENV",
    "blas_threads",
    "configure_process",
    "limit_threads",
    "thread_env",
]

DEFAULT_THREADS = 1
"""Threads per process unless configured (``CONCEPTLENS_COMPUTE_THREADS``). Measured on the
2-core machine (``bench/README.md``, "Threads per process"): with its cores shared, a
second thread made the Harsanyi transform at n = 20 ×26–29 slower and ONNX forward passes
×2 slower; with the other core idle it saved 21–28 % of torch forward passes, and two
single-threaded processes did the same work 1.18× faster than one with two threads."""

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables the native thread pools read when they start."""


def thread_env(threads: int) -> dict[str, str]:
    """The environment variables that start every native pool with ``threads`` threads.

    Example:
        >>> thread_env(1)["OMP_NUM_THREADS"]
        '1'
    """
    return dict.fromkeys(THREAD_ENV, str(_checked(threads)))


def configure_process(threads: int = DEFAULT_THREADS) -> None:
    """Give this process ``threads`` compute threads, for good (a worker or sandbox at start).

    Sets the :data:`THREAD_ENV` variables (for pools not started yet and for child
    processes), torch's intra-op threads, and the BLAS/OpenMP pools already loaded.
    """
    import torch

    threads = _checked(threads)
    os.environ.update(thread_env(threads))
    torch.set_num_threads(threads)
    _limit_native(threads)  # not restored: for the life of the process


@contextlib.contextmanager
def limit_threads(threads: int | None = DEFAULT_THREADS) -> Iterator[None]:
    """Run the block with ``threads`` torch and BLAS/OpenMP threads; restore them afterwards.

    ``None`` changes nothing (the caller's policy stands).

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with limit_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    if threads is None:
        yield
        return
    import torch

    threads = _checked(threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        limiter = _limit_native(threads)
        try:
            yield
        finally:
            if limiter is not None:
                limiter.restore_original_limits()
    finally:
        torch.set_num_threads(previous)


def blas_threads() -> dict[str, int]:
    """Threads of each loaded native pool by API (``blas``, ``openmp``); empty without
    ``threadpoolctl``. For tests and benchmarks."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return {}
    out: dict[str, int] = {}
    for pool in threadpool_info():
        api = str(pool.get("user_api"))
        out[api] = max(out.get(api, 0), int(pool.get("num_threads") or 0))
    return out


def _limit_native(threads: int) -> Any:
    """Limit the loaded BLAS and OpenMP pools; the limiter (to restore them), or ``None``."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return None
    return threadpool_limits(limits=threads)


def _checked(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return threads
