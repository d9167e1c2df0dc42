"""The Celery application object, configured from settings — shared by API and workers.

The API only *enqueues tasks by name* through it (``send_task``); the task code lives in
``worker.tasks`` and registers itself on this same object in worker processes (and in the
embedded worker thread). The backend never imports ``worker``.
"""

from __future__ import annotations

from celery import Celery

from backend.config import Settings, get_settings

TASK_VALIDATE_MODEL = "conceptlens.validate_model"
TASK_START_ANALYSIS = "conceptlens.start_analysis"
TASK_ENSURE_BUILTINS = "conceptlens.ensure_builtins"
TASK_RUN_COMPONENTS = "conceptlens.run_components"
TASK_TRAIN = "conceptlens.train"


def make_celery(settings: Settings) -> Celery:
    app = Celery("conceptlens", broker=settings.broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_time_limit=settings.task_time_limit_s + 60,
        task_soft_time_limit=settings.task_time_limit_s,
        task_default_queue=settings.queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    if settings.broker_url.startswith("memory://"):
        app.conf.broker_transport_options = {"polling_interval": 0.05}
    else:  # Redis: an unacknowledged task comes back after this (a claim makes it harmless)
        app.conf.broker_transport_options = {"visibility_timeout": settings.visibility_timeout_s}
    return app


celery_app = make_celery(get_settings())


def enqueue(name: str, *args: object) -> None:
    """Send a task by name; the database row it refers to must already be committed."""
    celery_app.send_task(name, args=list(args))
