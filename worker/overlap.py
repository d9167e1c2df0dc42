"""An image's post-processing overlapping the next image's forward passes.

A worker process spends most of an item in the model sandbox (another process), and then,
after the table comes back, some tens of milliseconds of its own on the item: the table
stored, the Harsanyi transform, the summary, the results written and the analysis rolled
up. Run in line, that time is added to every item while the sandbox (and its core) waits;
at n = 12 it was a third of a stability analysis's forward passes (bench/README.md). So
:func:`hand_over` runs it in a thread of the worker and returns at once: the next task's
passes start while this item is finished.

At most one item per worker thread is being finished: handing over the next one first
waits for it (tables never pile up in memory). A task that runs images one after another
(:func:`worker.tasks.run_items`) hands over with ``start_when_sent``: the finish starts
only once the task has sent the model sandbox its next image (:func:`release`), because a
finish started at once held the GIL while the task was getting that request out, and the
sandbox waited 5–8 ms per image for it (a twentieth of an n = 12 image's passes). The
item keeps its lease (its heartbeat
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
_NOT_STARTED: set[threading.Thread] = set()
_PENDING_LOCK = threading.Lock()


def hand_over(fn: Callable[..., None], *args: Any, start_when_sent: bool = False) -> None:
    """Run ``fn(*args)`` in a thread of its own once this thread's previous one has ended
    (in line when overlapping is off): at once, or with ``start_when_sent`` at this thread's
    next :func:`release` — which the caller must then make sure comes (in a ``finally``).
    ``fn`` reports its own errors; one that escapes is logged."""
    wait_mine()
    if not get_settings().overlap_finish:
        fn(*args)
        return
    thread = threading.Thread(target=_run, args=(fn, args), name="finish-item")
    with _PENDING_LOCK:
        _PENDING.add(thread)
        if start_when_sent:
            _NOT_STARTED.add(thread)
    _LOCAL.thread = thread
    if not start_when_sent:
        thread.start()


def release() -> None:
    """Start the finish this thread handed over with ``start_when_sent``, if it has not
    started: when the thread's next request is in the model sandbox, and when its task
    ends."""
    thread: threading.Thread | None = getattr(_LOCAL, "thread", None)
    if thread is not None:
        _start(thread)


def _start(thread: threading.Thread) -> None:
    with _PENDING_LOCK:
        if thread not in _NOT_STARTED:
            return
        _NOT_STARTED.discard(thread)
    thread.start()


def finishing() -> bool:
    """Whether this thread's last finish is still running, so a new one would wait for it."""
    thread: threading.Thread | None = getattr(_LOCAL, "thread", None)
    return thread is not None and thread.is_alive()


def wait_mine() -> None:
    """Wait for the finish this thread handed over last, if it is still running (starting
    it first, if it waits for :func:`release`)."""
    previous: threading.Thread | None = getattr(_LOCAL, "thread", None)
    if previous is not None:
        _start(previous)
        previous.join()
        _LOCAL.thread = None


def drain(timeout: float | None = None) -> None:
    """Wait for every pending finish of this process (at shutdown), starting any that waits
    for its thread's :func:`release`."""
    with _PENDING_LOCK:
        pending = list(_PENDING)
    for thread in pending:
        _start(thread)
        thread.join(timeout)


def _run(fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        fn(*args)
    except Exception:  # fn records failures itself; this is a bug, not the user's
        log.exception("finishing an item failed")
    finally:
        with _PENDING_LOCK:
            _PENDING.discard(threading.current_thread())
