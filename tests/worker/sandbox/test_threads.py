"""A sandbox computes with the threads it is given (``CONCEPTLENS_COMPUTE_THREADS``), not
with what the worker's environment says: the variables of its environment and torch's
count as the sandbox reads it back itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from worker.sandbox.parent import Limits, ModelRef, Sandbox, limits_from_settings

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def environ(pid: int | None) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (entry.decode().split("=", 1) for entry in entries if entry)
    return {name: value for name, value in pairs}


@pytest.fixture
def boxes() -> Iterator[list[Sandbox]]:
    made: list[Sandbox] = []
    yield made
    for box in made:
        box.kill()


@pytest.mark.parametrize("threads", [1, 2])
def test_the_sandbox_runs_with_its_configured_threads(
    threads: int, boxes: list[Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in THREAD_VARS:  # the worker's own values do not reach the sandbox
        monkeypatch.setenv(name, "7")
    box = Sandbox(Limits(memory_bytes=6 << 30, threads=threads))
    boxes.append(box)
    box.start()
    env = environ(box.pid)
    assert {name: env.get(name) for name in THREAD_VARS} == dict.fromkeys(THREAD_VARS, str(threads))
    assert box.threads == threads  # torch.get_num_threads() in the sandbox, after it started


def test_threads_survive_a_restart_and_the_sandbox_computes(
    boxes: list[Sandbox], demo_dir: Path
) -> None:
    box = Sandbox(Limits(memory_bytes=6 << 30, threads=2))
    boxes.append(box)
    model = ModelRef(
        blob_key="demo", read=(demo_dir / "digit_cnn.onnx").read_bytes, input_shape=None,
        architecture=None, device="cpu", max_bytes=1 << 28, max_input_values=1 << 20,
    )  # fmt: skip
    x = np.random.default_rng(0).random((1, 16, 16), dtype=np.float32)
    table, _ = box.logits(
        model, x, np.zeros_like(x), grid=(3, 3), players=None, others_present=True,
        start=0, stop=1 << 9, batch_size=128,
    )  # fmt: skip
    assert table.shape == (1 << 9, 10) and np.isfinite(table).all()
    first = box.pid
    box.kill()
    box.start()
    assert box.pid != first and box.threads == 2
    assert environ(box.pid)["OMP_NUM_THREADS"] == "2"


def test_the_setting_reaches_the_sandbox_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.config import get_settings

    monkeypatch.setenv("CONCEPTLENS_COMPUTE_THREADS", "3")
    get_settings.cache_clear()
    try:
        assert limits_from_settings().threads == 3
        monkeypatch.delenv("CONCEPTLENS_COMPUTE_THREADS")
        get_settings.cache_clear()
        assert limits_from_settings().threads == 1  # the default: one per process
    finally:
        get_settings.cache_clear()
