"""Sampled ``J^(m)`` through the service: passes spent per image, and 1 against 2 workers.

    .venv/bin/python bench/bench_sampled_service.py [--images 4 --reps 4 --contexts 16
                                                     --hybrid-contexts 80]
                                 # ~6 min; writes results/sampled_service.json

The production shape of ``tests/test_faults.py`` (whose helpers it uses): a fresh Postgres
database, a private Redis queue, uvicorn and prefork ``celery worker`` processes, each
computing with one thread (``CONCEPTLENS_COMPUTE_THREADS=1``); settings otherwise at
their defaults (batch 1024, ``SAMPLED_CHUNK_PASSES`` 65,536). The demo ONNX model (16×16
digits) is uploaded with ``--images`` of its sample digits; the built-in demo models the
API asks for at start-up are made first, so that they do not compete with the timings.

1. **Cost.** A 16×16-grid (n = 256) sampled analysis of one image with the hybrid design
   of ``bench/README.md`` ("Sampled ``J^(m)`` at n = 256": 8 contexts on all local pairs at
   the low orders, 400 random pairs × 40 contexts above) on a 2-process worker: the
   forward passes it spent (the item summary's ``passes``, and the sum over its chunks)
   against the paper's 200 pairs × 13 orders × 100 contexts × 4 = 1.04 M.
2. **Scaling.** One sampled analysis of ``--images`` images (16×16, hybrid with
   ``--contexts`` / ``--hybrid-contexts``) on a worker with ``--concurrency 1`` and on one
   with ``--concurrency 2``, ``--reps`` times, the order alternating (1, 2, 2, 1, …). Each
   time: the stored statistics forgotten (so nothing comes from the cache), the worker
   started and warmed up by a small sampled analysis of the same images (its processes and
   model sandboxes started, the model loaded), ``uptime``, the analysis timed from its
   ``POST`` to the client seeing it done (polling every 0.2 s; the server's
   ``finished_at − created_at`` too) with the CPU seconds the worker's processes (pool and
   sandboxes) and the API process spent meanwhile, ``uptime``, the worker stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conceptlens.models.demo import write_demo_model
from tests.services import fresh_postgres_database, redis_url
from tests.test_faults import (
    client_for,
    ended,
    forget_tables,
    start,
    stop_group,
    torch_demos,
    upload_demo,
    worker_args,
)
from tests.test_production import free_port, poll, wait_ready

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "sampled_service.json"
PAPER_PASSES = 200 * 13 * 100 * 4  # 1,040,000
ENGINE_RATIO = 0.299  # bench/README.md: the hybrid 8 → 40 contexts, 310,827 passes
WARMUP = {"ratios": [0.0, 0.3, 0.6, 1.0], "radius": 1, "contexts": 3, "seed": 11}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu_seconds(session: int) -> float:
    """CPU seconds (user + system, with reaped children's) of the processes of ``session``
    (a worker started by :func:`tests.test_faults.start` leads its own: its pool processes
    and their model sandboxes)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # fields from the state on: sid is the 6th of stat
            total += sum(int(f) for f in fields[11:15])
    return total / tick


def say(text: str) -> None:
    print(text, flush=True)


def sampled_body(
    model: str, images: list[str], contexts: int, hybrid_contexts: int
) -> dict[str, Any]:
    return {
        "model_id": model, "image_ids": images, "grid": "16x16", "baseline": "zero",
        "mode": "sampled",
        "sampled": {"contexts": contexts, "hybrid": {"contexts": hybrid_contexts}, "seed": 0},
    }  # fmt: skip


def run_timed(
    client: httpx.Client, body: dict[str, Any], timeout: float = 1800, poll_s: float = 0.2
) -> dict[str, Any]:
    """POST the analysis and wait for its end (poll every ``poll_s``); wall seconds as seen
    here, and the server's (the analysis's ``created_at`` to its ``finished_at``)."""
    t0 = time.perf_counter()
    created = client.post("/api/analyses", json=body)
    if created.status_code != 201:
        raise RuntimeError(created.text)
    path = f"/api/analyses/{created.json()['id']}"
    while True:
        analysis: dict[str, Any] = client.get(path).json()
        if ended(analysis):
            break
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"timed out: {analysis}")
        time.sleep(poll_s)
    wall = time.perf_counter() - t0
    if analysis["status"] != "done":
        raise RuntimeError(f"the analysis ended {analysis['status']}: {analysis['error']}")
    created_at = datetime.fromisoformat(analysis["created_at"])
    finished_at = datetime.fromisoformat(analysis["finished_at"])
    analysis["_wall_s"] = wall
    analysis["_server_s"] = (finished_at - created_at).total_seconds()
    return analysis


