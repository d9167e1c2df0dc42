"""The worker's side of the model sandbox: start it, send it work, contain what goes wrong.

Uploaded models are programs (TorchScript) or run by native runtimes (onnxruntime), so a
worker never loads one in its own process — and so never in the web process of the
embedded default, whose worker threads call this module too. Each worker thread owns one
sandbox process (:func:`current`), started on first use and kept warm, with the models it
loaded, until it dies or is killed:

* **Started clean**: ``python -I -m worker.sandbox.child`` with an empty scratch folder as
  working directory and home, an environment holding only ``PATH``, locale, thread and GPU
  variables (none of the ``CONCEPTLENS_*`` settings, URLs or secrets), stdin closed.
* **Limited**: address space, file size, open files and no core dumps are set by the child
  before any model loads (it is still our code then); CPU time is set per call from here
  (``prlimit``: what it used so far plus the per-call budget); wall time per call is
  watched here. A call over a limit, cancelled, or interrupted kills the process; the next
  call starts a fresh one.
* **Fed through shared memory**: model bytes, images and results are :mod:`wire` arrays;
  nothing from the sandbox is unpickled, and what it sends is checked before it is read.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conceptlens.memory import glibc_tunables
from conceptlens.threads import thread_env
from worker.sandbox import wire

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

#: Environment variables a sandbox keeps (none of them names a secret).
KEPT_ENV = (
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
)  # fmt: skip
#: glibc's allocator in the sandbox (:mod:`conceptlens.memory`): blocks under 64 MiB from the
#: heap, and up to 256 MiB of freed heap kept. A model's per-batch tensors otherwise go
#: through mmap and munmap with their page faults on every batch: at n = 12 the demo CNN's
#: table took 1.3–1.4× as long as in a process with these settings (``bench/README.md``).
#: An operator's own ``GLIBC_TUNABLES`` is kept instead.
MALLOC_TUNABLES = glibc_tunables()
#: Seconds a new sandbox may take to import torch and say it is ready.
START_TIMEOUT_S = 120.0
#: The folder holding ``worker/``: the service is not installed (only the ``conceptlens``
#: library is), and ``python -I`` ignores ``PYTHONPATH``, so the child is told where it is.
SERVICE_ROOT = str(Path(__file__).resolve().parents[2])
#: ``python -I -c BOOT SERVICE_ROOT FD LIMITS``: the child module with ``SERVICE_ROOT`` first
#: on its path and ``sys.argv`` as ``python -m worker.sandbox.child FD LIMITS`` gives it.
BOOT = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
    "runpy.run_module('worker.sandbox.child', run_name='__main__', alter_sys=True)"
)


class SandboxError(ValueError):
    """The model failed in its sandbox; the message is for a person."""


class SandboxInternalError(RuntimeError):
    """Our code failed inside the sandbox (a bug): type and message for the logs."""


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use; 0 means no limit."""

    memory_bytes: int = 8 << 30
    """Address space (RLIMIT_AS). Not applied on CUDA devices, whose drivers reserve far
    more address space than they use."""
    cpu_seconds: int = 3600
    """CPU time per call (RLIMIT_CPU, moved forward before each call)."""
    wall_seconds: float = 3600.0
    """Wall-clock time per call, watched by the worker."""
    file_bytes: int = 1 << 30
    """Largest file the sandbox may write (RLIMIT_FSIZE); model files are written once."""
    open_files: int = 256
    threads: int = 1
    """Compute threads (torch intra-op, BLAS, OpenMP; onnxruntime follows torch): set in the
    sandbox's environment and by the sandbox at its start (:mod:`conceptlens.threads`)."""
    nice: int = 0
    """Scheduling niceness added at the start (0–19): model passes yield the CPU to the web
    server and the worker's own threads when they share cores."""


