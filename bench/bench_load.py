"""Results that load at once (issue 13 §4): readers against the embedded server, and a cold
result page in Chromium, for this tree and (``--old-tree``) the tree before, in one run.

    git archive baab407 | (mkdir -p /tmp/cl-old && tar -x -C /tmp/cl-old)
    .venv/bin/python bench/bench_load.py --old-tree /tmp/cl-old      # ~10 min
                                          # writes results/load.json

Loopback only, bounded (each phase a fixed number of requests). Each tree is served as
``python -m conceptlens.cli serve`` (uvicorn + the in-process Celery worker, SQLite) from a fresh
data folder; the bench waits until the built-in models are trained and the server is quiet.
Then, on that server:

1. **Results.** An exact analysis of one sample digit on a 4×4 grid (n = 16) and one on a
   4×5 grid (n = 20), run to the end. At n = 20, single requests, repeated: the pair curve
   (400 numbers), ``export.csv`` and ``export.json`` (time to the last byte).
2. **Page.** ``--page-reps`` times a new browser context (empty cache) opens the n = 16
   result's page and the time from navigation to the first drawn Plotly chart is read in the
   page (``performance.now()``); then once more in the same context (warm cache). The
   bytes the page transferred (Resource Timing ``transferSize``) are summed.
3. **Readers.** ``--readers`` concurrent clients (asyncio, one keep-alive connection each)
   each send ``--requests`` requests one after another, no pause: ``cached`` asks for the
   figures of the page (the same τ each time: after the first, stored), ``built`` for the
   figures at a τ no one asked for before (built on every request, as every request was
   before). Each with the server idle and while a job runs (an n = 20 analysis of 4 other
   digits, cancelled afterwards). Latency percentiles, requests per second and the server
   process's CPU seconds per request (its sandboxes are other processes, not counted). The
   old tree builds every answer, so its ``cached`` phases send ``--build-requests`` too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "load.json"
COOKIE = "conceptlens_workspace"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
FIRST_CHART = """new MutationObserver((_, obs) => {
  if (!window.__firstChart && document.querySelector('.js-plotly-plot .main-svg')) {
    window.__firstChart = performance.now(); obs.disconnect();
  }
}).observe(document, {subtree: true, childList: true});"""


TIMELINE = """Object.fromEntries(performance.getEntriesByType('resource').map(e => [
  e.name.replace(/^https?:[/][/][^/]+/, '').replace(/[0-9a-f]{32}/g, '~'),
  Math.round(e.responseEnd)]))"""


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


@contextmanager
def serving(tree: Path, data: Path) -> Iterator[tuple[str, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CONCEPTLENS_DATA_DIR": str(data), "PYTHONPATH": str(tree)}
    for name in ("CONCEPTLENS_DATABASE_URL", "CONCEPTLENS_BROKER_URL"):
        env.pop(name, None)
    log = open(data / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "conceptlens.cli", "serve", "--port", str(port)],
        env=env, cwd=tree, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:  # every built-in model trained and checked
            try:
                secret = httpx.post(f"{base}/api/workspace", timeout=5).json()["secret"]
                models = httpx.get(
                    f"{base}/api/models", headers={"Authorization": f"Bearer {secret}"}
                ).json()["data"]
                if models and all(m["status"] in ("ready", "failed") for m in models):
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((data / "serve.log").read_text()[-3000:])
            time.sleep(1)
        quiet(proc.pid)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def quiet(pid: int, limit: float = 0.1, timeout: float = 120) -> None:
    """Wait until the server spends under ``limit`` of a core over 2 s (start-up work done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(2)
        if (cpu_seconds(pid) - before) / 2 < limit:
            return


def client(base: str) -> httpx.Client:
    secret = httpx.post(f"{base}/api/workspace").json()["secret"]
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=600)


def run_analysis(api: httpx.Client, model: str, images: list[str], grid: str) -> dict[str, Any]:
    body = {"model_id": model, "image_ids": images, "grid": grid, "baseline": "zero"}
    created = api.post("/api/analyses", json=body)
    created.raise_for_status()
    return dict(created.json())


def wait_done(api: httpx.Client, analysis_id: str) -> dict[str, Any]:
    while True:
        got = api.get(f"/api/analyses/{analysis_id}").json()
        if got["status"] in ("done", "failed", "cancelled"):
            assert got["status"] == "done", got.get("error")
            return dict(got)
        time.sleep(0.5)


def timed_get(api: httpx.Client, path: str) -> tuple[float, int]:
    start = time.perf_counter()
    size = 0
    with api.stream("GET", path) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
    return time.perf_counter() - start, size


#: One connection's GET: the path's response read whole, its status returned.
Get = Callable[[str], Awaitable[int]]


@asynccontextmanager
async def httpx_connection(base: str, auth: dict[str, str]) -> AsyncIterator[Get]:
    """An httpx client on one keep-alive connection."""
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=base, headers=auth, limits=limits, timeout=120) as http:

        async def get(path: str) -> int:
            return (await http.get(path)).status_code

        yield get