def chunk_rows(db_url: str, analysis_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT i.image_id, chunks.start, chunks.stop, chunks.done, chunks.seconds "
                    "FROM chunks JOIN analysis_items i ON i.id = chunks.item_id "
                    "WHERE i.analysis_id = :a ORDER BY i.id, chunks.start"
                ),
                {"a": analysis_id},
            ).all()
    finally:
        engine.dispose()
    return [{"image": r[0], "units": [r[1], r[2]], "passes": r[3], "seconds": r[4]} for r in rows]


class Stack:
    """API, database and queue; workers started and stopped on demand."""

    def __init__(self, db_url: str, data: Path) -> None:
        self.db = db_url
        self.queue = f"bench-{uuid.uuid4().hex[:12]}"
        self.data = data
        data.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ, "CONCEPTLENS_DATABASE_URL": db_url,
            "CONCEPTLENS_BROKER_URL": redis_url(db=8), "CONCEPTLENS_DATA_DIR": str(data),
            "CONCEPTLENS_QUEUE": self.queue, "CONCEPTLENS_COMPUTE_THREADS": "1",
        }  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "backend.db.migrate"], env=self.env, cwd=ROOT, check=True
        )
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.api = start(
            ["-m", "uvicorn", "backend.main:app", "--port", str(port), "--log-level", "warning"],
            self.env, data / "api.log",
        )  # fmt: skip
        wait_ready(self.base)

    def worker(self, concurrency: int) -> subprocess.Popen[bytes]:
        args = worker_args(self.queue)
        args[args.index("--concurrency") + 1] = str(concurrency)
        return start(args, self.env, self.data / "worker.log")

    def close(self) -> None:
        stop_group(self.api)


