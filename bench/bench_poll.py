"""What one poll of a running analysis costs the API, for this tree and another, side by side.

    .venv/bin/python bench/bench_poll.py [--old-tree /tmp/cl-old] [--reps 7] [--chunks 0 64 128]
                                         # ~16 min; writes results/poll.json

The analysis page asks for ``GET /api/analyses/{id}`` every 0.5 s while the analysis runs,
and the home page for ``GET /api/analyses`` every 2 s. Each tree is measured in its own
child process (``--child``): the embedded default on a fresh SQLite folder, the built-in
models and sample digits (no worker: nothing runs), then an analysis of the 10 sample
digits (2×2 grid) whose items are made to look as a running chunked analysis does — every item
running with ``--chunks`` chunk rows, half of them done. ``GET`` of the analysis and of the
list are timed through FastAPI's ``TestClient`` (in process, no network), 20 requests per
repetition; repetitions alternate between the trees (one child per tree and repetition).
Prints medians per request with ``uptime``; writes ``bench/results/poll.json``.
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
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "results" / "poll.json"
REQUESTS = 20
IMAGES = 16  # at most: there are 10 built-in sample digits


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def child(chunks: int) -> dict[str, float]:
    """In a fresh process whose ``sys.path`` starts at the tree to measure."""
    os.environ["CONCEPTLENS_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-poll-")
    from fastapi.testclient import TestClient

    from backend.api.routes import analyses
    from backend.app import create_app
    from backend.db.base import utcnow
    from backend.db.migrate import upgrade
    from backend.db.models import AnalysisItem, Chunk
    from backend.db.session import session_scope
    from worker.builtins import ensure_builtins

    upgrade()
    model = ensure_builtins()
    analyses.enqueue = lambda *args: None  # nothing runs it
    client = TestClient(create_app())
    assert client.get("/api/workspace").status_code == 200
    images = [i["id"] for i in client.get("/api/images").json()["data"] if i["builtin"]]
    body = {"model_id": model, "image_ids": images[:IMAGES], "grid": "2x2"}
    created = client.post("/api/analyses", json=body)
    assert created.status_code == 201, created.text
    path = f"/api/analyses/{created.json()['id']}"
    with session_scope() as s:
        for item in created.json()["items"]:
            row = s.get_one(AnalysisItem, item["id"])
            row.status, row.lease_owner = "running", "bench"
            row.lease_expires_at = utcnow() + timedelta(hours=1)
            row.chunks_total = chunks
            for c in range(chunks):
                row.chunks.append(Chunk(start=c, stop=c + 1, done=int(c < chunks // 2)))
    out = {}
    for name, url in (("analysis", path), ("list", "/api/analyses")):
        assert client.get(url).status_code == 200  # warm
        t0 = time.perf_counter()
        for _ in range(REQUESTS):
            client.get(url)
        out[name] = (time.perf_counter() - t0) / REQUESTS
    out["items"] = len(created.json()["items"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 64, 128])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return
    trees = {"this": ROOT, **({"old": args.old_tree.resolve()} if args.old_tree else {})}
    before = uptime()
    print("before:", before, flush=True)
    times: dict[str, dict[int, dict[str, list[float]]]] = {t: {} for t in trees}
    for rep in range(args.reps):
        for chunks in args.chunks:
            order = list(trees.items()) if rep % 2 == 0 else list(reversed(trees.items()))
            for name, tree in order:
                env = {**os.environ, "PYTHONPATH": str(tree)}
                run = subprocess.run(
                    [sys.executable, __file__, "--child", str(chunks)],
                    cwd=tree, env=env, capture_output=True, text=True, check=True,
                )  # fmt: skip
                got = json.loads(run.stdout.strip().splitlines()[-1])
                slot = times[name].setdefault(chunks, {"analysis": [], "list": []})
                slot["analysis"].append(got["analysis"])
                slot["list"].append(got["list"])
                print(f"rep {rep} {name} chunks {chunks} items {got['items']}: "
                      f"analysis {1e3 * got['analysis']:.1f} ms, "
                      f"list {1e3 * got['list']:.1f} ms", flush=True)  # fmt: skip
    after = uptime()
    rows = []
    for chunks in args.chunks:
        row: dict[str, Any] = {"chunks_per_item": chunks}
        for name in trees:
            for what in ("analysis", "list"):
                row[f"{name}_{what}_ms"] = 1e3 * statistics.median(times[name][chunks][what])
        if "old" in trees:
            for what in ("analysis", "list"):
                row[f"{what}_this_over_old"] = row[f"this_{what}_ms"] / row[f"old_{what}_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("after:", after)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    args.json.write_text(
        json.dumps(
            {"commit": head.stdout.strip(), "old_tree": str(args.old_tree), "reps": args.reps,
             "requests_per_rep": REQUESTS, "images": IMAGES, "uptime_before": before,
             "uptime_after": after, "rows": rows},
            indent=2,
        ) + "\n"
    )  # fmt: skip


if __name__ == "__main__":
    main()
