"""Leases on job rows: who runs a job, proven by renewing, so no job stays ``running`` forever.

A task *claims* its row with one conditional UPDATE (the row is in a state the task may
start from, and nobody holds a live lease on it); only the claimant runs, so a task
delivered twice (a broker's redelivery, a sweep's re-queue, a retry) does its work once.
While it works a :class:`Heartbeat` thread renews the lease every third of
``lease_s``; the final write releases it. A worker killed mid-job stops renewing, and
:mod:`worker.sweep` re-queues (or, after ``max_attempts``, fails) the row once its lease
has expired.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.orm import Session

from backend.config import get_settings
from backend.db.base import utcnow
from backend.db.session import session_scope

log = logging.getLogger(__name__)


def new_owner() -> str:
    return uuid.uuid4().hex


def until(seconds: float | None = None) -> datetime:
    return utcnow() + timedelta(seconds=get_settings().lease_s if seconds is None else seconds)


def free(table: Any) -> ColumnElement[bool]:
    """Nobody holds a live lease on the row."""
    return or_(
        table.lease_owner.is_(None),
        table.lease_expires_at.is_(None),
        table.lease_expires_at < utcnow(),
    )


def claim(table: Any, row_id: str, owner: str, *conditions: Any, **values: Any) -> bool:
    """Take the lease of row ``row_id`` of ``table`` if ``conditions`` hold and it is free;
    ``values`` are set in the same UPDATE (e.g. the running status). True if claimed."""
    with session_scope() as s:
        return claim_in(s, table, row_id, owner, *conditions, **values)


def claim_in(
    s: Session, table: Any, row_id: str, owner: str, *conditions: Any, **values: Any
) -> bool:
    """:func:`claim` in session ``s``: the claim commits with whatever else ``s`` writes."""
    result = s.execute(
        update(table)
        .where(table.id == row_id, free(table), *conditions)
        .values(lease_owner=owner, lease_expires_at=until(), **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renew(table: Any, row_id: str, owner: str) -> bool:
    with session_scope() as s:
        result = s.execute(
            update(table)
            .where(table.id == row_id, table.lease_owner == owner)
            .values(lease_expires_at=until())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def release_values() -> dict[str, Any]:
    """Column values that end a lease (set with the row's final status)."""
    return {"lease_owner": None, "lease_expires_at": None}


class Heartbeat:
    """Renew a lease in a background thread while the block runs: ``with Heartbeat(...)``."""

    def __init__(self, table: Any, row_id: str, owner: str) -> None:
        self.table, self.row_id, self.owner = table, row_id, owner
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        every = get_settings().lease_s / 3
        while not self._stop.wait(every):
            try:
                if not renew(self.table, self.row_id, self.owner):
                    self.lost = True
                    log.warning("lost the lease of %s %s", self.table.__name__, self.row_id)
                    return
            except Exception as error:  # the database may be briefly away; try again
                log.warning("could not renew the lease of %s: %s", self.row_id, error)
