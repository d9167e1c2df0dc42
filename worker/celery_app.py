"""Entry point for worker processes: ``celery -A worker.celery_app worker``.

Each worker process computes with ``CONCEPTLENS_COMPUTE_THREADS`` threads (default one,
:mod:`conceptlens.threads`): set in the main process when the worker starts (the solo and
thread pools compute there; prefork children inherit its environment) and again in every
prefork child when it starts. A machine's cores are used by processes: ``--concurrency``
= cores with the prefork pool (``docker-compose.yml``; bench/README.md, "Threads per process").
"""

from __future__ import annotations

from typing import Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from backend.config import get_settings
from backend.queue import celery_app
from conceptlens.memory import reuse_heap
from conceptlens.threads import configure_process
from worker import overlap, tasks  # noqa: F401  (tasks: registers the tasks)

app = celery_app


@worker_init.connect
@worker_process_init.connect
def apply_compute_threads(**_: Any) -> None:
    """The thread and allocator policy of a worker process (main process and each prefork
    child; :mod:`conceptlens.threads`, :mod:`conceptlens.memory`)."""
    configure_process(get_settings().compute_threads)
    reuse_heap()


@worker_shutdown.connect
@worker_process_shutdown.connect
def finish_pending_items(**_: Any) -> None:
    """Items handed over to be finished in the background end before the process does
    (:mod:`worker.overlap`); one that does not within a lease is left to the sweeper."""
    overlap.drain(timeout=get_settings().lease_s)
