"""Jobs end, whatever happens to their workers (issue: no job stays ``running`` forever).

Each test sets up, on the embedded default, a state that the landed service left stuck —
shared chunk blobs, a cancelled fan-out, an interrupted assembly, a dead worker's lease,
NaN logits — and checks that the job now ends with the right status and message.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import update

from backend.config import get_settings
from backend.db.base import utcnow
from backend.db.models import Analysis, AnalysisItem, ComponentJob, ModelRecord
from backend.db.session import get_sessionmaker
from tests.backend.api.test_components import ended, ids, small_job
from tests.backend.conftest import wait_for
from worker import sweep


def finished(a: dict[str, Any]) -> bool:
    return a["status"] in ("done", "failed", "cancelled")


def digit_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def upload_images(client: TestClient, *pngs: bytes) -> list[str]:
    files = [("files", (f"{k}.png", png)) for k, png in enumerate(pngs)]
    response = client.post("/api/images", files=files)
    assert response.status_code == 201, response.text
    return [image["id"] for image in response.json()["data"]]


def analyse(client: TestClient, demo: str, images: list[str], **extra: Any) -> dict[str, Any]:
    body = {"model_id": demo, "image_ids": images, "grid": "4x4", "baseline": "zero", **extra}
    created = client.post("/api/analyses", json=body)
    assert created.status_code == 201, created.text
    return dict(created.json())


def interactions(client: TestClient, analysis: dict[str, Any], k: int = 0) -> np.ndarray:
    item = analysis["items"][k]["id"]
    data = client.get(f"/api/analyses/{analysis['id']}/items/{item}/export.npz").content
    return np.asarray(np.load(io.BytesIO(data))["interactions"])


@pytest.fixture
def demo(service: dict[str, Any]) -> str:
    return str(service["demo_model_id"])


@pytest.fixture
def db() -> Iterator[Any]:
    with get_sessionmaker()() as session:
        yield session


def test_two_images_with_the_same_bytes_share_chunks_and_both_finish(
    client: TestClient, demo: str
) -> None:
    # Before: the first assembly deleted the shared chunk blobs; the second item died with a
    # KeyError and stayed running at 100 %.
    same = digit_png(1)
    images = upload_images(client, same, same)
    created = analyse(client, demo, images)
    done = wait_for(client, f"/api/analyses/{created['id']}", finished, timeout=300)
    assert done["status"] == "done", done["error"]
    assert [i["status"] for i in done["items"]] == ["done", "done"]
    assert np.array_equal(interactions(client, done, 0), interactions(client, done, 1))


def test_cancel_ends_a_chunked_multi_image_analysis_at_once(
    client: TestClient, demo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: queued chunks returned early on the cancel flag without marking their item,
    # so the analysis stayed running for good.
    monkeypatch.setattr(get_settings(), "batch_size", 16)
    images = upload_images(client, digit_png(2), digit_png(3), digit_png(4))
    created = analyse(client, demo, images, others_present=False)
    path = f"/api/analyses/{created['id']}"
    wait_for(client, path, lambda a: a["progress_done"] > 0 or finished(a))
    cancelled = client.post(f"{path}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert {i["status"] for i in cancelled.json()["items"]} <= {"done", "cancelled"}
    time.sleep(1.0)  # in-flight chunks notice the cancel; none may revive the analysis
    after = client.get(path).json()
    assert after["status"] == "cancelled"
    assert {i["status"] for i in after["items"]} <= {"done", "cancelled"}


def test_retry_assembles_an_item_whose_chunks_are_all_done(
    client: TestClient, demo: str, db: Any
) -> None:
    # Before: a retried item with every chunk done got no assembly and stayed running.
    created = analyse(client, demo, upload_images(client, digit_png(5)))
    path = f"/api/analyses/{created['id']}"
    first = wait_for(client, path, finished, timeout=300)
    assert first["status"] == "done", first["error"]
    expected = interactions(client, first)
    item_id = first["items"][0]["id"]
    db.execute(  # as if the server died after the last chunk, before the assembly
        update(AnalysisItem)
        .where(AnalysisItem.id == item_id)
        .values(status="running", result_key=None, summary=None)
    )
    db.execute(update(Analysis).where(Analysis.id == created["id"]).values(status="running"))
    db.commit()
    assert client.post(f"{path}/retry").status_code == 200
    again = wait_for(client, path, finished, timeout=120)
    assert again["status"] == "done", again["error"]
    assert np.array_equal(interactions(client, again), expected)


def expire(db: Any, table: Any, row_id: str, **values: Any) -> None:
    """Make a row look like a worker died holding it (lease expired a minute ago)."""
    db.execute(
        update(table)
        .where(table.id == row_id)
        .values(lease_owner="dead-worker", lease_expires_at=utcnow() - timedelta(minutes=1),
                **values)
    )  # fmt: skip
    db.commit()


def test_the_sweep_requeues_an_item_whose_worker_died(
    client: TestClient, demo: str, db: Any
) -> None:
    # Before: an item whose worker was killed stayed running forever (no lease, no sweep).
    created = analyse(client, demo, upload_images(client, digit_png(6)), grid="3x3")
    path = f"/api/analyses/{created['id']}"
    first = wait_for(client, path, finished)
    expected = interactions(client, first)
    item_id = first["items"][0]["id"]
    expire(db, AnalysisItem, item_id, status="running", result_key=None, summary=None)
    db.execute(update(Analysis).where(Analysis.id == created["id"]).values(status="running"))
    db.commit()
    sweep.sweep()  # (or the embedded worker's own sweeper, if it comes first)
    again = wait_for(client, path, finished)
    assert again["status"] == "done" and np.array_equal(interactions(client, again), expected)
    assert again["items"][0]["summary"] is not None


def test_the_sweep_gives_up_after_max_attempts_with_a_message(
    client: TestClient, demo: str, db: Any
) -> None:
    images = upload_images(client, digit_png(7), digit_png(9))
    created = analyse(client, demo, images, grid="3x3")
    path = f"/api/analyses/{created['id']}"
    item_id = wait_for(client, path, finished)["items"][1]["id"]
    attempts = get_settings().max_attempts - 1
    expire(db, AnalysisItem, item_id, status="running", attempts=attempts)
    db.execute(
        update(Analysis).where(Analysis.id == created["id"]).values(status="running", summary=None)
    )
    db.commit()
    sweep.sweep()
    failed = client.get(path).json()
    assert failed["status"] == "failed"
    assert "stopped before it finished" in failed["error"] and "Retry" in failed["error"]
    # the page shows what did finish: the first image's results and the set's curve
    assert [i["status"] for i in failed["items"]] == ["done", "failed"]
    assert client.get(f"{path}/figures/curve").status_code == 200


def test_the_sweep_recovers_a_model_stuck_validating(
    client: TestClient, demo_dir: Any, db: Any
) -> None:
    data = (demo_dir / "digit_cnn.onnx").read_bytes()
    created = client.post("/api/models", files={"file": ("m.onnx", data)})
    model_id = created.json()["id"]
    wait_for(client, f"/api/models/{model_id}", lambda m: m["status"] == "ready")
    expire(db, ModelRecord, model_id, status="validating", format=None)
    sweep.sweep()
    model = wait_for(
        client, f"/api/models/{model_id}", lambda m: m["status"] in ("ready", "failed")
    )
    assert model["status"] == "ready" and model["format"] == "onnx"


def test_the_sweep_recovers_a_component_job_stuck_running(client: TestClient, db: Any) -> None:
    job = client.post("/api/components", json={**small_job(ids(client)), "seed": 11}).json()
    path = f"/api/components/{job['id']}"
    first = wait_for(client, path, ended, timeout=300)
    assert first["status"] == "done", first["error"]
    expire(db, ComponentJob, job["id"], status="running", metrics=None)
    sweep.sweep()  # (or the embedded worker's own sweeper, if it comes first)
    again = wait_for(client, path, ended, timeout=300)
    assert again["status"] == "done" and again["metrics"]["orders"] == [0, 1]


def test_cancel_and_retry_work_on_a_job_stuck_running(
    client: TestClient, demo: str, db: Any
) -> None:
    # Before: cancel answered 200 and changed nothing; retry answered 409.
    created = analyse(client, demo, upload_images(client, digit_png(8)), grid="3x3")
    path = f"/api/analyses/{created['id']}"
    item_id = wait_for(client, path, finished)["items"][0]["id"]
    expire(db, AnalysisItem, item_id, status="running", result_key=None, summary=None)
    db.execute(update(Analysis).where(Analysis.id == created["id"]).values(status="running"))
    db.commit()
    assert client.post(f"{path}/cancel").json()["status"] == "cancelled"
    assert client.post(f"{path}/retry").status_code == 200
    assert wait_for(client, path, finished)["status"] == "done"


def test_nan_logits_fail_the_item_saying_how_many(client: TestClient, tmp_path: Any) -> None:
    # Before: the analysis ended done with null everywhere.
    class RootOfSlack(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            slack = 0.3 - x.mean(dim=(1, 2, 3))  # negative once most of a white image is in
            return torch.stack([torch.sqrt(slack), -torch.sqrt(slack)], dim=1)

    path = tmp_path / "nan.pt"
    torch.jit.save(torch.jit.script(RootOfSlack()), str(path))
    created = client.post(
        "/api/models",
        files={"file": ("nan.pt", path.read_bytes())},
        data={"input_size": "16x16", "channels": "1"},
    )
    assert created.status_code == 201, created.text
    model = wait_for(
        client,
        f"/api/models/{created.json()['id']}",
        lambda m: m["status"] in ("ready", "failed"),
    )
    assert model["status"] == "ready", model["error"]
    white = io.BytesIO()
    Image.new("L", (16, 16), 255).save(white, format="PNG")
    image = upload_images(client, white.getvalue())
    analysis = analyse(client, model["id"], image, grid="2x2")
    failed = wait_for(client, f"/api/analyses/{analysis['id']}", finished)
    assert failed["status"] == "failed"
    # masks with 2, 3 or 4 of the 4 quarters present: 6 + 4 + 1 = 11 of 16
    assert "NaN or infinite logits on 11 of 16 masked inputs" in failed["error"]


def test_duplicate_deliveries_change_nothing(client: TestClient, demo: str, db: Any) -> None:
    """A broker may deliver a task twice (Redis after its visibility timeout): every step
    finds its job claimed or done and does nothing — no chunk counted twice."""
    from worker import jobs

    created = analyse(client, demo, upload_images(client, digit_png(10)))
    path = f"/api/analyses/{created['id']}"
    first = wait_for(client, path, finished, timeout=300)
    assert first["status"] == "done", first["error"]
    item_id = first["items"][0]["id"]
    item = db.get(AnalysisItem, item_id)
    chunk_ids = [c.id for c in item.chunks]
    assert len(chunk_ids) == 16
    for chunk_id in chunk_ids:
        assert jobs.run_chunk(chunk_id) is None
    jobs.assemble_item(item_id)
    assert jobs.run_item(item_id) == ("", [])
    db.expire_all()
    item = db.get(AnalysisItem, item_id)
    assert (item.status, item.chunks_done, item.chunks_total) == ("done", 16, 16)
    assert np.array_equal(
        interactions(client, client.get(path).json()), interactions(client, first)
    )


def test_a_worker_that_lost_its_lease_stops_and_writes_no_progress(
    client: TestClient, demo: str, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel ends the lease and Retry may hand the job to another worker at once; the old
    worker must stop at its next progress report instead of running on beside the new one
    and overwriting its progress (seen: a retried component job ended at 370 of 400)."""
    from conceptlens.game import Cancelled
    from worker import jobs, leases

    monkeypatch.setattr(get_settings(), "progress_interval_s", 0.0)
    created = analyse(client, demo, upload_images(client, digit_png(12)), grid="2x2")
    item_id = wait_for(client, f"/api/analyses/{created['id']}", finished)["items"][0]["id"]
    assert leases.claim(AnalysisItem, item_id, "old-worker")
    report = jobs.leased_reporter(AnalysisItem, item_id, "old-worker", "progress_done")
    report(1, 4)

    def progress() -> int:
        db.expire_all()
        return int(db.get(AnalysisItem, item_id).progress_done)

    assert progress() == 1
    db.execute(  # a retry, or the sweep, gave the job to another worker
        update(AnalysisItem).where(AnalysisItem.id == item_id).values(lease_owner="new-worker")
    )
    db.commit()
    with pytest.raises(Cancelled):
        report(2, 4)
    assert progress() == 1


