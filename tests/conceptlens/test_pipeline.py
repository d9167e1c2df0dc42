"""One analysis end to end on the demo model, in every format."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conceptlens.pipeline import AnalysisRequest, run_analysis


def request_for(demo_dir: Path, manifest: dict[str, Any], fmt: str, **kw: Any) -> AnalysisRequest:
    return AnalysisRequest(
        model=demo_dir / manifest["files"][fmt],
        image=demo_dir / manifest["samples"][3]["file"],
        grid=kw.pop("grid", "3x3"),
        device="cpu",
        **kw,
    )


def test_every_format_gives_the_same_interactions(
    demo_dir: Path, demo_manifest: dict[str, Any]
) -> None:
    results = {
        fmt: run_analysis(request_for(demo_dir, demo_manifest, fmt))
        for fmt in ("onnx", "torchscript", "safetensors", "state_dict")
    }
    reference = results["state_dict"]
    assert reference.prediction == demo_manifest["samples"][3]["label"]
    for result in results.values():
        assert result.residual < 1e-9
        np.testing.assert_allclose(result.interactions, reference.interactions, atol=1e-3)
    assert results["torchscript"].meta["input_shape"] == [1, 16, 16]


def test_progress_counts_every_forward_pass(demo_dir: Path, demo_manifest: dict[str, Any]) -> None:
    seen: list[tuple[int, int]] = []
    request = request_for(demo_dir, demo_manifest, "onnx", batch_size=100)
    result = run_analysis(request, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (512, 512) and len(seen) == 6
    assert result.meta["forward_passes"] == 512


def test_selected_players_and_absent_others(demo_dir: Path, demo_manifest: dict[str, Any]) -> None:
    request = request_for(demo_dir, demo_manifest, "onnx", grid="4x4", players=[5, 6, 9, 10])
    present = run_analysis(request)
    request.others_present = False
    absent = run_analysis(request)
    assert present.n == absent.n == 4
    assert present.meta["players"] == [5, 6, 9, 10]
    assert not np.allclose(present.v, absent.v)


def test_too_many_players_is_refused_before_any_pass(
    demo_dir: Path, demo_manifest: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="at most 24 players"):
        run_analysis(request_for(demo_dir, demo_manifest, "onnx", grid="5x5"))


def test_shape_flags_must_come_together(demo_dir: Path, demo_manifest: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="both --input-size and --channels"):
        run_analysis(request_for(demo_dir, demo_manifest, "onnx", channels=1))


def test_the_model_file_is_read_within_the_loaders_limit(
    demo_dir: Path, demo_manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Finding the format read the whole file, however large, before any limit applied;
    a folder raised IsADirectoryError. Both are a ModelLoadError now."""
    from conceptlens import pipeline
    from conceptlens.models.formats import ModelLoadError

    monkeypatch.setattr(pipeline, "MAX_MODEL_BYTES", 1024)
    with pytest.raises(ModelLoadError, match=r"larger than the 1\.0 KiB limit"):
        run_analysis(request_for(demo_dir, demo_manifest, "onnx"))
    folder = replace(request_for(demo_dir, demo_manifest, "onnx"), model=tmp_path)
    with pytest.raises(ModelLoadError, match="There is no model file"):
        run_analysis(folder)


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_every_baseline_and_the_others_absent_agree_across_paths(
    demo_dir: Path, demo_manifest: dict[str, Any], fmt: str
) -> None:
    """The ONNX (arrays) and torch (tensors) paths read the same request alike."""
    for baseline in ("zero", "blur", str(demo_dir / demo_manifest["samples"][5]["file"])):
        result = run_analysis(
            request_for(demo_dir, demo_manifest, fmt, baseline=baseline, others_present=False,
                        players=[0, 4, 8])
        )  # fmt: skip
        assert result.n == 3 and result.meta["model_format"] == fmt
        assert result.residual < 1e-9


def test_without_torch_an_onnx_analysis_takes_the_array_path_with_the_same_table(
    demo_dir: Path, demo_manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where torch is loaded (here) an ONNX analysis runs on tensors; where it is not (the
    command), on NumPy arrays — the same table, bit for bit."""
    import sys

    from conceptlens import array_game

    request = request_for(demo_dir, demo_manifest, "onnx", grid="3x4", batch_size=1000)
    on_tensors = run_analysis(request)
    calls: list[int] = []
    original = array_game.array_logit_table

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(array_game, "array_logit_table", recording)
    assert not calls
    run_analysis(request)
    assert not calls  # torch is loaded: tensors
    monkeypatch.delitem(sys.modules, "torch")
    on_arrays = run_analysis(request)
    assert calls == [1]
    assert "torch" not in sys.modules
    assert np.array_equal(on_arrays.logits, on_tensors.logits)
    assert np.array_equal(on_arrays.interactions, on_tensors.interactions)
