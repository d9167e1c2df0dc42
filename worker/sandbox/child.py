"""The model sandbox process: ``python -I -c BOOT ROOT FD LIMITS_JSON`` (see parent.BOOT).

Started by :class:`worker.sandbox.Sandbox` with an empty scratch folder as its working
directory and an environment without the service's settings. Before anything else it
applies its resource limits (address space, file size, open files, no core dumps) and asks
the kernel to kill it when its parent dies; only then does it import torch, take the
number of compute threads its limits name (:func:`conceptlens.threads.configure_process`;
it reports torch's count when ready) and wait for requests on the socket ``FD``. Requests
and replies are :mod:`worker.sandbox.wire` messages; the operations are in
:mod:`worker.sandbox.ops`.

This module must not import ``backend``: the sandbox has no database, broker or blob store.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import sys
import traceback
from typing import Any

from worker.sandbox import wire

PR_SET_PDEATHSIG = 1


def apply_limits(limits: dict[str, Any]) -> None:
    """Resource limits of this process (and anything it starts), set before any model loads."""
    memory = int(limits.get("memory_bytes") or 0)
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    file_bytes = int(limits.get("file_bytes") or 0)
    if file_bytes > 0:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    nice = int(limits.get("nice") or 0)
    if nice > 0:
        os.nice(min(nice, 19))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = min(int(limits.get("open_files") or 256), hard if hard > 0 else 1 << 20)
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
    with contextlib.suppress(OSError, AttributeError):  # die with the parent (Linux)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent is already gone
        os._exit(0)


def serve(sock: socket.socket, threads: int = 1) -> None:
    import torch

    from conceptlens.threads import configure_process
    from worker.sandbox.ops import Operations

    configure_process(threads)
    ops = Operations(sock)
    wire.send(sock, {"ready": True, "pid": os.getpid(), "threads": torch.get_num_threads()})
    while True:
        message = wire.receive(sock)
        if message is None:
            return
        header, arrays = message
        try:
            result, out = ops.run(header, arrays)
        except BaseException as error:  # reported to the parent; the process goes on
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            wire.send(sock, {"error": _describe(error)})
            continue
        wire.send(sock, {"ok": result}, out)


def _describe(error: BaseException) -> dict[str, str]:
    from worker.sandbox.ops import kind_of

    return {
        "kind": kind_of(error),
        "type": type(error).__name__,
        "message": str(error) or type(error).__name__,
        "trace": "".join(traceback.format_exception(error)[-3:])[-2000:],
    }


def main(argv: list[str]) -> None:
    fd, limits = int(argv[1]), json.loads(argv[2])
    apply_limits(limits)
    os.dup2(2, 1)  # nothing a model prints may reach a pipe someone reads as data
    sock = socket.socket(fileno=fd)
    try:
        serve(sock, int(limits.get("threads") or 1))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent went away
    finally:
        sock.close()


if __name__ == "__main__":
    main(sys.argv)
