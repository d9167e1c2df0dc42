"""Time left for a running job, from its recent throughput.

Each progress read (a page polls every half second) records ``(time, done)`` for the job in
this process. The rate is the progress over the last :data:`WINDOW_S` seconds of those
samples; until a second of samples with some progress exists, it is the progress since the
current run started (not since the first run: a retry keeps what was done, and an hour-old
start made a 61 s retry read "33 min"). When every pass is done but the job still runs (the
transforms), there is no time left to estimate: ``None``, and the page says "finishing".
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime

from backend.db.base import utcnow

#: Seconds of recent samples the rate is measured over.
WINDOW_S = 30.0
#: Samples shorter than this (or without progress) fall back to the rate since the start.
MIN_SPAN_S = 1.0
#: Jobs not read for this long are forgotten.
FORGET_S = 600.0

_lock = threading.Lock()
_samples: dict[str, deque[tuple[float, int]]] = {}


def forget(job_id: str) -> None:
    with _lock:
        _samples.pop(job_id, None)


def estimate(
    job_id: str,
    done: int,
    total: int,
    run_started: datetime | None,
    *,
    now: float | None = None,
    wall_now: datetime | None = None,
) -> float | None:
    """Seconds left for ``total − done`` units of a running job, or ``None`` when nothing
    honest can be said (no progress yet, or every unit done: the job is finishing)."""
    clock = time.monotonic() if now is None else now
    with _lock:
        for key in [k for k, q in _samples.items() if q and clock - q[-1][0] > FORGET_S]:
            del _samples[key]
        samples = _samples.setdefault(job_id, deque(maxlen=256))
        if samples and done < samples[-1][1]:
            samples.clear()  # progress went back (a retry started over): old samples lie
        samples.append((clock, done))
        while len(samples) > 2 and clock - samples[1][0] >= WINDOW_S:
            samples.popleft()  # keep one sample at or beyond the window's start
        first_t, first_done = samples[0]
    if total <= 0 or done >= total:
        return None
    span = clock - first_t
    if span >= MIN_SPAN_S and done > first_done:
        return (total - done) * span / (done - first_done)
    if run_started is None or done <= 0:
        return None
    if run_started.tzinfo is None:
        run_started = run_started.replace(tzinfo=utcnow().tzinfo)
    elapsed = ((wall_now or utcnow()) - run_started).total_seconds()
    return max(0.0, elapsed * (total - done) / done)
