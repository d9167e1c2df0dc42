"""worker.jobs: the contexts of an image's noisy copies share the clean image's inputs; items
ending at once roll up one after the other."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, delete, event
from sqlalchemy.orm import Session

from backend.db.models import Analysis, AnalysisItem, LogitTable, ModelRecord, Workspace
from backend.db.session import session_scope
from tests.services import fresh_postgres_database
from worker import jobs

ROOT = Path(__file__).resolve().parents[2]


def test_an_images_noisy_copies_read_its_inputs_once(
    hold: Callable[..., tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stability analysis runs each image as it is and noisy copies of it: their rows,
    image bytes, decode and baseline were read again for every copy (about 16 ms each)."""
    _, item_ids = hold(
        image_labels="12", grid="2x2", baseline="mean", mode="stability",
        stability={"sigma": 0.1, "draws": 2, "adversarial": False},
    )  # fmt: skip
    assert len(item_ids) == 6  # two images, each as it is and with two draws of noise
    reads: list[str] = []
    store = jobs.blobs()

    class Counting:
        def get(self, key: str) -> Any:
            reads.append(key)
            return store.get(key)

    monkeypatch.setattr(jobs, "blobs", Counting)
    contexts = [jobs.item_context(item_id) for item_id in item_ids]
    assert len(reads) == 2  # one image read per image, none per copy
    by_image: dict[int, list[jobs.ItemContext]] = {}
    for ctx in contexts:
        by_image.setdefault(id(ctx.clean), []).append(ctx)
    assert sorted(len(group) for group in by_image.values()) == [3, 3]
    for group in by_image.values():
        clean, *noisy = sorted(group, key=lambda c: c.variant is not None)
        assert clean.variant is None and np.array_equal(clean.x, clean.clean)
        for ctx in noisy:  # each copy its own noise, on the shared clean image and baseline
            assert (ctx.variant or {}).get("kind") == "noise"
            assert ctx.baseline is clean.baseline
            assert not np.array_equal(ctx.x, clean.clean)
        assert not np.array_equal(noisy[0].x, noisy[1].x)


