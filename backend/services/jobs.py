"""Cancel, retry and delete a single-row leased job (a component analysis, a training run).

Both kinds are one row with a lease (:class:`~backend.db.models.LeaseMixin`), a status,
progress and a cancel flag; a worker still on one notices a cancel at its next epoch or
batch, or its lease gone. ``what`` is the row's name in words, as messages say it
("component analysis", "training run").
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.db.base import utcnow
from backend.db.models import ComponentJob, TrainingRun
from backend.errors import ClientError

LeasedJob = ComponentJob | TrainingRun

#: Statuses of a job that has not ended: deleting one cancels it first.
ACTIVE = ("queued", "running")


def cancel(session: Session, job: LeasedJob, what: str) -> None:
    """End the job now, in whatever state, and release its lease (409 once it has ended)."""
    if job.status in ("done", "failed", "cancelled"):
        raise ClientError(f"The {what} has already ended ({job.status}).", 409)
    job.cancel_requested = True
    job.status = "cancelled"
    job.finished_at = utcnow()
    job.lease_owner = job.lease_expires_at = None
    session.commit()


def retry(session: Session, job: LeasedJob, what: str) -> None:
    """Queue the job again from the start, whatever ended it (409 once it is done)."""
    if job.status == "done":
        raise ClientError(f"The {what} is done; there is nothing to retry.", 409)
    job.status = "queued"
    job.cancel_requested = False
    job.error = None
    job.progress_done = 0
    job.finished_at = None
    job.attempts = 0
    session.commit()


def delete(session: Session, job: LeasedJob, what: str) -> None:
    """Cancel the job if it is still queued or running (committed, so that a worker still
    on it stops), then delete its row."""
    if job.status in ACTIVE:
        cancel(session, job, what)
    session.delete(job)
    session.commit()