@asynccontextmanager
async def raw_connection(base: str, auth: dict[str, str]) -> AsyncIterator[Get]:
    """A lean HTTP/1.1 client on asyncio streams (keep-alive, bodies read by Content-Length
    and not decoded): httpx spent more CPU per request than the server, on the same two
    cores, so the clients, not the server, set the latency."""
    host, port = base.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in auth.items())
    r, w = await asyncio.open_connection(host, int(port))

    async def get(path: str) -> int:
        w.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Accept-Encoding: gzip\r\n\r\n".encode()
        )
        head = await r.readuntil(b"\r\n\r\n")
        length = next(
            int(v) for k, _, v in (x.partition(b":") for x in head.split(b"\r\n")[1:])
            if k.strip().lower() == b"content-length"
        )  # fmt: skip
        await r.readexactly(length)
        return int(head.split(b" ", 2)[1])

    try:
        yield get
    finally:
        w.close()


CONNECTIONS = {"raw": raw_connection, "httpx": httpx_connection}


async def readers(
    base: str, auth: dict[str, str], paths: list[list[str]], client: str
) -> list[float]:
    """One client (a :data:`CONNECTIONS` kind) per list of paths, all at once; each sends
    its paths one after another."""
    latencies: list[float] = []
    start_line = asyncio.Event()

    async def reader(mine: list[str]) -> None:
        async with CONNECTIONS[client](base, auth) as get:
            await get("/healthz")  # connected before the start line
            await start_line.wait()
            for path in mine:
                t = time.perf_counter()
                status = await get(path)
                latencies.append(time.perf_counter() - t)
                assert status == 200, (status, path)

    tasks = [asyncio.create_task(reader(p)) for p in paths]
    await asyncio.sleep(0.5)
    start_line.set()
    await asyncio.gather(*tasks)
    return latencies


CLIENT = "raw"
"""Which connections :func:`read_phase`'s readers open (:data:`CONNECTIONS`)."""