def cost(stack: Stack, client: httpx.Client, model: str, image: str) -> dict[str, Any]:
    body = sampled_body(model, [image], 8, 40)
    analysis = run_timed(client, body)
    item = analysis["items"][0]
    chunks = chunk_rows(stack.db, analysis["id"])
    spent = int(item["summary"]["passes"])
    out = {
        "request": body["sampled"] | {"grid": "16x16", "n": 256},
        "orders": item["summary"]["orders"],
        "pairs": item["summary"]["pairs"],
        "expected_passes": analysis["params"]["expected_passes"],
        "passes": spent,
        "chunk_passes": sum(c["passes"] for c in chunks),
        "chunks": len(chunks),
        "paper_passes": PAPER_PASSES,
        "ratio": spent / PAPER_PASSES,
        "engine_ratio": ENGINE_RATIO,
        "wall_s": analysis["_wall_s"],
        "forward_seconds": item["summary"].get("forward_seconds"),
    }
    say(
        f"cost: {spent:,} passes spent (chunks {out['chunk_passes']:,}, expected "
        f"{out['expected_passes']:,}) = {out['ratio']:.3f} × the paper's 1.04 M "
        f"(engine: {ENGINE_RATIO}); {len(chunks)} chunks, {analysis['_wall_s']:.1f} s"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--contexts", type=int, default=16)
    parser.add_argument("--hybrid-contexts", type=int, default=80)
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    say(f"start: {uptime()}")
    with tempfile.TemporaryDirectory() as tmp, fresh_postgres_database() as db_url:
        data = Path(tmp)
        demo = data / "demo"
        write_demo_model(demo, seed=0, n_samples=8)
        stack = Stack(db_url, data / "service")
        worker = None
        try:
            client = client_for(stack.base)
            worker = stack.worker(2)
            t0 = time.perf_counter()
            poll(client, "/api/models", torch_demos, timeout=900)  # the built-ins, first
            say(f"built-in demo models made in {time.perf_counter() - t0:.0f} s")
            model, first = upload_demo(client, demo)
            first_bytes = next((demo / "samples").glob("*.png")).read_bytes()
            others = [
                p for p in sorted((demo / "samples").glob("*.png"))
                if p.read_bytes() != first_bytes
            ][: args.images - 1]  # fmt: skip
            uploaded = client.post(
                "/api/images", files=[("files", (p.name, p.read_bytes())) for p in others]
            ).json()["data"]
            images = [first, *(i["id"] for i in uploaded)]
            assert len(set(images)) == args.images, images

            results: dict[str, Any] = {
                "date": datetime.now().isoformat(timespec="seconds"),
                "cores": len(os.sched_getaffinity(0)),
                "settings": {
                    "CONCEPTLENS_COMPUTE_THREADS": 1,
                    "batch_size": 1024,
                    "sampled_chunk_passes": 65_536,
                    "pool": "prefork",
                    "database": "postgres",
                    "broker": "redis",
                },
            }
            if not args.skip_cost:
                say(f"before cost: {uptime()}")
                results["cost"] = cost(stack, client, model, first)
                say(f"after cost: {uptime()}")
            stop_group(worker)
            worker = None

            body = sampled_body(model, images, args.contexts, args.hybrid_contexts)
            warmup = {**body, "grid": "8x8", "sampled": WARMUP}
            runs: list[dict[str, Any]] = []
            for rep in range(args.reps):
                for concurrency in (1, 2) if rep % 2 == 0 else (2, 1):
                    forget_tables(stack.db)
                    worker = stack.worker(concurrency)
                    run_timed(client, warmup)
                    forget_tables(stack.db)
                    before = uptime()
                    say(f"rep {rep} × {concurrency} before: {before}")
                    cpu = cpu_seconds(worker.pid), cpu_seconds(stack.api.pid)
                    analysis = run_timed(client, body)
                    cpu = cpu_seconds(worker.pid) - cpu[0], cpu_seconds(stack.api.pid) - cpu[1]
                    after = uptime()
                    chunks = chunk_rows(stack.db, analysis["id"])
                    passes = sum(int(i["summary"]["passes"]) for i in analysis["items"])
                    runs.append({
                        "rep": rep, "processes": concurrency, "wall_s": analysis["_wall_s"],
                        "server_s": analysis["_server_s"], "passes": passes,
                        "chunks": len(chunks),
                        "chunk_forward_s": sum(c["seconds"] or 0.0 for c in chunks),
                        "worker_cpu_s": cpu[0], "api_cpu_s": cpu[1],
                        "uptime_before": before, "uptime_after": after,
                    })  # fmt: skip
                    say(
                        f"rep {rep} × {concurrency}: {analysis['_wall_s']:.1f} s "
                        f"(server {analysis['_server_s']:.1f} s), {passes:,} passes in "
                        f"{len(chunks)} chunks, forward {runs[-1]['chunk_forward_s']:.1f} s, "
                        f"CPU: worker {cpu[0]:.1f} s, API {cpu[1]:.1f} s"
                    )
                    say(f"rep {rep} × {concurrency} after: {after}")
                    stop_group(worker)
                    worker = None

            by = {
                k: statistics.median(r["wall_s"] for r in runs if r["processes"] == k)
                for k in (1, 2)
            }
            results["scaling"] = {
                "request": body["sampled"] | {"grid": "16x16", "images": args.images},
                "warmup": warmup["sampled"] | {"grid": "8x8"},
                "runs": runs,
                "median_wall_s": {str(k): v for k, v in by.items()},
                "median_worker_cpu_s": {
                    str(k): statistics.median(
                        r["worker_cpu_s"] for r in runs if r["processes"] == k
                    )
                    for k in (1, 2)
                },
                "speedup": by[1] / by[2],
            }
            say(f"median: 1 process {by[1]:.1f} s, 2 processes {by[2]:.1f} s, "
                f"× {by[1] / by[2]:.2f}")  # fmt: skip
        finally:
            if worker is not None:
                stop_group(worker)
            stack.close()
    say(f"end: {uptime()}")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
