"""Time left from recent throughput (issue 13 §3: "33 min" for a 61 s retry, "< 1 s" 15 s
before the end while the transforms ran)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from backend.db.base import utcnow
from backend.db.models import Analysis, AnalysisItem, ComponentJob
from backend.services import analyses, eta


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock()
    monkeypatch.setattr(eta.time, "monotonic", c)
    yield c
    eta._samples.clear()


def _analysis(ident: str, *, first_start_s: float, run_start_s: float) -> Analysis:
    now = utcnow()
    item = AnalysisItem(status="running", started_at=now - timedelta(seconds=run_start_s))
    return Analysis(
        id=ident, status="running", started_at=now - timedelta(seconds=first_start_s), items=[item]
    )


def test_a_retry_is_timed_from_its_own_start_not_the_first_run(clock: Clock) -> None:
    """Retried after an hour: 10 s into the new run, half of it done — about 10 s left."""
    job = _analysis("retry", first_start_s=3600, run_start_s=10)
    left = analyses.eta_seconds(job, 500, 1000)
    assert left is not None and 5 < left < 20, left


def test_the_rate_follows_recent_throughput(clock: Clock) -> None:
    """Slow at first (100 passes in 100 s), 50 passes/s now: the last seconds decide."""
    job = _analysis("speedup", first_start_s=100, run_start_s=100)
    first = analyses.eta_seconds(job, 100, 1100)
    assert first is not None and first > 500  # only the rate since the start is known yet
    clock.t += 10
    left = analyses.eta_seconds(job, 600, 1100)
    assert left == pytest.approx(10.0), left


def test_old_samples_leave_the_window(clock: Clock) -> None:
    job = _analysis("window", first_start_s=0, run_start_s=0)
    analyses.eta_seconds(job, 10, 10_000)
    for _ in range(12):  # 1 pass/s for a minute...
        clock.t += 5
        analyses.eta_seconds(job, job_done := 10 + int(clock.t - 1000), 10_000)
    clock.t += 30
    left = analyses.eta_seconds(job, job_done + 3000, 10_000)  # ...then 100 passes/s
    assert left is not None and left < 100, left  # not the minute-long average (≈ 1000 s)


def test_all_passes_done_while_running_is_finishing_not_under_a_second(clock: Clock) -> None:
    job = _analysis("finishing", first_start_s=60, run_start_s=60)
    assert analyses.eta_seconds(job, 1000, 1000) is None


def test_no_estimate_before_progress_or_after_the_end(clock: Clock) -> None:
    job = _analysis("idle", first_start_s=5, run_start_s=5)
    assert analyses.eta_seconds(job, 0, 1000) is None
    job.status = "done"
    assert analyses.eta_seconds(job, 1000, 1000) is None
    assert "idle" not in eta._samples  # an ended job is forgotten


def test_progress_that_goes_back_starts_the_samples_over(clock: Clock) -> None:
    job = _analysis("restart", first_start_s=20, run_start_s=20)
    analyses.eta_seconds(job, 800, 1000)
    clock.t += 5
    left = analyses.eta_seconds(job, 100, 1000)  # started over: the old sample is dropped
    assert left is not None and left > 100, left  # since the run's start: 20 s for 100


def test_a_component_job_uses_its_own_start(clock: Clock) -> None:
    job = ComponentJob(id="comp", status="running", started_at=utcnow() - timedelta(seconds=30))
    left = analyses.eta_seconds(job, 100, 400)
    assert left is not None and left == pytest.approx(90, rel=0.05)