def read_phase(base: str, pid: int, auth: dict[str, str], paths: list[list[str]]) -> dict[str, Any]:
    count = sum(len(p) for p in paths)
    cpu0, t0, own0 = cpu_seconds(pid), time.perf_counter(), time.process_time()
    latencies = asyncio.run(readers(base, auth, paths, CLIENT))
    wall, cpu = time.perf_counter() - t0 - 0.5, cpu_seconds(pid) - cpu0
    clients_cpu = time.process_time() - own0
    ms = [1000 * x for x in latencies]
    return {
        "requests": count,
        "p50_ms": round(percentile(ms, 50), 1),
        "p90_ms": round(percentile(ms, 90), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "per_s": round(count / wall, 1),
        "server_cpu_ms_per_request": round(1000 * cpu / count, 2),
        "client": CLIENT,
        "clients_cpu_ms_per_request": round(1000 * clients_cpu / count, 2),
    }


def page_phase(base: str, secret: str, analysis_id: str, reps: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    url = f"{base}/#/analyses/{analysis_id}"
    out: dict[str, Any] = {"cold_ms": [], "warm_ms": [], "cold_bytes": [], "warm_bytes": []}
    chromium = shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        for _ in range(reps):
            context = browser.new_context()
            context.add_cookies([{"name": COOKIE, "value": secret, "url": base}])
            context.add_init_script(FIRST_CHART)
            page = context.new_page()
            for kind in ("cold", "warm"):
                page.goto(url if kind == "cold" else f"{base}/?again#/analyses/{analysis_id}")
                page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
                out[f"{kind}_ms"].append(round(page.evaluate("window.__firstChart")))
                sent = page.evaluate(
                    "performance.getEntriesByType('navigation').concat("
                    "performance.getEntriesByType('resource'))"
                    ".reduce((a, e) => a + (e.transferSize || 0), 0)"
                )
                out[f"{kind}_bytes"].append(int(sent))
                if kind == "cold":  # when each step of the page ended, ms from navigation
                    out.setdefault("cold_timeline", []).append(page.evaluate(TIMELINE))
            context.close()
        browser.close()
    out["cold_median_ms"] = statistics.median(out["cold_ms"])
    out["warm_median_ms"] = statistics.median(out["warm_ms"])
    return out


def bench_tree(name: str, tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"tree": str(tree)}
    with (
        tempfile.TemporaryDirectory(prefix=f"cl-load-{name}-") as tmp,
        serving(tree, Path(tmp)) as (base, pid),
    ):
        api = client(base)
        secret = api.headers["Authorization"].split()[1]
        models = api.get("/api/models").json()["data"]
        model = next(m["id"] for m in models if m["builtin"] and m["format"] == "onnx")
        images = [i["id"] for i in api.get("/api/images").json()["data"] if i["builtin"]]
        t = time.perf_counter()
        small = wait_done(api, run_analysis(api, model, images[:1], "4x4")["id"])
        out["n16_analysis_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        big = wait_done(api, run_analysis(api, model, images[1:2], "4x5")["id"])
        out["n20_analysis_s"] = round(time.perf_counter() - t, 1)
        quiet(pid)
        out["uptime_before"] = uptime()

        # single requests at n = 20, repeated
        item20 = f"/api/analyses/{big['id']}/items/{big['items'][0]['id']}"
        singles: dict[str, list[float]] = {}
        for rep in range(0 if args.quick or args.page_only else args.single_reps):
            for label, path in (
                ("pair_ms", f"{item20}/pair?i=0&j={1 + rep}"),  # a pair not asked for before
                ("export_csv_ms", f"{item20}/export.csv"),
                ("export_json_ms", f"{item20}/export.json"),
            ):
                seconds, size = timed_get(api, path)
                singles.setdefault(label, []).append(round(1000 * seconds, 1))
                out.setdefault("sizes", {})[label.replace("_ms", "_bytes")] = size
        out["n20_single"] = {
            k: {"each": v, "median": statistics.median(v)} for k, v in singles.items()
        }

        # the page, cold and warm, before any reader asked for the figures
        if not args.quick:
            out["page"] = page_phase(base, secret, small["id"], args.page_reps)
        plotly_path = "/vendor/plotly.min.js"
        page = httpx.get(f"{base}/").text
        for token in page.split('"'):
            if token.endswith("plotly.min.js"):
                plotly_path = token
        sent = httpx.get(f"{base}{plotly_path}", headers={"accept-encoding": "gzip"})
        out["plotly"] = {
            "path": plotly_path,
            "bytes_sent": int(sent.headers.get("content-length", len(sent.content))),
            "cache_control": sent.headers.get("cache-control"),
            "content_encoding": sent.headers.get("content-encoding"),
        }

        # readers: cached and built, idle and while a job runs
        item16 = f"/api/analyses/{small['id']}/items/{small['items'][0]['id']}"
        tau = small["params"]["tau"]
        auth = {"Authorization": api.headers["Authorization"]}
        counter = iter(range(1, 10**6))

        def paths(kind: str, per_reader: int) -> list[list[str]]:
            if kind == "cached":
                return [[f"{item16}/figures?tau={tau}"] * per_reader for _ in range(args.readers)]
            return [
                [
                    f"{item16}/figures?tau={0.3 + next(counter) * 1e-7:.7f}"
                    for _ in range(per_reader)
                ]
                for _ in range(args.readers)
            ]

        api.get(f"{item16}/figures?tau={tau}")  # the page already did; once more to be sure
        phases: dict[str, list[dict[str, Any]]] = {}
        for condition in () if args.page_only else ("idle", "job running"):
            job = None
            if condition == "job running":
                job = run_analysis(api, model, images[2:6], "4x5")
                while api.get(f"/api/analyses/{job['id']}").json()["status"] != "running":
                    time.sleep(0.2)
                time.sleep(2)
            for rep in range(args.reps):
                kinds = ("cached", "built") if rep % 2 == 0 else ("built", "cached")
                for kind in ("cached",) if args.quick else kinds:
                    cached_here = kind == "cached" and (name == "new" or args.all_cached)
                    per = args.requests if cached_here else args.build_requests
                    result = read_phase(base, pid, auth, paths(kind, per))
                    result["uptime"] = uptime()
                    phases.setdefault(f"{kind}, {condition}", []).append(result)
                    print(name, kind, condition, result, flush=True)
            if job is not None:
                still = api.get(f"/api/analyses/{job['id']}").json()["status"]
                out["job_status_at_end"] = still
                api.post(f"/api/analyses/{job['id']}/cancel")
                quiet(pid)
        out["readers"] = phases
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-tree", type=Path, help="the tree before, exported clean")
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per reader, cached figures")
    parser.add_argument("--build-requests", type=int, default=2, help="per reader, built")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--page-reps", type=int, default=3)
    parser.add_argument("--single-reps", type=int, default=3)
    parser.add_argument("--trees", default="new,old", help="which trees, in this order")
    parser.add_argument(
        "--quick", action="store_true", help="cached readers only: no single requests or page"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--page-only", action="store_true", help="the cold and warm page only")
    parser.add_argument("--client", choices=sorted(CONNECTIONS), default="raw")
    parser.add_argument(
        "--all-cached", action="store_true",
        help="every tree keeps finished answers: send --requests to each (not only to new)",
    )  # fmt: skip
    args = parser.parse_args()
    global CLIENT
    CLIENT = args.client
    results = args.out
    trees = {"new": ROOT, **({"old": args.old_tree} if args.old_tree else {})}
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "cores": os.cpu_count(),
        "uptime_start": uptime(),
        "trees": {},
    }
    if results.exists():  # trees measured before and not again now are kept, with their run
        report["trees"] = json.loads(results.read_text()).get("trees", {})
    for name in args.trees.split(","):
        if name in trees:
            tree = bench_tree(name, trees[name], args)
            tree.update(date=report["date"], commit=report["commit"], args=report["args"])
            report["trees"][name] = tree
            results.write_text(json.dumps(report, indent=1) + "\n")
    report["uptime_end"] = uptime()
    results.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
