"""The API process stays small: importing the app never imports torch, the worker or the engine."""

from __future__ import annotations

import subprocess
import sys


def test_backend_imports_neither_torch_nor_worker() -> None:
    code = (
        "import sys, backend.main, backend.queue, backend.results, backend.figures\n"
        "ours = ('worker', 'conceptlens')\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.split('.')[0] in ours)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
