"""The embedded default: a Celery worker in a thread of the web process (memory:// broker).

Queued tasks live only in this process: a restart loses them, but job state is in the
database, so the UI shows such jobs as interrupted and offers retry. The worker threads
share the process's compute threads: ``CONCEPTLENS_COMPUTE_THREADS`` (default one, so two
jobs do not each start a thread per core), set before they start.

The web server's event loop shares the interpreter with the worker threads: a thread that
wants the GIL waits until the holder's switch interval has passed, Python's default 5 ms,
and a request needs it several times. :data:`SWITCH_INTERVAL_S` shortens that wait for
readers while a job runs (the worker's heavy steps are in numpy and torch, which release
the GIL anyway).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from backend.config import get_settings
from backend.queue import celery_app
from conceptlens.memory import reuse_heap
from conceptlens.threads import configure_process
from worker import overlap, tasks  # noqa: F401  (tasks: registers the tasks)
from worker.sweep import start_sweeper

log = logging.getLogger(__name__)

#: The interpreter's switch interval while the embedded worker runs (seconds).
SWITCH_INTERVAL_S = 0.0005


class EmbeddedWorker:
    def __init__(self, concurrency: int = 2) -> None:
        self.concurrency = concurrency
        self._worker: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        configure_process(get_settings().compute_threads)  # before any worker thread runs
        reuse_heap()  # conceptlens.memory: tables and transforms reuse the heap
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        celery_app.set_default()  # first: pool threads must bind to this configured app
        self._worker = celery_app.WorkController(
            pool="threads",
            concurrency=self.concurrency,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        self._thread = threading.Thread(
            target=self._worker.start, name="conceptlens-worker", daemon=True
        )
        self._thread.start()
        start_sweeper()
        log.info("embedded worker started (%d threads)", self.concurrency)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        overlap.drain(timeout=10)