def test_two_items_ending_at_once_leave_the_summary_of_both(
    hold: Callable[..., tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI saw a set of 10 images end "done" with a summary over 9: the roll-up of the 9th
    image read the items, the 10th ended and rolled up in full, then the 9th's summary was
    written over it. A roll-up now holds the analysis's row before it reads."""
    analysis_id, (first, second) = hold(image_labels="01", grid="2x2")
    summarise = jobs._exact_set
    reading, go_on = threading.Event(), threading.Event()

    def slow(analysis: Any, done: list[Any]) -> dict[str, Any]:
        if threading.current_thread().name == "early":
            reading.set()  # the first roll-up has read one image done...
            go_on.wait(10)  # ...and is slow to write its summary
        return summarise(analysis, done)

    monkeypatch.setattr(jobs, "_exact_set", slow)

    def end(item_id: str) -> None:
        with session_scope() as s:
            item = s.get_one(AnalysisItem, item_id)
            item.status, item.summary = "done", {"strength": [1.0, 2.0, 3.0, 4.0, 5.0]}
        jobs.roll_up(analysis_id)

    early = threading.Thread(target=end, args=(first,), name="early")
    early.start()
    assert reading.wait(10)
    late = threading.Thread(target=end, args=(second,))
    late.start()
    late.join(1.5)  # unguarded, the second roll-up ends here, before the first writes
    go_on.set()
    early.join(30)
    late.join(30)
    with session_scope() as s:
        analysis = s.get_one(Analysis, analysis_id)
        assert analysis.status == "done" and analysis.summary is not None
        assert analysis.summary["images"] == 2


def test_a_held_analysis_row_waits_for_its_holder_on_postgres(tmp_path: Path) -> None:
    """The guard on Postgres, the production database: a second session's
    :func:`jobs.hold_row` returns only when the first session commits, and then reads what
    the first wrote."""
    with fresh_postgres_database() as url:
        env = {**os.environ, "CONCEPTLENS_DATABASE_URL": url, "CONCEPTLENS_DATA_DIR": str(tmp_path)}
        subprocess.run([sys.executable, "-m", "backend.db.migrate"], env=env, cwd=ROOT, check=True)
        engine = create_engine(url)
        try:
            with Session(engine) as s:
                workspace = Workspace(secret_hash="h")
                s.add(workspace)
                s.flush()
                model = ModelRecord(workspace_id=workspace.id, name="m", filename="m.onnx",
                                    blob_key="k", size_bytes=1)  # fmt: skip
                s.add(model)
                s.flush()
                analysis = Analysis(workspace_id=workspace.id, model_id=model.id, params={},
                                    n_players=4, summary={"images": 1})  # fmt: skip
                s.add(analysis)
                s.commit()
                analysis_id = analysis.id
            held, seen = threading.Event(), []

            def second() -> None:
                with Session(engine) as s:
                    jobs.hold_row(s, analysis_id)
                    held.set()
                    seen.append(s.get_one(Analysis, analysis_id).summary)
                    s.commit()

            with Session(engine) as first:
                jobs.hold_row(first, analysis_id)
                first.get_one(Analysis, analysis_id).summary = {"images": 2}
                waiting = threading.Thread(target=second)
                waiting.start()
                assert not held.wait(1.0)  # the second waits while the first holds the row
                first.commit()
            waiting.join(30)
            assert held.is_set() and seen == [{"images": 2}]
        finally:
            engine.dispose()


def test_a_summary_is_rolled_up_at_most_every_interval_while_images_are_left(
    hold: Callable[..., tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every roll-up reads every item's summary: after each of an analysis's images that
    was O(images²), 6 → 20 ms per image over 64 items of a stability analysis. While images
    are left it now runs at most every ``ROLL_UP_INTERVAL_S``; the last always runs."""
    analysis_id, item_ids = hold(image_labels="0123", grid="2x2")
    sizes: list[int] = []
    summarise = jobs._exact_set

    def counting(analysis: Any, done: list[Any]) -> dict[str, Any]:
        sizes.append(len(done))
        return summarise(analysis, done)

    monkeypatch.setattr(jobs, "_exact_set", counting)
    monkeypatch.setattr(jobs, "ROLL_UP_INTERVAL_S", 60.0, raising=False)
    for item_id in item_ids:
        with session_scope() as s:
            item = s.get_one(AnalysisItem, item_id)
            item.status, item.summary = "done", {"strength": [1.0, 2.0, 3.0, 4.0, 5.0]}
        jobs.roll_up(analysis_id)
    # the first image's roll-up (its set, its label); then the last's: all four, each label
    assert sizes == [1, 1, 4, 1, 1, 1, 1]
    with session_scope() as s:
        analysis = s.get_one(Analysis, analysis_id)
        assert analysis.status == "done" and analysis.summary is not None
        assert analysis.summary["images"] == 4


def test_a_skipped_roll_up_writes_nothing(
    hold: Callable[..., tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A roll-up skipped by the interval locked the analysis's row first (an UPDATE, and a
    commit to disk) for every image of an analysis. It now counts the images left and
    returns before any write; the last image's roll-up still runs in full."""
    from backend.db.session import get_engine

    analysis_id, item_ids = hold(image_labels="0123", grid="2x2")
    monkeypatch.setattr(jobs, "ROLL_UP_INTERVAL_S", 60.0, raising=False)
    writes: list[list[str]] = []  # what each image's roll-up writes
    recording = False

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        if recording and words and words[0].upper() in ("UPDATE", "INSERT", "DELETE"):
            writes[-1].append(" ".join(words[:3]))

    event.listen(get_engine(), "before_cursor_execute", seen)
    try:
        for item_id in item_ids:
            with session_scope() as s:
                item = s.get_one(AnalysisItem, item_id)
                item.status, item.summary = "done", {"strength": [1.0, 2.0, 3.0, 4.0, 5.0]}
            writes.append([])
            recording = True
            jobs.roll_up(analysis_id)
            recording = False
    finally:
        event.remove(get_engine(), "before_cursor_execute", seen)
    assert writes[0] and writes[3]  # the first roll-up and the last write the summary
    assert writes[1] == [] and writes[2] == []  # the two skipped ones write nothing
    with session_scope() as s:
        analysis = s.get_one(Analysis, analysis_id)
        assert analysis.status == "done" and analysis.summary is not None
        assert analysis.summary["images"] == 4


def test_an_image_over_a_chunk_runs_whole_while_others_are_queued(
    hold: Callable[..., tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunked, every 4,096 masks of a 4×4 image cost a task, its rows and its writes while
    the sandbox waited (issue 11: about 9 % of an n = 16 stability analysis); an image with
    other images queued behind it now runs in one task, and the last is split to share."""
    from backend.config import get_settings

    _, (first, second) = hold(image_labels="12", grid="4x4")  # chunk size 4,096 here
    a = jobs.claim_item(first)
    assert a is not None and a.heartbeat is not None
    a.heartbeat.__exit__()
    assert (a.step, a.ids) == ("whole", [])  # the second image keeps another worker busy
    b = jobs.claim_item(second)
    assert b is not None and b.step == "chunks" and len(b.ids) == 16  # the last is shared

    monkeypatch.setenv("CONCEPTLENS_WHOLE_IMAGE_MAX_MASKS", "32768")  # below 2^16 masks
    get_settings.cache_clear()
    try:
        _, (third, _fourth) = hold(image_labels="34", grid="4x4")
        c = jobs.claim_item(third)
        assert c is not None and c.step == "chunks" and len(c.ids) == 16
    finally:
        monkeypatch.delenv("CONCEPTLENS_WHOLE_IMAGE_MAX_MASKS")
        get_settings.cache_clear()


def test_a_table_stored_by_another_worker_meanwhile_leaves_theirs(
    hold: Callable[..., tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table's cache row and "the passes are done" are one transaction. Two items with
    the same key may store at once: the later insert fails, the first row stays, and the
    later item's progress is still written."""
    _, (item_id,) = hold(image_labels="7", grid="1x2")
    with session_scope() as s:
        item = s.get_one(AnalysisItem, item_id)
        key, total = item.cache_key, item.progress_total
        s.add(LogitTable(cache_key=key, blob_key="theirs", n_players=2, classes=10,
                         forward_seconds=1.0))  # fmt: skip
    original = Session.get

    def blind(self: Session, entity: Any, ident: Any, **kw: Any) -> Any:
        """The other worker's row lands between this one's look and its insert."""
        return None if entity is LogitTable else original(self, entity, ident, **kw)

    try:
        monkeypatch.setattr(Session, "get", blind)
        jobs._store_result(item_id, b"ours", 10, 2.0)
        monkeypatch.setattr(Session, "get", original)
        with session_scope() as s:
            assert s.get_one(LogitTable, key).blob_key == "theirs"
            assert s.get_one(AnalysisItem, item_id).progress_done == total
    finally:
        with session_scope() as s:  # no bogus table left in the cache for other tests
            s.execute(delete(LogitTable).where(LogitTable.cache_key == key))


def test_a_finish_does_not_read_back_the_table_it_just_stored(
    hold: Callable[..., tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image's finish stored its table in the blob store and then read it back from
    there to compute the results (2.6 MB at n = 16); it now uses the bytes it has."""
    _, (item_id,) = hold(image_labels="9", grid="1x2")
    table = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    data = jobs._store_table(item_id, table, 0.1)
    store = jobs.blobs()
    reads: list[str] = []

    class Counting:
        def get(self, key: str) -> Any:
            reads.append(key)
            return store.get(key)

        def put(self, data: bytes) -> str:
            return store.put(data)

    with session_scope() as s:
        key = s.get_one(AnalysisItem, item_id).cache_key
    try:
        monkeypatch.setattr(jobs, "blobs", Counting)
        jobs.finish_item(item_id, None, stored=data)
        with session_scope() as s:
            item = s.get_one(AnalysisItem, item_id)
            assert item.status == "done" and item.summary is not None
        assert reads == []
    finally:
        with session_scope() as s:  # random logits: not a cache entry for other tests
            s.execute(delete(LogitTable).where(LogitTable.cache_key == key))


def test_an_items_work_does_not_read_chunk_lists(
    hold: Callable[..., tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``get`` of an item loaded its chunk list too (``AnalysisItem.chunks`` loads by
    selectin for the API's pages): one more query per get, several gets per image, while
    the sandbox ran the next image's passes; a roll-up read the chunk lists of all the
    analysis's items. Claiming, building, storing and finishing an image that runs whole,
    and rolling the analysis up, now query no chunk list."""
    from backend.db.session import get_engine

    analysis_id, item_ids = hold(image_labels="0123", grid="1x2")
    roll_up = jobs.roll_up
    mine = item_ids[2]
    queries: list[str] = []
    recording = True

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if recording:
            queries.append(" ".join(statement.split()))

    monkeypatch.setattr(jobs, "roll_up", lambda analysis_id: None)
    event.listen(get_engine(), "before_cursor_execute", seen)
    key = None
    try:
        claimed = jobs.claim_item(mine)
        assert claimed is not None and claimed.step == "whole"
        if claimed.heartbeat is not None:
            claimed.heartbeat.__exit__()
        jobs.item_context(mine)
        table = np.random.default_rng(1).normal(size=(4, 10)).astype(np.float32)
        data = jobs._store_table(mine, table, 0.1)
        recording = False  # the test's own look
        with session_scope() as s:
            item = s.get_one(AnalysisItem, mine)
            owner, key = item.lease_owner, item.cache_key
        recording = True
        jobs.finish_item(mine, owner, stored=data)
        roll_up(analysis_id)
    finally:
        event.remove(get_engine(), "before_cursor_execute", seen)
        with session_scope() as s:  # random logits: not a cache entry for other tests
            s.execute(delete(LogitTable).where(LogitTable.cache_key == key))
    assert any(q.startswith("UPDATE analysis_items") for q in queries)  # the work ran
    assert any(q.startswith("UPDATE analyses") for q in queries)  # and the roll-up
    assert not [q for q in queries if "FROM chunks" in q]
    with session_scope() as s:
        assert s.get_one(AnalysisItem, mine).status == "done"
