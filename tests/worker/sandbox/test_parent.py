"""The model sandbox process: clean start, limits, results identical to in-process runs,
and every way a call can end badly (cancel, time, CPU, crash) leaves a usable sandbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptlens.game import Cancelled, MaskedModelGame, logit_table
from conceptlens.models.loaders import load_model
from conceptlens.players import PatchGrid, Players
from worker.sandbox.parent import Limits, ModelRef, Sandbox, SandboxError


def ref(demo_dir: Path, name: str = "digit_cnn.onnx") -> ModelRef:
    path = demo_dir / name
    shape = (1, 16, 16) if "torchscript" in name else None
    return ModelRef(
        blob_key=name, read=path.read_bytes, input_shape=shape, architecture=None,
        device="cpu", max_bytes=1 << 28, max_input_values=1 << 20,
    )  # fmt: skip


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(Limits(memory_bytes=6 << 30, cpu_seconds=600, wall_seconds=600))
    yield box
    box.kill()


def limit_of(pid: int | None, what: str) -> int:
    """The soft limit named ``what`` in ``/proc/<pid>/limits``."""
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if what in x)
    return int(line[len("Max ") + len(what) :].split()[0])


def image() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).random((1, 16, 16), dtype=np.float32)
    return x, np.zeros_like(x)


def run_logits(box: Sandbox, model: ModelRef, stop: int = 1 << 12, **kw: object) -> np.ndarray:
    x, base = image()
    table, _ = box.logits(
        model, x, base, grid=(4, 4), players=None, others_present=True, start=0, stop=stop,
        batch_size=256, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return table


def test_starts_clean_with_limits_and_no_settings(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCEPTLENS_DATABASE_URL", "postgresql://secret@db/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    sandbox.start()
    pid = sandbox.pid
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in env if entry}
    assert not any(n.startswith("CONCEPTLENS_") or "SECRET" in n for n in names), names
    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))  # a scratch folder of its own, made empty
    assert cwd.name.startswith("conceptlens-sandbox-") and cwd.parent != Path.cwd()
    assert f"HOME={cwd}".encode() in env and f"TMPDIR={cwd}".encode() in env
    assert limit_of(pid, "address space") == 6 << 30
    assert limit_of(pid, "core file size") == 0
    sandbox.kill()
    assert not cwd.exists()  # the scratch folder goes with it


def minor_faults(pid: int | None) -> int:
    """Minor page faults of process ``pid`` so far (``/proc/<pid>/stat``, field 10)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def test_batches_reuse_heap_memory_instead_of_faulting_pages(
    sandbox: Sandbox, demo_dir: Path
) -> None:
    """glibc hands a batch's tensors (256 KiB here) out by mmap and back by munmap unless
    told otherwise, and every page of every batch faults again: about 44,000 minor faults
    for one 4,096-row table of a torch model, and 1.3–1.4× the passes' time. With the
    sandbox's allocator settings the heap is reused (about a dozen faults)."""
    model = ref(demo_dir, "digit_cnn.torchscript.pt")  # onnxruntime has its own arena
    for _ in range(3):  # the heap grows; TorchScript's executor specialises the graph
        run_logits(sandbox, model)
    before = minor_faults(sandbox.pid)
    run_logits(sandbox, model)
    # a dozen usually; CI once saw 2,062 after a single warm-up call (other first-use
    # costs), still 20× fewer than without the settings
    assert minor_faults(sandbox.pid) - before < 10_000


