"""What README.md claims about the command line and the service is what they do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from backend.config import Settings
from conceptlens.pipeline import MAX_EXACT_PLAYERS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_player_limits_are_the_ones_enforced() -> None:
    """The service allows CONCEPTLENS_MAX_PLAYERS (20), the command line 24; the README
    said 24 for both."""
    default = Settings.model_fields["max_players"].default
    assert f"command line is limited to {MAX_EXACT_PLAYERS} players" in " ".join(README.split())
    assert f"The service allows {default} per analysis by default" in " ".join(README.split())
    assert f"| `CONCEPTLENS_MAX_PLAYERS` | {default} |" in README
    assert not re.search(r"Exact analysis is limited to \d+ players", README)


def _sample_output() -> list[str]:
    """The README's sample output of `conceptlens demo` (the block after the command)."""
    start = README.index("conceptlens demo        #")
    closing = README.index("```\n", start)  # the end of the command's block
    opening = README.index("```\n", closing + 4)  # the sample's block
    block = README[opening + 4 :]
    lines = block[: block.index("```")].splitlines()
    assert len(lines) > 10, lines
    return lines


def test_the_demo_sample_output_is_what_the_command_prints(tmp_path: Path) -> None:
    """Every line of the README's sample (but "..." and the progress bar, which draws over
    itself) is a line `conceptlens demo` prints, in the same order."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "conceptlens.cli", "demo", "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    printed = run.stdout.splitlines()
    position = 0
    for line in _sample_output():
        if line.strip() == "..." or line.startswith("forward passes:"):
            continue
        found = next((k for k in range(position, len(printed)) if _same(line, printed[k])), None)
        assert found is not None, (line, run.stdout)
        position = found + 1


NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


#: How far a printed number may be from the README's: the demo model is trained afresh by
#: the command, and on another CPU (other vector instructions in the convolution kernels)
#: its weights differ in the last bits, which moves the salient counts and values by up to
#: about 2.5 % (seen between two machines of this project's kind, same packages).
REL_TOLERANCE = 0.03


def _same(expected: str, got: str) -> bool:
    """Equal text up to spacing (columns widen with larger counts), and numbers within
    :data:`REL_TOLERANCE` (residuals like 1e-14 only need to be tiny on both sides)."""
    if NUMBER.sub("#", " ".join(expected.split())) != NUMBER.sub("#", " ".join(got.split())):
        return False
    pairs = zip(NUMBER.findall(expected), NUMBER.findall(got), strict=True)
    for a, b in (map(float, pair) for pair in pairs):
        tiny = max(abs(a), abs(b)) < 1e-9
        if not (tiny or abs(a - b) <= REL_TOLERANCE * max(abs(a), abs(b), 1e-12)):
            return False
    return True
