"""worker.overlap: an item's finish runs beside the next item, one at a time per thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from backend.config import get_settings
from worker import overlap


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("CONCEPTLENS_OVERLAP_FINISH", raising=False)
    get_settings.cache_clear()
    yield
    overlap.drain(timeout=10)
    get_settings.cache_clear()


def test_hand_over_returns_while_the_finish_runs() -> None:
    release, done = threading.Event(), threading.Event()

    def finish() -> None:
        release.wait(10)
        done.set()

    overlap.hand_over(finish)
    assert not done.is_set()  # returned before the finish could end
    release.set()
    overlap.drain(timeout=10)
    assert done.is_set()


def test_the_next_hand_over_waits_for_the_previous_finish() -> None:
    """At most one finish per worker thread: the second starts only after the first ended."""
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        release.wait(10)
        order.append("first")

    def second() -> None:
        order.append("second")

    def worker_thread() -> None:
        overlap.hand_over(first)
        overlap.hand_over(second)  # blocks until first has ended

    t = threading.Thread(target=worker_thread)
    t.start()
    t.join(0.3)
    assert t.is_alive() and order == []  # still waiting on the first
    release.set()
    t.join(10)
    overlap.drain(timeout=10)
    assert order == ["first", "second"]


def test_off_runs_in_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCEPTLENS_OVERLAP_FINISH", "false")
    get_settings.cache_clear()
    ran_in: list[threading.Thread] = []
    overlap.hand_over(lambda: ran_in.append(threading.current_thread()))
    assert ran_in == [threading.current_thread()]


def test_an_escaping_error_is_logged_and_frees_the_slot(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("bug")

    overlap.hand_over(broken)
    overlap.hand_over(lambda: None)  # does not hang on the failed one
    overlap.drain(timeout=10)
    assert "finishing an item failed" in caplog.text


def test_a_finish_started_when_sent_waits_for_release() -> None:
    ran = threading.Event()
    overlap.hand_over(ran.set, start_when_sent=True)
    assert not ran.wait(0.2)  # not started: the thread's next request is not out yet
    overlap.release()
    assert ran.wait(10)
    overlap.release()  # a second release starts nothing twice


def test_the_next_hand_over_and_drain_start_a_finish_waiting_for_release() -> None:
    """Nothing is left unstarted: the thread's next hand-over starts (and waits for) it,
    and so does a drain at shutdown, from any thread."""
    order: list[str] = []
    overlap.hand_over(lambda: order.append("first"), start_when_sent=True)
    overlap.hand_over(lambda: order.append("second"), start_when_sent=True)
    assert order == ["first"]

    def waits_for_release() -> None:
        overlap.hand_over(lambda: order.append("third"), start_when_sent=True)

    other = threading.Thread(target=waits_for_release)
    other.start()
    other.join(10)
    overlap.drain(timeout=10)
    assert sorted(order) == ["first", "second", "third"]