def test_the_sandbox_yields_the_cpu_when_asked() -> None:
    """Model passes run niced (the embedded default shares cores with the web server)."""
    box = Sandbox(Limits(memory_bytes=6 << 30, nice=10))
    try:
        box.start()
        fields = Path(f"/proc/{box.pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(fields[16]) == os.getpriority(os.PRIO_PROCESS, 0) + 10  # field 19: nice
    finally:
        box.kill()


def test_settings_nice_the_sandbox_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.config import get_settings
    from worker.sandbox.parent import limits_from_settings

    monkeypatch.delenv("CONCEPTLENS_SANDBOX_NICE", raising=False)
    get_settings.cache_clear()
    try:
        assert limits_from_settings().nice == 10
    finally:
        get_settings.cache_clear()


def test_an_operators_allocator_settings_are_kept(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    sandbox.start()
    env = Path(f"/proc/{sandbox.pid}/environ").read_bytes().split(b"\0")
    assert b"GLIBC_TUNABLES=glibc.malloc.arena_max=2" in env


@pytest.mark.parametrize("name", ["digit_cnn.onnx", "digit_cnn.torchscript.pt"])
def test_logits_match_the_engine_in_process(sandbox: Sandbox, demo_dir: Path, name: str) -> None:
    model = ref(demo_dir, name)
    info = sandbox.validate(model)
    assert info["format"] in ("onnx", "torchscript") and info["num_classes"] == 10
    assert info["input_shape"] == [1, 16, 16] and info["seconds_per_pass"] > 0
    got = run_logits(sandbox, model, stop=1 << 16)
    x, base = image()
    local = load_model(demo_dir / name, input_shape=(1, 16, 16))
    game = MaskedModelGame(
        local.predict, torch.from_numpy(x), Players(PatchGrid(4, 4, 16, 16)),
        torch.from_numpy(base), batch_size=256,
    )  # fmt: skip
    assert np.array_equal(got, logit_table(game))


def test_the_model_used_last_is_not_asked_for_again(
    sandbox: Sandbox, demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call asked the process whether it had the model (a round trip, about 1 ms,
    between every two images); the one it used last it still has. Another model, a new
    process or one that died is asked about (and loaded) again."""
    ops: list[str] = []
    call = sandbox.call

    def counted(op: str, *args: object, **kwargs: object) -> object:
        ops.append(op)
        return call(op, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sandbox, "call", counted)
    onnx, script = ref(demo_dir), ref(demo_dir, "digit_cnn.torchscript.pt")
    first = run_logits(sandbox, onnx)
    assert ops == ["have", "load", "logits"]
    ops.clear()
    assert np.array_equal(run_logits(sandbox, onnx), first)
    assert ops == ["logits"]  # no question
    ops.clear()
    run_logits(sandbox, script)
    run_logits(sandbox, onnx)  # still loaded, but not the last one used: asked
    assert ops == ["have", "load", "logits", "have", "logits"]
    ops.clear()
    assert sandbox.pid is not None
    os.kill(sandbox.pid, 9)
    sandbox._proc.wait()  # type: ignore[union-attr]
    assert np.array_equal(run_logits(sandbox, onnx), first)  # a new process: loaded again
    assert ops == ["have", "load", "logits"]


def test_a_cpu_budget_is_set_per_call(sandbox: Sandbox, demo_dir: Path) -> None:
    sandbox.validate(ref(demo_dir))
    soft = limit_of(sandbox.pid, "cpu time")
    assert 600 <= soft <= 600 + 120  # what it used so far plus the budget


def test_cancel_from_progress_kills_and_the_next_call_starts_fresh(
    sandbox: Sandbox, demo_dir: Path
) -> None:
    model = ref(demo_dir)
    sandbox.validate(model)
    first = sandbox.pid

    def cancel(done: int, total: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        run_logits(sandbox, model, stop=1 << 16, progress=cancel)
    assert not sandbox.alive()
    assert run_logits(sandbox, model).shape == (1 << 12, 10)  # loads the model again
    assert sandbox.pid != first


def test_a_call_over_the_wall_time_limit_is_stopped(demo_dir: Path) -> None:
    box = Sandbox(Limits(wall_seconds=0.5))
    try:
        model = ref(demo_dir, "digit_cnn.torchscript.pt")
        with pytest.raises(SandboxError, match="time limit"):
            box.validate(model)
            run_logits(box, model, stop=1 << 16)
        assert not box.alive()
    finally:
        box.kill()


def test_a_call_over_the_cpu_time_limit_is_stopped(demo_dir: Path) -> None:
    box = Sandbox(Limits(cpu_seconds=1))
    try:
        model = ref(demo_dir, "digit_cnn.torchscript.pt")
        with pytest.raises(SandboxError, match="CPU-time limit"):
            box.validate(model)
            for _ in range(20):  # some CPU seconds in all, whatever the machine's speed
                run_logits(box, model, stop=1 << 16)
    finally:
        box.kill()


def test_a_dead_sandbox_is_reported_and_replaced(sandbox: Sandbox, demo_dir: Path) -> None:
    model = ref(demo_dir)
    sandbox.validate(model)
    assert sandbox.pid is not None
    os.kill(sandbox.pid, 9)
    with pytest.raises(SandboxError, match="killed"):
        sandbox.call("ping")
    assert sandbox.call("ping")[0] == {"pong": True}


def test_model_errors_keep_the_process(sandbox: Sandbox, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a model at all")
    bad = ModelRef(
        blob_key="junk", read=junk.read_bytes, input_shape=None, architecture=None,
        device="cpu", max_bytes=1 << 20, max_input_values=1 << 20,
    )  # fmt: skip
    sandbox.start()
    pid = sandbox.pid
    with pytest.raises(SandboxError, match="model"):
        sandbox.validate(bad)
    assert sandbox.pid == pid and sandbox.alive()


def test_the_input_size_cap_reaches_the_loader(sandbox: Sandbox, demo_dir: Path) -> None:
    path = demo_dir / "digit_cnn.onnx"
    small = ModelRef(
        blob_key="capped", read=path.read_bytes, input_shape=None, architecture=None,
        device="cpu", max_bytes=1 << 28, max_input_values=255,
    )  # fmt: skip
    with pytest.raises(SandboxError, match="255"):
        sandbox.validate(small)


def test_a_malformed_reply_ends_the_process(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.sandbox import wire
    from worker.sandbox.parent import SandboxInternalError

    sandbox.start()

    def garbled(*args: object, **kwargs: object) -> None:
        raise wire.WireError("header is not JSON")

    monkeypatch.setattr(wire, "receive", garbled)
    with pytest.raises(SandboxInternalError, match="malformed"):
        sandbox.call("ping")
    assert not sandbox.alive()  # out of step with it: the next call starts a new one
