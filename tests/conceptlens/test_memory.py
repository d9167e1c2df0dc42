"""conceptlens.memory: a computing process reuses its heap instead of mapping fresh pages
for every batch (at batch 2,048 the demo CNN's n = 16 table faulted 550,000–820,000 pages
and took 1.6–1.9× as long)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conceptlens import memory

GLIBC = platform.libc_ver()[0] == "glibc"

#: 20 tensors of 40 MiB, each written then freed, as a model's batches are; the minor page
#: faults they caused
PROBE = """
import json, resource, sys
import torch
from conceptlens.memory import reuse_heap
took = reuse_heap() if sys.argv[1] == "reuse" else None
torch.ones(8).sum()  # torch's own start-up faults, before counting
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = torch.ones(40 * 2**20 // 4)
    del block
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"took": took, "faults": faults}))
"""
PAGES = 40 * 2**20 // 4096  # of one tensor


def _probe(mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's mallopt")
def test_reused_heap_faults_a_block_once_not_on_every_allocation() -> None:
    default, reused = _probe("default"), _probe("reuse")
    assert default["faults"] > 15 * PAGES  # glibc maps every 40 MiB tensor afresh
    assert reused["took"] is True
    assert reused["faults"] < default["faults"] / 2  # measured: 61,000 against 205,000


#: An n = 16 table's first 8 batches of 2,048 rows of a torch model, its batches run in a
#: second thread as ``logit_table`` runs them when there are more than two (it builds the
#: next batch meanwhile); the minor page faults of the last two of six such tables
THREAD_PROBE = """
import json, resource, sys
import torch
from conceptlens.memory import reuse_heap
from conceptlens.threads import configure_process
configure_process(1)
took = reuse_heap()
from conceptlens.game import MaskedModelGame, logit_table
from conceptlens.models.loaders import load_model
from conceptlens.players import PatchGrid, Players
model = load_model(sys.argv[1], input_shape=(1, 16, 16))
x = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
game = MaskedModelGame(model.predict, x, Players(PatchGrid(4, 4, 16, 16)), torch.zeros_like(x),
                       device=torch.device("cpu"), batch_size=2048)
for _ in range(4):  # the heap grows to what the batches need (settled after 1-3 tables)
    logit_table(game, stop=8 * 2048)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    logit_table(game, stop=8 * 2048)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"took": took, "faults": faults}))
"""


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's mallopt")
def test_a_batch_thread_reuses_the_heap_too(demo_dir: Path) -> None:
    """glibc gives a second thread an arena of its own, made of heaps of at most 64 MiB that
    are unmapped once free: each batch's activations (32 MiB blocks at batch 2,048) were
    fresh pages again, whatever the trim threshold says (about 27,000 faults for these 8
    batches, and an n = 16 table 1.25–1.30× as long as with its batches in the calling
    thread). One arena for every thread keeps them in the reused heap (a dozen faults)."""
    done = subprocess.run(
        [sys.executable, "-c", THREAD_PROBE, str(demo_dir / "digit_cnn.safetensors")],
        capture_output=True,
        text=True,
        check=True,
    )
    probe = json.loads(done.stdout)
    assert probe["took"] is True
    # measured: 12 a table once settled; about 27,000 a table with an arena per thread
    assert probe["faults"] < 10_000


def test_the_sandbox_starts_with_the_same_policy() -> None:
    from worker.sandbox.parent import MALLOC_TUNABLES

    assert memory.glibc_tunables() == MALLOC_TUNABLES
    assert str(memory.MMAP_THRESHOLD) in MALLOC_TUNABLES
    assert "glibc.malloc.arena_max=1" in MALLOC_TUNABLES  # the batch thread's blocks too


def test_the_analyze_command_applies_it(
    demo_dir: Path, demo_manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from conceptlens.cli import main

    calls: list[bool] = []

    def recording() -> bool:
        calls.append(True)
        return True

    monkeypatch.setattr(memory, "reuse_heap", recording)
    image = demo_dir / demo_manifest["samples"][0]["file"]
    model = demo_dir / "digit_cnn.onnx"
    assert main(["analyze", "--model", str(model), "--image", str(image), "--grid", "2x2",
                 "--quiet"]) == 0  # fmt: skip
    assert calls == [True]


#: 160 one-MiB blocks freed under the policy stay in the heap (less than TRIM_THRESHOLD);
#: resident memory before and after release_heap
TRIM_PROBE = """
import json, sys
from pathlib import Path
from conceptlens.memory import release_heap, reuse_heap

def rss():
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(x for x in lines if x.startswith("VmRSS:")).split()[1]) * 1024

reuse_heap()
blocks = [bytearray(2**20) for _ in range(160)]
for b in blocks:
    b[::4096] = b"x" * len(b[::4096])  # touch every page
del blocks
kept = rss()
released = release_heap()
print(json.dumps({"kept": kept, "after": rss(), "released": released}))
"""


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_release_heap_gives_freed_blocks_back() -> None:
    done = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True
    )
    probe = json.loads(done.stdout)
    assert probe["released"] is True
    assert probe["kept"] - probe["after"] > 120 * 2**20  # most of the 160 MiB


@pytest.mark.parametrize(
    ("fmt", "module", "loader"),
    [
        ("onnx", "formats", "load_onnx"),  # on arrays: as in a process without torch
        ("onnx", "loaders", "load_model"),  # on tensors: torch is loaded
        ("safetensors", "loaders", "load_model"),
    ],
)
def test_an_analysis_lets_go_of_the_model_before_its_tables(
    demo_dir: Path,
    demo_manifest: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    module: str,
    loader: str,
) -> None:
    """Issue 14's n = 24 bound: the model (its runtime's arena) and the batches' blocks are
    freed and the heap released before the value tables are made (they held 70 MiB more),
    on arrays (ONNX) and on tensors alike."""
    import importlib
    import weakref

    from conceptlens import pipeline

    models = importlib.import_module(f"conceptlens.models.{module}")
    seen: dict[str, Any] = {}
    load, post = getattr(models, loader), pipeline.interactions_from_logits

    def loading(*args: Any, **kwargs: Any) -> Any:
        model = load(*args, **kwargs)
        seen["model"] = weakref.ref(model)
        return model

    def releasing() -> bool:
        seen["released_while_alive"] = seen["model"]() is not None
        return True

    def post_processing(*args: Any, **kwargs: Any) -> Any:
        seen["alive_at_tables"] = seen["model"]() is not None
        return post(*args, **kwargs)

    monkeypatch.setattr(pipeline, "RELEASE_MIN_PLAYERS", 4)  # a 2×2 grid here
    monkeypatch.setattr(models, loader, loading)
    if module == "formats":
        monkeypatch.delitem(sys.modules, "torch")  # restored after the test
    monkeypatch.setattr(pipeline, "release_heap", releasing)
    monkeypatch.setattr(pipeline, "interactions_from_logits", post_processing)
    request = pipeline.AnalysisRequest(
        model=demo_dir / demo_manifest["files"][fmt],
        image=demo_dir / demo_manifest["samples"][0]["file"],
        grid="2x2",
        device="cpu",
    )
    result = pipeline.run_analysis(request)
    del seen["model"]
    assert seen == {"released_while_alive": False, "alive_at_tables": False}
    assert result.meta["model_format"] == fmt and result.meta["input_shape"] == [1, 16, 16]
