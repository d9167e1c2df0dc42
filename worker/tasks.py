"""Celery tasks: thin wrappers that take ids and call :mod:`worker.jobs`.

Registered on :data:`backend.queue.celery_app` under the names the API sends. Work fans
out: one task per image of an analysis, and an image with more masks than the chunk size
becomes a group of chunk tasks over mask ranges; the last chunk to finish (an atomic
counter in the database) enqueues the assembly, a chord that needs no result backend.
"""

from __future__ import annotations

from typing import Any

from celery import group
from celery.signals import worker_ready

from backend.queue import (
    TASK_ENSURE_BUILTINS,
    TASK_RUN_COMPONENTS,
    TASK_START_ANALYSIS,
    TASK_TRAIN,
    TASK_VALIDATE_MODEL,
    celery_app,
    enqueue,
)
from worker import builtins, components_job, jobs, training_job
from worker.sweep import start_sweeper


@celery_app.task(name=TASK_VALIDATE_MODEL)
def validate_model(model_id: str) -> None:
    jobs.validate_model(model_id)


@celery_app.task(name=TASK_START_ANALYSIS)
def start_analysis(analysis_id: str) -> None:
    item_ids = jobs.start_analysis(analysis_id)
    if item_ids:
        group(run_item.s(item_id) for item_id in item_ids).apply_async()


@celery_app.task(name="conceptlens.run_item")
def run_item(item_id: str) -> None:
    step, ids = jobs.run_item(item_id)
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
