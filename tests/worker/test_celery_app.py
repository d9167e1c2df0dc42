"""Worker processes take their compute threads from ``CONCEPTLENS_COMPUTE_THREADS`` when
they start: the main process (``worker_init``; the solo and thread pools compute there)
and every prefork child (``worker_process_init``). Each case runs in a fresh interpreter,
as a worker process would, so this test process keeps its own threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, sys
import torch
import worker.celery_app
from celery import signals
from conceptlens.threads import blas_threads
before = torch.get_num_threads()
getattr(signals, sys.argv[1]).send(sender=None)
print(json.dumps({
    "before": before,
    "torch": torch.get_num_threads(),
    "native": blas_threads(),
    "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                           "OPENBLAS_NUM_THREADS")},
}))
"""


def probe(signal: str, threads: str | None, data: Path, omp: str) -> dict[str, object]:
    """What a fresh process started with ``OMP_NUM_THREADS=omp`` has after ``signal``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCEPTLENS_")}
    env.update(CONCEPTLENS_DATA_DIR=str(data), OMP_NUM_THREADS=omp)
    if threads is not None:
        env["CONCEPTLENS_COMPUTE_THREADS"] = threads
    out = subprocess.run(
        [sys.executable, "-c", PROBE, signal], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("signal", ["worker_process_init", "worker_init"])
def test_a_worker_process_takes_the_configured_threads(signal: str, tmp_path: Path) -> None:
    got = probe(signal, "3", tmp_path, omp="1")
    assert got["before"] == 1  # what OMP_NUM_THREADS gave it at its start
    assert got["torch"] == 3
    assert got["env"] == dict.fromkeys(
        ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), "3"
    )


def test_the_default_is_one_thread_per_process(tmp_path: Path) -> None:
    got = probe("worker_process_init", None, tmp_path, omp="2")
    assert got["torch"] == 1
    assert got["native"] and set(got["native"].values()) == {1}  # type: ignore[attr-defined]
    assert got["env"] == dict.fromkeys(
        ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), "1"
    )
