"""Celery tasks: thin wrappers that take ids and call :mod:`worker.jobs`.

Registered on :data:`backend.queue.celery_app` under the names the API sends. Work fans
out: tasks that each run an analysis's queued images in turn until none is left (one per
image, at most ``max_item_tasks``), and an image with more masks than the chunk size
becomes a group of chunk tasks over mask ranges; the last chunk to finish (an atomic
counter in the database) enqueues the assembly, a chord that needs no result backend.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from time import monotonic
from typing import Any

from celery import group
from celery.signals import worker_ready

from backend.config import get_settings
from backend.queue import (
    TASK_ENSURE_BUILTINS,
    TASK_RUN_COMPONENTS,
    TASK_START_ANALYSIS,
    TASK_TRAIN,
    TASK_VALIDATE_MODEL,
    celery_app,
    enqueue,
)
from worker import builtins, components_job, jobs, overlap, training_job
from worker.sweep import start_sweeper


@celery_app.task(name=TASK_VALIDATE_MODEL)
def validate_model(model_id: str) -> None:
    jobs.validate_model(model_id)


@celery_app.task(name=TASK_START_ANALYSIS)
def start_analysis(analysis_id: str) -> None:
    """As many :func:`run_items` tasks as images (at most ``max_item_tasks``): each runs
    queued images until none is left, so one worker runs them without a task hand-off per
    image and many workers share them; the tasks that find nothing left end at once."""
    item_ids = jobs.start_analysis(analysis_id)
    tasks = min(len(item_ids), get_settings().max_item_tasks)
    if tasks:
        group(run_items.s(analysis_id) for _ in range(tasks)).apply_async()


#: Seconds a :func:`run_items` task starts images for before it hands the rest of the
#: analysis to a fresh task (at most a quarter of the task time limit): a task ends within
#: this and one image, so it stays within its limit and a stopping worker waits little.
PULL_SECONDS = 60.0


@celery_app.task(name="conceptlens.run_items", bind=True, max_retries=5)
def run_items(self: Any, analysis_id: str) -> None:
    """Run the analysis's queued images one after another until none is left. The next
    image is found and prepared (rows, image, noise; claimed too while there are enough
    left for every task) in a thread while this one's passes run, so the model sandbox
    goes from one image's passes to the next's at once; an image's finish starts once the
    next image's request is in the sandbox (:mod:`worker.overlap`). A failure here (the
    database, say) is retried, with the images not yet run still queued."""
    deadline = monotonic() + min(PULL_SECONDS, get_settings().task_time_limit_s / 4)
    upcoming: Future[jobs.Claimed | str | None] | None = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="look-ahead") as ahead:
            claimed = jobs.claim_next(analysis_id)
            while claimed is not None:
                upcoming = ahead.submit(jobs.look_ahead, analysis_id)
                _go_on(claimed.item_id, jobs.run_claimed(claimed, start_finish_when_sent=True))
                following, upcoming = upcoming.result(), None
                if following is None:
                    return
                if monotonic() > deadline:  # a fresh task for the rest
                    jobs.unclaim(following)
                    run_items.delay(analysis_id)
                    return
                if isinstance(following, jobs.Claimed):
                    claimed = following
                else:  # prepared, not claimed: claim it now, or whichever is first
                    claimed = jobs.claim_item(following) or jobs.claim_next(analysis_id)
    except Exception as error:
        if upcoming is not None:  # the image claimed ahead goes back to the queue
            with contextlib.suppress(Exception):
                jobs.unclaim(upcoming.result())
        raise self.retry(exc=error, countdown=min(60, 2**self.request.retries)) from error
    finally:
        overlap.release()  # the last image's finish, if no request of this task started it


@celery_app.task(name="conceptlens.run_item")
def run_item(item_id: str) -> None:
    """One image (the sweep sends this for an image whose worker went away)."""
    _go_on(item_id, jobs.run_item(item_id))


def _go_on(item_id: str, next_step: jobs.Next) -> None:
    """Send what an image left to do: its chunk tasks, or its assembly."""
    step, ids = next_step
    if step == "chunks":
        group(run_chunk.s(chunk_id) for chunk_id in ids).apply_async()
    elif step == "assemble":
        assemble_item.delay(item_id)


@celery_app.task(name="conceptlens.run_chunk")
def run_chunk(chunk_id: str) -> None:
    item_id = jobs.run_chunk(chunk_id)
    if item_id is not None:
        assemble_item.delay(item_id)


@celery_app.task(name="conceptlens.assemble_item")
def assemble_item(item_id: str) -> None:
    jobs.assemble_item(item_id)


@celery_app.task(name=TASK_RUN_COMPONENTS)
def run_components(job_id: str) -> None:
    components_job.run_component_job(job_id)


@celery_app.task(name=TASK_TRAIN)
def train(run_id: str) -> None:
    training_job.run_training(run_id)


@celery_app.task(name=TASK_ENSURE_BUILTINS)
def ensure_builtins() -> None:
    builtins.ensure_builtins()


@worker_ready.connect
def on_worker_ready(**_: Any) -> None:
    """A ``celery worker`` sweeps expired leases at start and periodically, and asks for the
    built-ins (idempotent), in case a worker died while making them. (The embedded worker
    gets no such signal: :class:`worker.embedded.EmbeddedWorker` starts its sweeper.)"""
    start_sweeper()
    enqueue(TASK_ENSURE_BUILTINS)
