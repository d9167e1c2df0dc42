"""The API process stays small: importing the app never imports torch, the worker, or any
engine module beyond the torch-free ones it uses for cost estimates."""

from __future__ import annotations

import subprocess
import sys


def test_backend_imports_neither_torch_nor_worker() -> None:
    code = (
        "import sys, backend.main, backend.queue, backend.results, backend.figures\n"
        "free = {'conceptlens', 'conceptlens.aliases', 'conceptlens.pairs',\n"
        "        'conceptlens.sampling', 'conceptlens.figures',\n"
        "        'conceptlens.sampled_plan'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'worker')\n"
        "             or (m.split('.')[0] == 'conceptlens' and m not in free))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
