"""Start-up and shutdown of the service: migrate, embedded worker, built-in resources."""

from __future__ import annotations

import logging
from collections.abc import Callable

from backend.config import get_settings
from backend.db.migrate import upgrade
from backend.queue import TASK_ENSURE_BUILTINS, enqueue
from worker.sweep import recover_after_restart

log = logging.getLogger(__name__)


def lifecycle_hooks() -> tuple[list[Callable[[], None]], list[Callable[[], None]]]:
    """``(on_startup, on_shutdown)`` for :func:`backend.app.create_app`.

    Migrations run first. In embedded mode, work that a previous run had queued in memory
    or was running is made stale (the worker's first sweep sends it again), then the worker
    thread starts; the built-in demo model and samples are created by a task if missing.
    """
    settings = get_settings()
    start: list[Callable[[], None]] = [upgrade]
    stop: list[Callable[[], None]] = []
    if settings.run_embedded_worker:
        from worker.embedded import EmbeddedWorker

        worker = EmbeddedWorker(settings.worker_concurrency)
        start += [recover_after_restart, worker.start]
        stop.append(worker.stop)
    start.append(lambda: enqueue(TASK_ENSURE_BUILTINS))
    return start, stop
