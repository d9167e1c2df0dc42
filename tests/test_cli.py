"""The conceptlens command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from worker.cli import main


def test_analyze_prints_summary_and_writes_files(
    demo_dir: Path,
    demo_manifest: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sample = demo_manifest["samples"][2]
    out = tmp_path / "r.npz"
    code = main(
        [
            "analyze",
            "--model", str(demo_dir / "digit_cnn.onnx"),
            "--image", str(demo_dir / sample["file"]),
            "--grid", "3x3",
            "--baseline", "zero",
            "--out", str(out),
            "--and-or-steps", "100",
        ]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert f"prediction  class {sample['label']}" in text
    for heading in (
        "v(N) − v(∅)",
        "residual",
        "AND-OR",
        "top salient sets",
        "order-strength curve",
    ):
        assert heading in text
    data = np.load(out)
    assert data["logits"].shape == (512, 10)
    assert json.loads(out.with_suffix(".json").read_text())["baseline"] == "zero"


def test_input_shape_from_flags_for_torchscript(
    demo_dir: Path, demo_manifest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    image = demo_dir / demo_manifest["samples"][0]["file"]
    model = demo_dir / "digit_cnn.torchscript.pt"
    args = ["analyze", "--model", str(model), "--image", str(image), "--grid", "2x2", "--quiet"]
    assert main([*args, "--input-size", "16x16", "--channels", "1"]) == 0
    assert main(args) == 0  # from the image itself
    assert "class 0" in capsys.readouterr().out


def test_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.")
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    code = main(["analyze", "--model", str(model), "--image", str(image), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("conceptlens: error:") and "pickle" in err and "Traceback" not in err
