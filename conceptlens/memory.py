"""The allocator policy of a computing process: glibc keeps reusing its heap.

glibc's ``malloc`` serves a block above its *mmap threshold* with a fresh ``mmap`` and
gives it back with ``munmap`` when freed; the threshold grows with what is freed, but not
past 32 MiB. A model's per-batch tensors are blocks of that size (the demo CNN's first
activations at batch 2,048 are exactly 32 MiB), so every batch maps new pages and faults
on each of them: 550,000–820,000 minor page faults for the 32 batches of an n = 16 table,
which then took 3.2–4.4 s on one thread against 2.0–2.4 s with the heap reused (55–12,000
faults; 2026-12-01, ``bench/README.md``, "Re-measured 2026-12-01").

:func:`reuse_heap` raises the threshold to :data:`MMAP_THRESHOLD` and keeps up to
:data:`TRIM_THRESHOLD` of freed heap, in the calling process, through ``mallopt``; model
sandboxes get the same through ``GLIBC_TUNABLES`` (:func:`glibc_tunables`) when they start.

It also gives every thread the one (main) arena, :data:`ARENA_MAX`. A model's batches run
in a second thread (``logit_table`` builds the next batch meanwhile), and glibc gives a
second thread an arena of its own, made of heaps of at most 64 MiB that are unmapped once
they are free, whatever the trim threshold says: the batches' 32 MiB blocks were fresh
pages again each time (2026-12-03, ``bench/README.md``: the first 32 batches of 2,048 rows
of the demo CNN faulted 296,000–365,000 pages and took 1.25–1.30× as long as with the
batches in the calling thread; with one arena 12–1,548 faults and 1.00–1.03×). The
setting holds for threads that have not allocated yet: a thread that has keeps its arena,
and glibc may hand that arena to a later thread, so call :func:`reuse_heap` before starting
threads. One arena's lock was not measurable in these single-computation processes; the
web process running the embedded worker shares it with its request threads, unmeasured.

The ``conceptlens`` command and the service's Celery workers call it before any thread; the
sandboxes, where the service's models run, get it through ``GLIBC_TUNABLES`` at start.
Importing the library changes nothing (a script may call it itself; a notebook, whose kernel
threads have allocated before any cell runs, gets all of it only from ``GLIBC_TUNABLES``
set before it starts, :func:`glibc_tunables`). Elsewhere than glibc (musl, macOS, Windows)
it does nothing.
"""

from __future__ import annotations

import ctypes
import platform
from typing import Any

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "glibc_tunables", "release_heap", "reuse_heap"]

MMAP_THRESHOLD = 64 * 2**20
"""Blocks under this come from the heap (glibc's default grows up to 32 MiB)."""
TRIM_THRESHOLD = 256 * 2**20
"""Freed heap kept before glibc returns the top of it to the system."""
ARENA_MAX = 1
"""Arenas of the process: every thread allocates from the main one, the heap kept above."""

#: The policy, one row per setting: ``mallopt``'s parameter (glibc's malloc.h), the name of
#: the same setting in ``GLIBC_TUNABLES``, and its value.
_SETTINGS = (
    (-3, "mmap_threshold", MMAP_THRESHOLD),
    (-1, "trim_threshold", TRIM_THRESHOLD),
    (-8, "arena_max", ARENA_MAX),
)


def glibc_tunables() -> str:
    """The ``GLIBC_TUNABLES`` value that starts a process with this policy.

    Example:
        >>> glibc_tunables().split(":")
        ['glibc.malloc.mmap_threshold=67108864', 'glibc.malloc.trim_threshold=268435456', \
'glibc.malloc.arena_max=1']
    """
    return ":".join(f"glibc.malloc.{name}={value}" for _, name, value in _SETTINGS)


def reuse_heap() -> bool:
    """Apply the policy to this process now; True if glibc took every setting. Threads
    that have allocated already keep the arena they have: call it before starting any."""
    mallopt = _glibc("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    took = [mallopt(param, value) for param, _, value in _SETTINGS]  # each one, then check
    return all(took)


def release_heap() -> bool:
    """Give freed heap back to the system now (``malloc_trim(0)``); True if glibc released
    any. The policy above keeps up to :data:`TRIM_THRESHOLD` of freed heap for the next
    batch; once the forward passes are over, what the model and its batches held would
    only add to the analysis's peak (issue 14: at n = 22–24, 65–75 MiB)."""
    trim = _glibc("malloc_trim", [ctypes.c_size_t])
    return False if trim is None else bool(trim(0))


def _glibc(name: str, argtypes: list[Any]) -> Any:
    """glibc's function ``name`` returning an int, or None elsewhere (musl, macOS, Windows)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function
