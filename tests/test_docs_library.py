"""docs/library.md runs as written: its ```python blocks, in order, in one namespace —
except those that create a ``Client(``, which need a running server."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conceptlens.analysis import InteractionResult

DOC = Path(__file__).resolve().parents[1] / "docs" / "library.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def runnable_blocks(text: str) -> list[str]:
    """The ```python blocks of ``text`` that need no server (no ``Client(``)."""
    return [block for block in BLOCK.findall(text) if "Client(" not in block]


def test_the_doc_has_a_main_example_and_a_server_block() -> None:
    blocks = BLOCK.findall(DOC.read_text())
    runnable = runnable_blocks(DOC.read_text())
    assert any("interactions_from_logits(" in b for b in runnable)
    assert any("plots." in b for b in runnable)
    assert len(runnable) < len(blocks)  # the Client block is there, and skipped


def test_runnable_blocks_of_docs_library_md_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("shapiq") is None:
        pytest.skip("the interop block needs shapiq (the dev extra)")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs_library"}
    for k, block in enumerate(runnable_blocks(DOC.read_text())):
        exec(compile(block, f"{DOC.name}[python block {k}]", "exec"), namespace)
    folder = Path(str(namespace["folder"]))  # the doc's own temporary folder
    try:
        result = namespace["result"]
        assert isinstance(result, InteractionResult)
        assert result.n == 9
        assert (folder / "curve.html").is_file()
        from_files = namespace["from_files"]
        assert isinstance(from_files, InteractionResult)
        assert np.array_equal(
            np.asarray(namespace["onnx_table"]), from_files.logits
        )  # ONNX by hand, the same
    finally:
        shutil.rmtree(folder, ignore_errors=True)