def test_an_image_is_finished_beside_the_next_one_and_keeps_its_lease_meanwhile(
    client: TestClient, demo: str, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """worker.overlap: once its table is computed, an image's task returns and its finish
    (store, transform, roll-up) runs in a thread beside the next image's passes. Until it
    ends, the image stays running under its lease (a dead worker's is taken over)."""
    import threading

    from worker import jobs

    release = threading.Event()
    real = jobs.finish_item

    def held(item_id: str, owner: str | None, **keywords: Any) -> None:
        release.wait(60)
        real(item_id, owner, **keywords)

    monkeypatch.setattr(jobs, "finish_item", held)
    images = upload_images(client, digit_png(3), digit_png(4), digit_png(5))
    created = analyse(client, demo, images, grid="2x2")
    path = f"/api/analyses/{created['id']}"

    def states() -> list[tuple[str, str | None, int]]:
        db.expire_all()
        items = db.query(AnalysisItem).filter_by(analysis_id=created["id"]).all()
        return sorted((i.status, i.lease_owner, i.progress_done) for i in items)

    deadline = time.monotonic() + 60
    while not all(done == 16 for _, _, done in states()) and time.monotonic() < deadline:
        time.sleep(0.05)
    # all three images' 16 passes ran on the worker's 2 threads: the third did not wait for
    # a finish (in line, the two threads would sit in theirs and it would not start) …
    assert [(status, done) for status, _, done in states()] == [("running", 16)] * 3
    assert all(owner is not None for _, owner, _ in states())  # … and each kept its lease
    release.set()
    final = wait_for(client, path, finished)
    assert final["status"] == "done", final["error"]
