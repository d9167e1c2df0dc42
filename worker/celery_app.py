"""Entry point for worker processes: ``celery -A worker.celery_app worker``."""

from __future__ import annotations

from backend.queue import celery_app
from worker import tasks  # noqa: F401  (registers the tasks)

app = celery_app
