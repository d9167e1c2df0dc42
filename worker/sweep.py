"""The sweep: jobs whose lease expired are sent again, or failed with a reason.

Runs once when a worker starts and then every ``sweep_interval_s`` in a timer thread of
each worker (:class:`Sweeper`); several sweepers at once are fine, since every row is
taken over by one conditional UPDATE. A row is *stale* when its ``lease_expires_at`` has
passed:

* held by a worker (``running``/``validating`` with an owner) — the worker died or hangs:
  re-queued and counted in ``attempts``; after ``max_attempts`` the job fails with a
  message saying so;
* not held (``queued``, or an item whose chunks are all done) — its task should have
  started by then and did not (lost with an in-memory broker, say): sent again, uncounted.

After a restart of the embedded server every unfinished job is stale at once
(:func:`recover_after_restart`): its in-memory queue is gone and no worker holds anything.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, update

from backend.config import get_settings
from backend.db.base import utcnow
from backend.db.models import AnalysisItem, Chunk, ComponentJob, ModelRecord, TrainingRun
from backend.db.session import session_scope
from backend.queue import TASK_RUN_COMPONENTS, TASK_TRAIN, TASK_VALIDATE_MODEL, enqueue
from worker import leases

log = logging.getLogger(__name__)

TASK_RUN_ITEM = "conceptlens.run_item"
TASK_RUN_CHUNK = "conceptlens.run_chunk"
TASK_ASSEMBLE_ITEM = "conceptlens.assemble_item"


@dataclass(frozen=True)
class Kind:
    """One kind of job row: its table, when a row of it can be stale, its task, and the
    status a row goes back to when re-queued."""

    table: Any
    unfinished: Any
    """Rows in this state whose lease has expired are stale."""
    task: str
    requeued_status: str


KINDS = {
    "model": Kind(
        ModelRecord, ModelRecord.status.in_(("pending", "validating")), TASK_VALIDATE_MODEL,
        "pending",
    ),
    "chunk": Kind(Chunk, Chunk.status.in_(("queued", "running")), TASK_RUN_CHUNK, "queued"),
    "components": Kind(
        ComponentJob, ComponentJob.status.in_(("queued", "running")), TASK_RUN_COMPONENTS,
        "queued",
    ),
    "training": Kind(
        TrainingRun, TrainingRun.status.in_(("queued", "running")), TASK_TRAIN, "queued"
    ),
    # an image run whole (no chunks); a chunked image's own chunks are swept as chunks
    "item": Kind(
        AnalysisItem,
        and_(AnalysisItem.status.in_(("queued", "running")), AnalysisItem.chunks_total == 0),
        TASK_RUN_ITEM, "queued",
    ),
    # an image whose chunks are all done: its assembly is sent again
    "assembly": Kind(
        AnalysisItem,
        and_(
            AnalysisItem.status == "running",
            AnalysisItem.chunks_total > 0,
            AnalysisItem.chunks_done >= AnalysisItem.chunks_total,
        ),
        TASK_ASSEMBLE_ITEM, "running",
    ),
}  # fmt: skip


def gave_up(attempts: int) -> str:
    return (
        f"the worker running this stopped before it finished, {attempts} times (it crashed, "
        "was killed, or lost its connection); press Retry to try again"
    )


def sweep() -> dict[str, int]:
    """Re-queue or fail every stale row; how many of each kind were sent again."""
    sent = {name: _sweep_kind(kind) for name, kind in KINDS.items()}
    if any(sent.values()):
        log.warning("sweep re-queued jobs whose worker went away: %s", sent)
    return sent


def _stale_rows(table: Any, *conditions: Any) -> list[tuple[str, str | None, int]]:
    with session_scope() as s:
        rows = s.execute(
            select(table.id, table.lease_owner, table.attempts).where(
                table.lease_expires_at < utcnow(), *conditions
            )
        ).all()
    return [(r[0], r[1], int(r[2])) for r in rows]


def _take_over(table: Any, row_id: str, owner: str | None, attempts: int, **values: Any) -> bool:
    """Reset a stale row for a new task (if nobody else did meanwhile)."""
    grace = 10 * get_settings().lease_s  # the new task should have started by then
    with session_scope() as s:
        result = s.execute(
            update(table)
            .where(table.id == row_id, table.lease_expires_at < utcnow())
            .where(table.lease_owner.is_(None) if owner is None else table.lease_owner == owner)
            .values(
                lease_owner=None, lease_expires_at=leases.until(grace), attempts=attempts, **values
            )
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _sweep_kind(kind: Kind) -> int:
    sent = 0
    limit = get_settings().max_attempts
    for row_id, owner, attempts in _stale_rows(kind.table, kind.unfinished):
        held = owner is not None
        tries = attempts + held
        if held and tries >= limit:
            _give_up(kind.table, row_id, owner, tries)
            continue
        if _take_over(kind.table, row_id, owner, tries, status=kind.requeued_status):
            enqueue(kind.task, row_id)
            sent += 1
    return sent


def _give_up(table: Any, row_id: str, owner: str | None, attempts: int) -> None:
    from worker.jobs import roll_up

    message = gave_up(attempts)
    target, target_id = table, row_id
    if table is Chunk:  # a chunk fails its whole item; Retry queues the chunk again
        with session_scope() as s:
            chunk = s.get_one(Chunk, row_id)
            target, target_id = AnalysisItem, chunk.item_id
            chunk.status, chunk.attempts = "queued", attempts
            chunk.lease_owner = chunk.lease_expires_at = None
    with session_scope() as s:
        s.execute(
            update(target)
            .where(target.id == target_id)
            .values(status="failed", error=message, attempts=attempts, **leases.release_values())
        )
        analysis_id = (
            s.get_one(AnalysisItem, target_id).analysis_id if target is AnalysisItem else None
        )
    log.warning("%s %s failed: %s", target.__name__, target_id, message)
    if analysis_id is not None:
        roll_up(analysis_id)


def recover_after_restart() -> None:
    """Embedded default, at start-up: nothing queued in memory survived and no worker holds
    a lease, so every unfinished job is made stale now and the first sweep sends it again
    (a job that was running counts one attempt)."""
    past = utcnow()
    with session_scope() as s:
        for kind in KINDS.values():
            s.execute(
                update(kind.table)
                .where(kind.unfinished)
                .values(lease_expires_at=past)
                .execution_options(synchronize_session=False)
            )


class Sweeper:
    """A daemon thread that sweeps at start and every ``sweep_interval_s``."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        every = get_settings().sweep_interval_s
        while True:
            try:
                sweep()
            except Exception as error:  # the database may be briefly away
                log.warning("lease sweep failed: %s", error)
            if self._stop.wait(every):
                return


_STARTED: list[Sweeper] = []
_START_LOCK = threading.Lock()


def start_sweeper() -> None:
    """Start this process's :class:`Sweeper` (once, however many times it is called)."""
    with _START_LOCK:
        if not _STARTED:
            _STARTED.append(Sweeper())
            _STARTED[0].start()
