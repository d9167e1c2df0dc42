"""The conceptlens command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conceptlens.cli import main


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


@pytest.fixture
def own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings, database and blob store of a fresh data folder (caches reset around it)."""
    from tests.backend.conftest import reset_caches

    monkeypatch.setenv("CONCEPTLENS_DATA_DIR", str(tmp_path))
    reset_caches()
    yield tmp_path
    reset_caches()


def test_gc_reports_then_removes_unreferenced_blobs(
    own_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from backend.db.migrate import upgrade
    from backend.storage import LocalBlobStore

    upgrade()
    store = LocalBlobStore(own_data_dir / "blobs")
    orphan = store.put(b"left behind by a deleted model")
    assert main(["gc", "--min-age-hours", "0", "--dry-run"]) == 0
    assert "1 blobs stored, 0 referenced; would remove 1" in capsys.readouterr().out
    assert store.exists(orphan)
    assert main(["gc", "--min-age-hours", "0"]) == 0
    assert "removed 1 unreferenced" in capsys.readouterr().out
    assert not store.exists(orphan)


def test_gc_without_a_migrated_database_says_so(
    own_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gc", "--dry-run"]) == 2
    assert "is it migrated?" in capsys.readouterr().err


HEAVY = ("torch", "onnx", "onnxruntime", "safetensors", "sklearn")
ROOT = Path(__file__).resolve().parents[2]


def heavy_imports(code: str, **env: str) -> set[str]:
    """Which heavy packages a fresh interpreter has imported after running ``code``."""
    script = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_help_and_gc_import_no_model_runtime(tmp_path: Path) -> None:
    help_code = (
        "from conceptlens.cli import main\n"
        "for argv in (['--help'], ['gc', '--help'], ['analyze', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass"
    )
    assert heavy_imports(help_code) == set()
    gc_code = (
        "from backend.db.migrate import upgrade\n"
        "from conceptlens.cli import main\n"
        "upgrade()\n"
        "assert main(['gc', '--min-age-hours', '0', '--dry-run']) == 0"
    )
    assert heavy_imports(gc_code, CONCEPTLENS_DATA_DIR=str(tmp_path)) == set()


def test_model_runtimes_are_imported_per_format(demo_dir: Path) -> None:
    """onnxruntime only for ONNX (and ``onnx`` only where the service's loader checks the
    graph with it, not for the command), torch only for the other formats (and for loading
    any model as tensors), safetensors only for its files, scikit-learn only for the demo's
    training digits."""
    assert heavy_imports("import conceptlens.pipeline, conceptlens.models") == set()
    load = "from conceptlens.models.loaders import load_model\nload_model({!r})"
    onnx_file = str(demo_dir / "digit_cnn.onnx")
    assert heavy_imports(load.format(onnx_file)) == {"torch", "onnx", "onnxruntime"}
    weights = str(demo_dir / "digit_cnn.safetensors")
    assert heavy_imports(load.format(weights)) == {"torch", "safetensors"}
    analyze = (
        "from conceptlens.cli import main\n"
        "argv = ['analyze', '--model', {!r}, '--image', {!r}, '--grid', '2x3', '--quiet']\n"
        "assert main(argv) == 0"
    )
    image = str(next((demo_dir / "samples").glob("*.png")))
    assert heavy_imports(analyze.format(onnx_file, image)) == {"onnxruntime"}
    assert heavy_imports(analyze.format(weights, image)) == {"torch", "safetensors"}
    demo = "from conceptlens.models import load_digits_16\nload_digits_16()"
    assert "sklearn" in heavy_imports(demo)


def _console_script(
    argv: list[str], marker: Path, before: str = ""
) -> subprocess.CompletedProcess[str]:
    """The ``conceptlens`` console script (``cli.run``) in a fresh interpreter, with an
    ``atexit`` handler that writes ``marker`` if the interpreter's teardown runs; stdout is
    a pipe, so block-buffered. ``before``: code run first."""
    script = (
        f"import atexit, sys\n{before}\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').close())\n"
        f"sys.argv = ['conceptlens', *{argv!r}]\n"
        "from conceptlens.cli import run\n"
        "run()"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_analyze_leaves_without_the_interpreter_teardown(
    demo_dir: Path, demo_manifest: dict[str, Any], tmp_path: Path
) -> None:
    """After ``analyze`` the process exits at once (torch's teardown costs ~0.4 s), with its
    summary flushed and its files whole; a failure keeps its exit status and message."""
    out, marker = tmp_path / "r.npz", tmp_path / "teardown-ran"
    image = str(demo_dir / demo_manifest["samples"][1]["file"])
    args = ["analyze", "--model", str(demo_dir / "digit_cnn.onnx"), "--image", image]
    done = _console_script([*args, "--grid", "2x3", "--quiet", "--out", str(out)], marker)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    assert "order-strength curve" in done.stdout
    assert f"wrote {out}" in done.stdout
    assert np.load(out)["logits"].shape == (64, 10)
    assert json.loads(out.with_suffix(".json").read_text())["grid"] == "2x3"

    failed = _console_script(
        ["analyze", "--model", str(tmp_path / "missing.onnx"), "--image", image], marker
    )
    assert failed.returncode == 2
    assert failed.stderr.startswith("conceptlens: error:")
    assert not marker.exists()


def test_a_reader_gone_before_the_last_flush_leaves_the_exit_status(
    demo_dir: Path, demo_manifest: dict[str, Any], tmp_path: Path
) -> None:
    """``conceptlens analyze ... | head -3``: the reader may be gone when the script flushes
    its output before leaving. That flush raised BrokenPipeError: a traceback, exit 1 and
    the full teardown; the script now leaves with the command's own status."""
    marker = tmp_path / "teardown-ran"
    gone = (
        "import io\n"
        "class Gone(io.StringIO):\n"
        "    def flush(self):\n"
        "        raise BrokenPipeError(32, 'Broken pipe')\n"
        "sys.stdout = Gone()"
    )
    image = str(demo_dir / demo_manifest["samples"][0]["file"])
    args = ["analyze", "--model", str(demo_dir / "digit_cnn.onnx"), "--image", image]
    done = _console_script([*args, "--grid", "1x2", "--quiet"], marker, before=gone)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()


def test_help_still_exits_through_the_interpreter(tmp_path: Path) -> None:
    marker = tmp_path / "teardown-ran"
    done = _console_script(["--help"], marker)
    assert done.returncode == 0
    assert "analyze" in done.stdout
    assert marker.exists()


def test_ml_dtypes_is_below_the_slow_import() -> None:
    """onnx imports ml_dtypes; its 0.7.0 took 1.43-1.46 s to import here, 0.6.0 0.14 s."""
    from importlib.metadata import version

    major, minor = (int(part) for part in version("ml_dtypes").split(".")[:2])
    assert (major, minor) < (0, 7)