@dataclass(frozen=True)
class ModelRef:
    """A model to run in a sandbox: its bytes (read only if the sandbox lacks it) and how."""

    blob_key: str
    read: Callable[[], bytes]
    input_shape: tuple[int, ...] | None
    architecture: str | None
    device: str
    max_bytes: int
    max_input_values: int

    @property
    def key(self) -> str:
        shape = "x".join(map(str, self.input_shape or ()))
        return f"{self.blob_key}|{shape}|{self.architecture or ''}|{self.device}"


class Sandbox:
    """One sandbox process, restarted on demand. Not thread-safe: one per thread."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._scratch: str | None = None
        self.threads: int | None = None
        """torch's thread count in the running process, as it reported at its start."""
        self._last_model: str | None = None
        """The model the running process used last: it cannot have dropped that one (it
        drops its least recently used only when a load, which passes here, adds another)."""
        _ALL.add(self)

    # ------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        self.close()
        self._scratch = tempfile.mkdtemp(prefix="conceptlens-sandbox-")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        limits = {
            "memory_bytes": self.limits.memory_bytes,
            "file_bytes": self.limits.file_bytes,
            "open_files": self.limits.open_files,
            "threads": self.limits.threads,
            "nice": self.limits.nice,
        }
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, SERVICE_ROOT,
                 str(theirs.fileno()), json.dumps(limits)],
                pass_fds=(theirs.fileno(),), cwd=self._scratch, env=self._environment(),
                stdin=subprocess.DEVNULL, close_fds=True,
            )  # fmt: skip
        finally:
            theirs.close()
        self._sock = ours
        header, _ = self._next(
            time.monotonic() + START_TIMEOUT_S,
            f"the model sandbox did not start within {START_TIMEOUT_S:.0f} s",
        )
        if not header.get("ready"):
            self.close()
            raise SandboxInternalError(f"the sandbox did not start: {header}")
        self.threads = header.get("threads")
        log.info("model sandbox %s started", self._proc.pid)

    def _environment(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
        assert self._scratch is not None
        env.update(HOME=self._scratch, TMPDIR=self._scratch, PYTHONDONTWRITEBYTECODE="1")
        env.update(thread_env(self.limits.threads))  # the worker's own values do not pass
        env["GLIBC_TUNABLES"] = os.environ.get("GLIBC_TUNABLES", MALLOC_TUNABLES)
        return env

    def kill(self) -> None:
        """Stop the process now (its work is lost); the next call starts a new one."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self.close()

    def close(self) -> None:
        self._last_model = None
        if self._sock is not None:
            self._sock.close()  # the child sees EOF and exits
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # ------------------------------------------------------------ calls

    def call(
        self,
        op: str,
        header: dict[str, Any] | None = None,
        arrays: wire.Arrays | None = None,
        *,
        progress: Progress | None = None,
        sent: Callable[[], None] | None = None,
    ) -> tuple[Any, wire.Arrays]:
        """Run ``op`` in the sandbox; progress messages go to ``progress`` (which may raise,
        e.g. ``Cancelled``: the process is then killed); ``sent()`` is called once the
        request is out. Returns ``(result, arrays)``."""
        if not self.alive():
            self.start()
        assert self._sock is not None and self._proc is not None
        self._set_cpu_budget()
        deadline = time.monotonic() + (self.limits.wall_seconds or float("inf"))
        try:
            wire.send(self._sock, {"op": op, **(header or {})}, arrays)
            if sent is not None:
                sent()
            while True:
                reply, out = self._next(deadline)
                if "progress" in reply:
                    done, total = _two_ints(reply["progress"])
                    if progress is not None:
                        progress(done, total)
                    continue
                if "error" in reply:
                    raise _error_of(reply["error"], self.limits)
                return reply.get("ok"), out
        except (SandboxError, SandboxInternalError, MemoryError):
            raise  # the process is fine and keeps its models
        except BaseException:
            self.kill()
            raise

    def _next(self, deadline: float, late: str | None = None) -> tuple[dict[str, Any], wire.Arrays]:
        """The next message before ``deadline`` (monotonic), or an error saying why not."""
        assert self._sock is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                limit = self.limits.wall_seconds
                raise SandboxError(
                    late or f"the model ran longer than the time limit ({limit:.0f} s)"
                )
            self._sock.settimeout(min(left, 60.0))
            try:
                message = wire.receive(self._sock)
            except TimeoutError:
                continue
            except wire.WireError as error:  # out of step with it: start afresh next time
                self.kill()
                raise SandboxInternalError(
                    f"the model process sent a malformed reply: {error}"
                ) from None
            if message is None:
                raise self._death()
            return message

    def _death(self) -> SandboxError:
        """The process is gone: why, in words."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        self.close()
        if code == -signal.SIGXCPU:
            return SandboxError(
                f"the model used more than its CPU-time limit ({self.limits.cpu_seconds} s) "
                "and was stopped"
            )
        if code == -signal.SIGKILL:
            return SandboxError("the model process was killed (out of memory?)")
        if code == -signal.SIGXFSZ:
            return SandboxError("the model process tried to write a file larger than allowed")
        return SandboxError(f"the model process stopped unexpectedly (exit status {code})")

    def _set_cpu_budget(self) -> None:
        if not self.limits.cpu_seconds or self._proc is None:
            return
        used = _cpu_seconds(self._proc.pid)
        soft = int(used) + self.limits.cpu_seconds
        try:
            resource.prlimit(self._proc.pid, resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
        except (OSError, ValueError) as error:  # pragma: no cover - platform without prlimit
            log.warning("could not set the sandbox CPU limit: %s", error)

    # ------------------------------------------------------------ operations

    def ensure(self, model: ModelRef) -> dict[str, Any]:
        """Load ``model`` here unless it is loaded already; its format, shape and classes.
        The model used last needs no question: each asked cost a round trip (about 1 ms,
        between every two images of an analysis)."""
        if model.key == self._last_model and self.alive():
            return {}
        have, _ = self.call("have", {"key": model.key})
        if have.get("have"):
            self._last_model = model.key
            return {}
        data = np.frombuffer(model.read(), dtype=np.uint8)
        header = {
            "key": model.key,
            "input_shape": list(model.input_shape) if model.input_shape else None,
            "architecture": model.architecture,
            "device": model.device,
            "max_bytes": model.max_bytes,
            "max_input_values": model.max_input_values,
        }
        info, _ = self.call("load", header, {"model": data})
        self._last_model = model.key
        return dict(info)

    def validate(self, model: ModelRef) -> dict[str, Any]:
        """Load and describe: format, input shape, classes, layers (+ shapes), s per pass."""
        self.ensure(model)
        info, _ = self.call("validate", {"key": model.key})
        return dict(info)

    def logits(
        self,
        model: ModelRef,
        x: np.ndarray,
        baseline: np.ndarray,
        *,
        grid: tuple[int, int],
        players: Sequence[int] | None,
        others_present: bool,
        start: int,
        stop: int,
        batch_size: int,
        progress: Progress | None = None,
        sent: Callable[[], None] | None = None,
    ) -> tuple[np.ndarray, float]:
        """Rows ``start … stop−1`` of an image's logit table and the seconds they took
        (``sent``: as in :meth:`call`)."""
        self.ensure(model)
        header = {
            "key": model.key, "grid": list(grid),
            "players": None if players is None else [int(p) for p in players],
            "others_present": others_present, "start": start, "stop": stop,
            "batch_size": batch_size,
        }  # fmt: skip
        arrays = {"x": x, "baseline": baseline}
        result, out = self.call("logits", header, arrays, progress=progress, sent=sent)
        table = out.get("logits")
        if table is None or table.ndim != 2 or table.shape[0] != stop - start:
            raise SandboxInternalError("the model process returned a logit table of the wrong size")
        return table.astype(np.float32, copy=False), float(result.get("seconds", 0.0))

    def coalition_logits(
        self,
        model: ModelRef,
        x: np.ndarray,
        baseline: np.ndarray,
        packed: np.ndarray,
        *,
        grid: tuple[int, int],
        players: Sequence[int] | None,
        others_present: bool,
        batch_size: int,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, float]:
        """Logits of the masked inputs for bit-packed coalitions ``[R, ⌈n/8⌉]`` (``np.packbits``
        rows: sampled analyses) and the seconds they took."""
        self.ensure(model)
        header = {
            "key": model.key, "grid": list(grid),
            "players": None if players is None else [int(p) for p in players],
            "others_present": others_present, "batch_size": batch_size,
        }  # fmt: skip
        arrays = {"x": x, "baseline": baseline, "packed": np.ascontiguousarray(packed, np.uint8)}
        result, out = self.call("coalitions", header, arrays, progress=progress)
        table = out.get("logits")
        if table is None or table.ndim != 2 or table.shape[0] != len(packed):
            raise SandboxInternalError("the model process returned logits of the wrong size")
        return table.astype(np.float32, copy=False), float(result.get("seconds", 0.0))

    def learn_baseline(
        self,
        model: ModelRef,
        x: np.ndarray,
        start: np.ndarray,
        *,
        grid: tuple[int, int],
        players: Sequence[int] | None,
        others_present: bool,
        target: int | None,
        output: str,
        radius: float,
        steps: int,
        batch_size: int,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The baseline of ``x`` learned within ``start ± radius`` to make its interactions
        sparse, and ``{target, loss_before, loss_after, history}``; ``target`` None: the
        predicted class."""
        self.ensure(model)
        header = {
            "key": model.key, "grid": list(grid),
            "players": None if players is None else [int(p) for p in players],
            "others_present": others_present, "target": target, "output": output,
            "radius": radius, "steps": steps, "batch_size": batch_size,
        }  # fmt: skip
        info, out = self.call("learn_baseline", header, {"x": x, "start": start}, progress=progress)
        baseline = out.get("baseline")
        if baseline is None or baseline.shape != x.shape or not isinstance(info, dict):
            raise SandboxInternalError("the model process returned a baseline of the wrong shape")
        if not np.isfinite(baseline).all():
            raise ValueError("the learned baseline is not finite; the model's gradients are not")
        return baseline.astype(np.float32, copy=False), info

    def pgd(
        self, model: ModelRef, x: np.ndarray, *, epsilon: float, steps: int, seed: int
    ) -> np.ndarray:
        """The L∞ PGD perturbation of ``x`` within ``epsilon`` against the class the model
        predicts on ``x`` (its cross-entropy loss), ``steps`` steps from a seeded start."""
        self.ensure(model)
        header = {"key": model.key, "epsilon": epsilon, "steps": steps, "seed": seed}
        _, out = self.call("pgd", header, {"x": x})
        delta = out.get("delta")
        if delta is None or delta.shape != x.shape:
            raise SandboxInternalError(
                "the model process returned a perturbation of the wrong shape"
            )
        if not np.isfinite(delta).all() or np.abs(delta).max() > epsilon * (1 + 1e-5):
            raise ValueError("the attack left its L∞ budget or is not finite")
        return delta.astype(np.float32, copy=False)

    def components(
        self,
        model: ModelRef,
        exemplars: Sequence[ModelRef],
        *,
        layer: str,
        data: Sequence[np.ndarray],
        labelled: bool,
        plan: Any,
        device: str,
        maps: dict[str, int],
        progress: Progress | None = None,
    ) -> tuple[dict[str, Any], wire.Arrays]:
        """The §7 analysis of ``layer`` (metrics, maps) for ``data = (x_train, y_train,
        x_test, y_test)``; ``plan`` is a :class:`~conceptlens.components.TrainingPlan`;
        ``maps``: how many test ``images`` get maps, and ``max_values`` stored in all."""
        for ref in (model, *exemplars):
            self.ensure(ref)
        header = {
            "key": model.key, "exemplars": [ref.key for ref in exemplars], "layer": layer,
            "labelled": labelled, "plan": _plan_dict(plan), "device": device, "maps": maps,
        }  # fmt: skip
        arrays = dict(zip(("x_train", "y_train", "x_test", "y_test"), data, strict=True))
        metrics, out = self.call("components", header, arrays, progress=progress)
        if not isinstance(metrics, dict):
            raise SandboxInternalError("the model process returned no metrics")
        return metrics, out

    def consistency(
        self,
        model: ModelRef,
        compare: ModelRef,
        *,
        layer: str,
        compare_layer: str,
        inputs: Sequence[np.ndarray],
        plan: Any,
        device: str,
        progress: Progress | None = None,
    ) -> tuple[dict[str, Any], wire.Arrays]:
        """§8 between ``model`` at ``layer`` (A) and ``compare`` at ``compare_layer`` (B):
        ``inputs = (xa_train, xa_test, xb_train, xb_test)``, the same images in each model's
        input space; ``plan`` is a :class:`~conceptlens.components.consistency.ConsistencyPlan`."""
        for ref in (model, compare):
            self.ensure(ref)
        header = {
            "key": model.key, "compare_key": compare.key, "layer": layer,
            "compare_layer": compare_layer, "plan": _plan_dict(plan), "device": device,
        }  # fmt: skip
        names = ("xa_train", "xa_test", "xb_train", "xb_test")
        arrays = dict(zip(names, inputs, strict=True))
        metrics, out = self.call("consistency", header, arrays, progress=progress)
        if not isinstance(metrics, dict):
            raise SandboxInternalError("the model process returned no metrics")
        return metrics, out


def _plan_dict(plan: Any) -> dict[str, Any]:
    out = asdict(plan)
    out["orders"] = list(out["orders"])
    return out


def _two_ints(value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and v >= 0 for v in value)
    ):
        raise SandboxInternalError("the model process sent a malformed progress message")
    return value[0], value[1]


def _error_of(error: Any, limits: Limits) -> BaseException:
    if not isinstance(error, dict):
        return SandboxInternalError("the model process sent a malformed error")
    message = str(error.get("message", ""))[:2000]
    kind = error.get("kind")
    if kind == "user":
        return SandboxError(message)
    if kind == "memory":
        cap = f" ({limits.memory_bytes >> 20} MB)" if limits.memory_bytes else ""
        return MemoryError(f"the model needed more memory than its sandbox allows{cap}: {message}")
    log.warning("sandbox internal error: %s", error.get("trace", ""))
    return SandboxInternalError(f"{error.get('type', 'Error')}: {message}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# ---------------------------------------------------------------- one per thread

_ALL: weakref.WeakSet[Sandbox] = weakref.WeakSet()
_LOCAL = threading.local()


def current(limits: Limits | None = None) -> Sandbox:
    """This thread's sandbox (created on first use with ``limits``, default from settings)."""
    sandbox: Sandbox | None = getattr(_LOCAL, "sandbox", None)
    if sandbox is None:
        sandbox = Sandbox(limits or limits_from_settings())
        _LOCAL.sandbox = sandbox
    return sandbox


def limits_from_settings() -> Limits:
    from backend.config import get_settings

    settings = get_settings()
    cuda = (settings.device or "").startswith("cuda") or (
        settings.device is None and _cuda_available()
    )
    return Limits(
        memory_bytes=0 if cuda else settings.sandbox_memory_mb << 20,
        cpu_seconds=settings.sandbox_cpu_seconds,
        wall_seconds=float(settings.task_time_limit_s),
        file_bytes=2 * settings.max_model_bytes,
        threads=settings.compute_threads,
        nice=settings.sandbox_nice,
    )


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@atexit.register
def close_all() -> None:
    """Stop every sandbox of this process (worker shutdown, tests)."""
    for sandbox in list(_ALL):
        sandbox.kill()
