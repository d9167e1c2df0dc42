"""worker.tasks: an analysis's images are pulled by its tasks, each running them in turn.

Before, every image was a task of its own: on a prefork worker each hand-off cost about
24 ms, a tenth of an n = 12 image's forward passes (bench/README.md, stability). Now the
analysis starts ``run_items`` tasks that each run queued images until none is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from backend.config import get_settings
from backend.db.models import AnalysisItem
from backend.db.session import session_scope
from worker import jobs, overlap, tasks
from worker.sandbox import parent


@pytest.fixture
def queued(hold: Callable[..., tuple[str, list[str]]]) -> tuple[str, list[str]]:
    """An analysis of four images whose start was not sent: its id and item ids."""
    return hold(image_labels="0123", grid="2x2")


def _fake_run_claimed(ran: list[str]) -> Any:
    """``run_claimed`` without the passes: records the image and marks it done."""

    def run_claimed(claimed: jobs.Claimed, **_: Any) -> jobs.Next:
        ran.append(claimed.item_id)
        if claimed.heartbeat is not None:
            claimed.heartbeat.__exit__()
        with session_scope() as s:
            s.get_one(AnalysisItem, claimed.item_id).status = "done"
        return "", []

    return run_claimed


def test_one_task_runs_every_queued_image_in_order_and_the_others_find_none(
    queued: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    analysis_id, item_ids = queued
    ran: list[str] = []
    monkeypatch.setattr(jobs, "run_claimed", _fake_run_claimed(ran))
    tasks.run_items(analysis_id)
    assert ran == item_ids  # all four, by position, in one task
    tasks.run_items(analysis_id)  # a second task of the analysis: nothing left
    assert ran == item_ids


def test_the_next_image_is_claimed_and_prepared_while_this_one_runs(
    queued: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an image's passes run, the task's next image is already claimed (its lease
    held) and its context built, so the sandbox waits for no database round trip; the last
    one is only prepared (claiming it ahead would keep it from an idle task)."""
    analysis_id, item_ids = queued
    seen: list[tuple[str, bool, bool]] = []
    done = _fake_run_claimed([])

    def run_claimed(claimed: jobs.Claimed, **_: Any) -> jobs.Next:
        position = item_ids.index(claimed.item_id)
        if position + 1 < len(item_ids):
            following = item_ids[position + 1]
            deadline = time.monotonic() + 10
            while True:  # the look-ahead runs in another thread: wait for it
                with jobs._CONTEXTS_LOCK:
                    built = following in jobs._CONTEXTS
                if built or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            time.sleep(0.05)
            with session_scope() as s:
                owner = s.get_one(AnalysisItem, following).lease_owner
            seen.append((following, owner is not None, built))
        return done(claimed)

    monkeypatch.setattr(jobs, "run_claimed", run_claimed)
    tasks.run_items(analysis_id)
    assert seen == [
        (item_ids[1], True, True),
        (item_ids[2], True, True),
        (item_ids[3], False, True),
    ]


def test_a_small_analysis_is_not_held_by_one_task(
    hold: Callable[..., tuple[str, list[str]]],
) -> None:
    """Two images, two tasks: the first task does not claim the second image ahead (the
    other task, starting a moment later, would find nothing and one worker would run both
    while the other idled); it only prepares it."""
    analysis_id, item_ids = hold(image_labels="01", grid="2x2")
    first = jobs.claim_next(analysis_id)
    assert first is not None and first.item_id == item_ids[0]
    assert jobs.look_ahead(analysis_id) == item_ids[1]  # prepared, not claimed
    second = jobs.claim_next(analysis_id)  # the other task
    assert second is not None and second.item_id == item_ids[1]
    for claimed in (first, second):
        assert claimed.heartbeat is not None
        claimed.heartbeat.__exit__()


def test_tasks_pulling_at_once_share_the_images(queued: tuple[str, list[str]]) -> None:
    """Two workers' tasks pulling alternately: each image claimed by exactly one."""
    analysis_id, item_ids = queued
    got: list[list[str]] = [[], []]
    active = [0, 1]
    while active:
        for k in list(active):
            claimed = jobs.claim_next(analysis_id)
            if claimed is None:
                active.remove(k)
                continue
            assert claimed.heartbeat is not None
            claimed.heartbeat.__exit__()
            got[k].append(claimed.item_id)
    assert sorted(got[0] + got[1]) == sorted(item_ids)
    assert got[0] and got[1]  # both took some
    assert not set(got[0]) & set(got[1])


