"""Stability and learning-dynamics analyses through the service (issue 11).

    .venv/bin/python bench/bench_stability_dynamics.py [--reps 3 --images 4]
                                 # ~2.5 min; writes results/stability_dynamics.json

The production shape of ``tests/test_faults.py`` and ``bench_sampled_service.py`` (whose
helpers it uses): a fresh Postgres database, a private Redis queue, uvicorn and prefork
``celery worker`` processes computing with one thread (``CONCEPTLENS_COMPUTE_THREADS=1``),
other settings at their defaults (batch 1024, chunk 16,384 masks, so every item here is one
task without chunks). The built-in models, digits set and series are made first.

1. **Stability against its bare passes.** One ``mode: "stability"`` analysis of the built-in
   "Demo digits CNN (PyTorch weights, seed 0)" on a 4×3 grid (n = 12; ``--grid 4x4``: 16), the first
   ``--images`` images of the built-in digits set, zero baseline, σ 0.1, 2 draws, PGD ε 0.05
   with 10 steps, on a worker with ``--concurrency 1``, from its ``POST`` to the client
   seeing it done; against the same passes run here in one process with one torch thread:
   ``logit_table`` of ``MaskedModelGame`` (batch 1024) on each image, its two noisy copies
   and its attacked copy (images × 4 × 4,096 passes), plus ``pgd_attack`` on each image,
   plus the predicted-class pass of each image. This process reuses glibc's heap
   (``conceptlens.memory.reuse_heap``) as the workers and their sandboxes do (since
   2026-12-01's third session; before, the bare side had glibc's default allocator).
2. **Dynamics, 1 and 2 worker processes.** A series of 10 checkpoints (the seed-0 demo
   trained 10 epochs, the safetensors of each epoch) uploaded through ``POST
   /api/model-series``; one ``mode: "dynamics"`` analysis of the same images at 4×3 on a
   worker with ``--concurrency 1`` and on one with ``--concurrency 2``.

Each service run: the logit-table cache and learned baselines forgotten, the worker started
and warmed up by a 2×2 analysis of the same kind on the same images (its processes and
model sandboxes started, the models loaded), the cache forgotten again, ``uptime``, the
timed run with the CPU seconds of the worker's processes, ``uptime``, the worker stopped.
``--reps`` repetitions, interleaved: bare, stability, then dynamics with 1 and 2 processes
(the order of the two alternating).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, as mypy names it

from bench_sampled_service import Stack, cpu_seconds, run_timed, say, uptime

from conceptlens.memory import reuse_heap
from tests.services import fresh_postgres_database
from tests.test_faults import client_for, forget_tables, stop_group, torch_demos
from tests.test_production import poll

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "stability_dynamics.json"
PROFILE: Path | None = None
SEED0 = "Demo digits CNN (PyTorch weights, seed 0)"
GRID = (4, 3)
STABILITY = {"sigma": 0.1, "draws": 2, "adversarial": True, "epsilon": 0.05, "pgd_steps": 10}
SERIES = "bench series (seed 0, 10 epochs)"
EPOCHS = 10
BATCH = 1024
#: The client's polling of the timed analysis, as the dashboard polls a running analysis
#: (``POLL_MS`` in frontend/js/views/analysis.js). Until 2026-12-01's third session it was
#: 0.05 s, to keep the client's lag small: but each GET of a running analysis costs the API
#: about 11 ms of CPU, so at 20 polls a second the API took 14–17 s of CPU during an n = 16
#: run (a quarter of a core), taken from the passes on this 2-core machine. The server's
#: time (``finished_at − created_at``) does not include the client's lag of up to one poll.
POLL_S = 0.5


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``): over a run, minus
    the worker's and the API's, what Postgres, Redis, this client and anyone else took."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def forget(db_url: str) -> None:
    """The logit-table cache (as the fault tests forget it) and the learned baselines."""
    from sqlalchemy import create_engine, text

    forget_tables(db_url)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM learned_baselines"))
    engine.dispose()


def builtins_ready(client: httpx.Client) -> None:
    poll(client, "/api/models", torch_demos, timeout=900)
    poll(
        client, "/api/model-series",
        lambda r: bool(r["data"]) and all(
            set(s["statuses"]) == {"ready"} for s in r["data"] if s.get("builtin")
        ),
        timeout=900,
    )  # fmt: skip


def upload_series(client: httpx.Client) -> list[int]:
    from conceptlens.models.demo import safetensors_bytes, train_demo_model

    blobs: list[bytes] = []
    train_demo_model(
        seed=0, epochs=EPOCHS, on_epoch=lambda _e, model: blobs.append(safetensors_bytes(model))
    )
    steps = list(range(1, EPOCHS + 1))
    response = client.post(
        "/api/model-series",
        files=[("files", ("digits.safetensors", data)) for data in blobs],
        data={"name": SERIES, "steps": ",".join(map(str, steps)), "architecture": "digit_cnn"},
    )
    if response.status_code != 201:
        raise RuntimeError(response.text)
    for model_id in response.json()["model_ids"]:
        model = poll(
            client, f"/api/models/{model_id}", lambda m: m["status"] in ("ready", "failed"),
            timeout=300,
        )  # fmt: skip
        if model["status"] != "ready":
            raise RuntimeError(model["error"])
    return steps


class Bare:
    """The stability analysis's passes in this process, one torch thread."""

    def __init__(self, images: int) -> None:
        from conceptlens.models.demo import (
            load_digits_16,
            safetensors_bytes,
            split_digits,
            train_demo_model,
        )
        from conceptlens.models.loaders import load_model

        torch.set_num_threads(1)
        model, _ = train_demo_model(seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "seed0.safetensors"
            path.write_bytes(safetensors_bytes(model))
            self.model = load_model(path)
        assert self.model.module is not None
        self.module = self.model.module.eval()
        # the built-in set ranks the held-out split first (worker.builtins.digits_zip); which
        # digits these are matters little for the time, only their shape and range
        self.xs = split_digits(*load_digits_16())[2][:images]

    def run(self) -> dict[str, float]:
        from conceptlens.game import MaskedModelGame, logit_table
        from conceptlens.players import PatchGrid, Players, make_baseline
        from conceptlens.stability import gaussian_noise, pgd_attack

        grid = PatchGrid(GRID[0], GRID[1], 16, 16)
        players = Players(grid)
        seconds = {"predicted": 0.0, "pgd": 0.0, "tables": 0.0}
        passes = 0
        for x in self.xs:
            baseline = make_baseline(x, "zero")
            t0 = time.perf_counter()
            target = int(self.model.predict(x[None]).argmax(dim=1)[0])
            seconds["predicted"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            delta = pgd_attack(
                self.module, x, target, epsilon=STABILITY["epsilon"],
                steps=int(STABILITY["pgd_steps"]), seed=0,
            )  # fmt: skip
            seconds["pgd"] += time.perf_counter() - t0
            noise = torch.from_numpy(
                gaussian_noise(tuple(x.shape), STABILITY["sigma"], int(STABILITY["draws"]), 0)
            )
            inputs = [x, *(x + n for n in noise), x + delta]
            t0 = time.perf_counter()
            for inp in inputs:
                game = MaskedModelGame(
                    self.model.predict, inp, players, baseline, device=torch.device("cpu"),
                    batch_size=BATCH,
                )  # fmt: skip
                passes += len(logit_table(game))
            seconds["tables"] += time.perf_counter() - t0
        total = sum(seconds.values())
        return {**{f"{k}_s": v for k, v in seconds.items()}, "total_s": total, "passes": passes}


def timeline(analysis: dict[str, Any], forward_s: float) -> dict[str, float]:
    """Where the service's seconds went (rows' timestamps): POST to the analysis starting,
    the rest of the server's time beyond the sandbox's passes (claims, contexts, the last
    image's finish and the roll-up; the other images' finishes overlap the passes), and the
    analysis's end to the client seeing it (it polls every ``POLL_S``)."""

    def at(value: str) -> float:
        return datetime.fromisoformat(value).timestamp()

    return {
        "post_to_start_s": at(analysis["started_at"]) - at(analysis["created_at"]),
        "server_beyond_passes_s": analysis["_server_s"] - forward_s,
        "done_to_client_s": analysis["_wall_s"] - analysis["_server_s"],
    }


def timed_service_run(
    stack: Stack, client: httpx.Client, body: dict[str, Any], warmup: dict[str, Any],
    processes: int, label: str,
) -> dict[str, Any]:  # fmt: skip
    forget(stack.db)
    worker = stack.worker(processes)
    try:
        run_timed(client, warmup)
        forget(stack.db)
        before = uptime()
        say(f"{label} before: {before}")
        cpu0 = cpu_seconds(worker.pid), cpu_seconds(stack.api.pid), machine_busy_s()
        profile = PROFILE and subprocess.Popen(  # py-spy over the worker and its sandboxes
            ["py-spy", "record", "--subprocesses", "--idle", "--nonblocking", "-r", "200",
             "-f", "raw", "-o", str(PROFILE / f"{label.replace(' ', '_')}.txt"),
             "-p", str(worker.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        analysis = run_timed(client, body, poll_s=POLL_S)
        if profile:
            profile.send_signal(signal.SIGINT)
            profile.wait(30)
        cpu = cpu_seconds(worker.pid) - cpu0[0], cpu_seconds(stack.api.pid) - cpu0[1]
        busy = machine_busy_s() - cpu0[2]
        after = uptime()
    finally:
        stop_group(worker)
    items = analysis["items"]
    assert not any(i["summary"].get("cached") for i in items), "an item came from the cache"
    forward = sum(float(i["summary"].get("forward_seconds") or 0.0) for i in items)
    out = {
        "processes": processes, "wall_s": analysis["_wall_s"], "server_s": analysis["_server_s"],
        "items": len(items), "passes": len(items) * (1 << (GRID[0] * GRID[1])),
        "sandbox_forward_s": forward, "worker_cpu_s": cpu[0], "api_cpu_s": cpu[1],
        "machine_busy_s": busy,
        "uptime_before": before, "uptime_after": after,
        "timeline": timeline(analysis, forward),
    }  # fmt: skip
    say(
        f"{label}: {out['wall_s']:.2f} s (server {out['server_s']:.2f} s), {len(items)} items, "
        f"sandbox forward {forward:.2f} s, CPU: worker {cpu[0]:.1f} s, API {cpu[1]:.1f} s, "
        f"all cores {busy:.1f} s"
    )
    say(f"{label} timeline: " + ", ".join(f"{k} {v:.3f}" for k, v in out["timeline"].items()))
    say(f"{label} after: {after}")
    out["summary"] = analysis["summary"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--grid", default="4x3", help="rows×columns; n = 16 is 4x4")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--skip-dynamics", action="store_true")
    parser.add_argument(
        "--profile", type=Path, help="a folder for py-spy profiles of the timed service runs"
    )
    args = parser.parse_args()
    global PROFILE, GRID
    PROFILE = args.profile
    rows, cols = (int(k) for k in args.grid.lower().split("x"))
    GRID = (rows, cols)
    reuse_heap()  # the bare side allocates as the workers do (conceptlens.memory)
    if PROFILE:
        PROFILE.mkdir(parents=True, exist_ok=True)

    # POST /api/model-series is not among body_cap's upload addresses, so its body is capped
    # at max_request_bytes (1 MB): 10 checkpoints of 154 KB are refused (413) at the default
    os.environ["CONCEPTLENS_MAX_REQUEST_BYTES"] = str(8 * 2**20)
    # the service's default limit for stability and dynamics is 12 players
    os.environ["CONCEPTLENS_MAX_STABILITY_PLAYERS"] = str(max(12, rows * cols))
    say(f"start: {uptime()}")
    with tempfile.TemporaryDirectory() as tmp, fresh_postgres_database() as db_url:
        stack = Stack(db_url, Path(tmp) / "service")
        try:
            client = client_for(stack.base)
            worker = stack.worker(2)
            try:
                t0 = time.perf_counter()
                builtins_ready(client)
                say(f"built-in models, set and series made in {time.perf_counter() - t0:.0f} s")
                t0 = time.perf_counter()
                steps = upload_series(client)
                say(f"series of {len(steps)} checkpoints trained, uploaded and validated in "
                    f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
            finally:
                stop_group(worker)
            models = client.get("/api/models").json()["data"]
            seed0 = next(m["id"] for m in models if m["name"] == SEED0)
            digits = next(d["id"] for d in client.get("/api/datasets").json()["data"]
                          if d["builtin"])  # fmt: skip
            pick = {"dataset_id": digits, "dataset_pick": "first", "dataset_k": args.images}
            grid = f"{GRID[0]}x{GRID[1]}"
            stability = {"model_id": seed0, "grid": grid, "baseline": "zero", **pick,
                         "mode": "stability", "stability": STABILITY}  # fmt: skip
            dynamics = {"series": SERIES, "grid": grid, "baseline": "zero", **pick,
                        "mode": "dynamics"}  # fmt: skip
            estimate = client.post("/api/analyses/estimate", json=stability).json()
            say(f"stability estimate: {estimate}")
            bare = Bare(args.images)
            bare.run()  # warm-up (allocations, first-call costs)

            runs: dict[str, list[dict[str, Any]]] = {"bare": [], "stability": [], "dynamics": []}
            for rep in range(args.reps):
                before = uptime()
                say(f"rep {rep} bare before: {before}")
                busy = machine_busy_s()
                b = bare.run() | {"rep": rep, "uptime_before": before}
                b |= {"machine_busy_s": machine_busy_s() - busy, "uptime_after": uptime()}
                runs["bare"].append(b)
                say(f"rep {rep} bare: {b['total_s']:.2f} s (tables {b['tables_s']:.2f} s, "
                    f"PGD {b['pgd_s']:.3f} s), {b['passes']:,} passes, "
                    f"all cores {b['machine_busy_s']:.1f} s")  # fmt: skip
                s = timed_service_run(stack, client, stability, {**stability, "grid": "2x2"},
                                      1, f"rep {rep} stability × 1")  # fmt: skip
                runs["stability"].append(s | {"rep": rep})
                for processes in () if args.skip_dynamics else (1, 2) if rep % 2 == 0 else (2, 1):
                    label = f"rep {rep} dynamics × {processes}"
                    warm = {**dynamics, "grid": "2x2"}
                    d = timed_service_run(stack, client, dynamics, warm, processes, label)
                    runs["dynamics"].append(d | {"rep": rep})
        finally:
            stack.close()
    say(f"end: {uptime()}")

    bare_s = statistics.median(r["total_s"] for r in runs["bare"])
    stab_s = statistics.median(r["wall_s"] for r in runs["stability"])
    server_s = statistics.median(r["server_s"] for r in runs["stability"])
    pairs = list(zip(runs["bare"], runs["stability"], strict=True))  # one rep: side by side
    paired = [s["wall_s"] / b["total_s"] for b, s in pairs]
    paired_server = [s["server_s"] / b["total_s"] for b, s in pairs]
    say(
        f"stability {stab_s:.2f} s (server {server_s:.2f} s) against bare {bare_s:.2f} s: "
        f"{stab_s / bare_s:.2f}× (server {server_s / bare_s:.2f}×); per rep "
        + ", ".join(f"{r:.2f}" for r in paired)
        + " (server "
        + ", ".join(f"{r:.2f}" for r in paired_server)
        + f"); medians of the per-rep ratios {statistics.median(paired):.2f} (server "
        f"{statistics.median(paired_server):.2f})"
    )
    results: dict[str, Any] = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "cores": len(os.sched_getaffinity(0)),
        "settings": {
            "CONCEPTLENS_COMPUTE_THREADS": 1,
            "batch_size": BATCH,
            "chunk_size": 16_384,
            "max_request_bytes": 8 * 2**20,
            "pool": "prefork",
            "database": "postgres",
            "broker": "redis",
            "reps": args.reps,
            "poll_s": POLL_S,
        },
        "stability": {
            "request": {
                "grid": grid,
                "n": GRID[0] * GRID[1],
                "images": args.images,
                "baseline": "zero",
                **STABILITY,
            },
            "estimate": estimate,
            "bare": runs["bare"],
            "service": [{k: v for k, v in r.items() if k != "summary"} for r in runs["stability"]],
            "median_bare_s": bare_s,
            "median_service_s": stab_s,
            "median_server_s": server_s,
            "ratio": stab_s / bare_s,
            "server_ratio": server_s / bare_s,
            "ratios_per_rep": paired,
            "server_ratios_per_rep": paired_server,
            # the machine's speed drifts between repetitions (bare 12.2-16.1 s in one run of
            # session 13): the ratio of each repetition's side-by-side pair cancels it
            "median_ratio_per_rep": statistics.median(paired),
            "median_server_ratio_per_rep": statistics.median(paired_server),
            "target_ratio": 1.10,
        },
        "dynamics": None,  # --skip-dynamics
    }
    say(f"stability: service {stab_s:.2f} s / bare {bare_s:.2f} s = {stab_s / bare_s:.2f}")
    if not args.skip_dynamics:
        dyn = {
            k: statistics.median(r["wall_s"] for r in runs["dynamics"] if r["processes"] == k)
            for k in (1, 2)
        }
        results["dynamics"] = {
            "request": {
                "grid": grid,
                "n": GRID[0] * GRID[1],
                "images": args.images,
                "checkpoints": EPOCHS,
                "baseline": "zero",
            },
            "runs": [{k: v for k, v in r.items() if k != "summary"} for r in runs["dynamics"]],
            "median_wall_s": {str(k): v for k, v in dyn.items()},
            "speedup": dyn[1] / dyn[2],
            "overall_similarity": runs["dynamics"][-1]["summary"]["dynamics"]["overall"],
        }
        say(f"dynamics: 1 process {dyn[1]:.2f} s, 2 processes {dyn[2]:.2f} s, "
            f"× {dyn[1] / dyn[2]:.2f}")  # fmt: skip
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
