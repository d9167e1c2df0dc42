"""Kept answers are keyed by the code that builds them: editing a figure builder (now in
the library, ``conceptlens/figures.py``) must give every answer a new key."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend import answers


@pytest.mark.parametrize("module", ["figures", "library_figures", "results"])
def test_editing_the_code_that_builds_answers_changes_their_keys(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = getattr(answers, module)
    edited = tmp_path / "edited.py"
    edited.write_bytes(Path(source.__file__).read_bytes() + b"\n# an edit\n")
    before = answers._code_digest()
    monkeypatch.setattr(source, "__file__", str(edited))
    assert answers._code_digest() != before