def test_a_task_hands_the_rest_to_a_fresh_one_after_its_share_of_time(
    queued: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task running image after image would pass Celery's time limit on a large
    analysis, and keep a stopping worker waiting: after ``PULL_SECONDS`` it sends a new
    task for the rest and ends, claiming nothing ahead that it would not run."""
    analysis_id, item_ids = queued
    ran: list[str] = []
    sent: list[str] = []
    monkeypatch.setattr(jobs, "run_claimed", _fake_run_claimed(ran))
    monkeypatch.setattr(tasks.run_items, "delay", lambda a: sent.append(a))
    clock = iter(range(0, 10_000, 40))  # each reading 40 s after the last
    monkeypatch.setattr(tasks, "monotonic", lambda: float(next(clock)))
    assert tasks.PULL_SECONDS == 60 and get_settings().task_time_limit_s / 4 > 60
    tasks.run_items(analysis_id)
    assert ran == item_ids[:2] and sent == [analysis_id]
    with session_scope() as s:  # the other two still queued, nobody holding them
        rest = [s.get_one(AnalysisItem, i) for i in item_ids[2:]]
        assert [(r.status, r.lease_owner) for r in rest] == [("queued", None)] * 2


def test_a_failing_task_gives_back_the_image_it_claimed_ahead(
    queued: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Had the task died with an image claimed ahead, that image's heartbeat would renew
    its lease forever and nobody would run it."""
    analysis_id, item_ids = queued

    def broken(claimed: jobs.Claimed, **_: Any) -> jobs.Next:
        assert claimed.heartbeat is not None
        claimed.heartbeat.__exit__()
        raise RuntimeError("a bug")

    monkeypatch.setattr(jobs, "run_claimed", broken)
    with pytest.raises(RuntimeError):
        tasks.run_items(analysis_id)
    with session_scope() as s:
        second = s.get_one(AnalysisItem, item_ids[1])
        assert (second.status, second.lease_owner) == ("queued", None)
        assert second.lease_expires_at is not None  # the sweep sends it if nobody takes it


def test_an_images_finish_starts_once_the_next_images_request_is_out(
    queued: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image's finish (tens of milliseconds of Python: the table stored, transforms,
    database writes) started as soon as its passes ended, and held the GIL while the task
    was getting the next image's request out: the sandbox waited 5–8 ms per image, about a
    twentieth of an n = 12 image's passes. It now starts when that request is sent (here
    the task is slow to reach the next image, so a finish started at once would come
    first), and the last one when the task ends. The "all passes done" write, which ran in
    a thread beside that too, is left to the finish when it starts with the next request
    (a finish that must wait for the previous one still gets it: test_analysis_faults)."""
    analysis_id, item_ids = queued
    events: list[str] = []
    send, finish, look_ahead = parent.wire.send, jobs._finish_whole, jobs.look_ahead
    logits = jobs.ItemContext.logits

    def sending(sock: Any, header: dict[str, Any], *args: Any) -> None:
        send(sock, header, *args)
        if header.get("op") == "logits":
            events.append("sent")

    def finishing(item_id: str, *args: Any) -> None:
        events.append(f"finish {item_ids.index(item_id)}")
        finish(item_id, *args)

    def slow_passes(ctx: jobs.ItemContext, *args: Any) -> Any:
        out = logits(ctx, *args)
        time.sleep(0.3)  # passes long enough for the previous image's finish to end
        return out

    def slow_look_ahead(analysis_id: str) -> Any:
        following = look_ahead(analysis_id)
        time.sleep(0.3)
        return following

    monkeypatch.setattr(parent.wire, "send", sending)
    monkeypatch.setattr(jobs, "_finish_whole", finishing)
    monkeypatch.setattr(jobs, "look_ahead", slow_look_ahead)
    monkeypatch.setattr(jobs.ItemContext, "logits", slow_passes)
    monkeypatch.setattr(jobs, "_passes_done", lambda *args: events.append("passes done"))
    tasks.run_items(analysis_id)
    overlap.drain(timeout=30)
    assert events == [
        "sent", "sent", "finish 0", "sent", "finish 1", "sent", "finish 2", "finish 3"
    ]  # fmt: skip
    with session_scope() as s:
        items = [s.get_one(AnalysisItem, item_id) for item_id in item_ids]
        assert [item.status for item in items] == ["done"] * 4
