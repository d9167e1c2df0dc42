"""An image's post-processing overlapping the next image's forward passes.

A worker process spends most of an item in the model sandbox (another process), and then,
after the table comes back, some tens of milliseconds of its own on the item: the table
stored, the Harsanyi transform, the summary, the results written and the analysis rolled
up. Run in line, that time is added to every item while the sandbox (and its core) waits;
at n = 12 it was a third of a stability analysis's forward passes (bench/README.md). So
:func:`hand_over` runs it in a thread of the worker and returns at once: the next task's
passes start while this item is finished.

At most one item per worker thread is being finished: handing over the next one first
waits for it (tables never pile up in memory). The item keeps its lease (its heartbeat
runs on) until it is finished, so a worker killed meanwhile leaves it to the sweeper,
which runs it again (from the cached table, when it was stored). :func:`drain` waits for
every pending finish: the worker calls it when a process shuts down.
``CONCEPTLENS_OVERLAP_FINISH=false`` runs everything in line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from backend.config import get_settings

log = logging.getLogger(__name__)

_LOCAL = threading.local()
_PENDING: set[threading.Thread] = set()
_PENDING_LOCK = threading.Lock()


def hand_over(fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` in a thread of its own once this thread's previous one has ended
    (in line when overlapping is off). ``fn`` reports its own errors; one that escapes is
    logged."""
    wait_mine()
    if not get_settings().overlap_finish:
        fn(*args)
        return
    thread = threading.Thread(target=_run, args=(fn, args), name="finish-item")
    with _PENDING_LOCK:
        _PENDING.add(thread)
    thread.start()
    _LOCAL.thread = thread


def wait_mine() -> None:
    """Wait for the finish this thread handed over last, if it is still running."""
    previous: threading.Thread | None = getattr(_LOCAL, "thread", None)
    if previous is not None:
        previous.join()
        _LOCAL.thread = None


def drain(timeout: float | None = None) -> None:
    """Wait for every pending finish of this process (at shutdown)."""
    with _PENDING_LOCK:
        pending = list(_PENDING)
    for thread in pending:
        thread.join(timeout)


def _run(fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        fn(*args)
    except Exception:  # fn records failures itself; this is a bug, not the user's
        log.exception("finishing an item failed")
    finally:
        with _PENDING_LOCK:
            _PENDING.discard(threading.current_thread())
