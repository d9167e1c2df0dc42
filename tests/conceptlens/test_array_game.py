"""The NumPy logit table of ONNX models: the torch path's table, bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conceptlens.array_game import array_logit_table, mask_range_bits
from conceptlens.game import MaskedModelGame, logit_table, mask_range_coalitions
from conceptlens.images import read_image
from conceptlens.models.formats import load_onnx
from conceptlens.models.loaders import load_model
from conceptlens.players import PatchGrid, Players, baseline_array


@pytest.fixture(scope="module")
def onnx_case(demo_dir: Path, demo_manifest: dict[str, Any]) -> dict[str, Any]:
    path = demo_dir / demo_manifest["files"]["onnx"]
    image = read_image(demo_dir / demo_manifest["samples"][3]["file"], channels=1, size=(16, 16))
    return {"path": path, "x": image, "arrays": load_onnx(path), "tensors": load_model(path)}


@pytest.mark.parametrize(
    ("baseline", "cells", "others_present", "batch", "start", "stop"),
    [
        ("mean", None, True, 4096, 0, None),  # one batch: inline
        ("blur", None, True, 300, 0, None),  # 14 batches: the model in a second thread
        ("zero", [0, 2, 5, 7, 8], False, 7, 3, 29),  # a range, a subset, the others absent
    ],
)
def test_the_table_equals_the_torch_paths_bit_for_bit(
    onnx_case: dict[str, Any],
    baseline: str,
    cells: list[int] | None,
    others_present: bool,
    batch: int,
    start: int,
    stop: int | None,
) -> None:
    x = onnx_case["x"]
    base = baseline_array(x, baseline)  # type: ignore[arg-type]
    players = Players(PatchGrid(3, 4, 16, 16), cells, others_present=others_present)
    game = MaskedModelGame(
        onnx_case["tensors"].predict,
        torch.from_numpy(x),
        players,
        torch.from_numpy(base),
        batch_size=batch,
    )
    expected = logit_table(game, start=start, stop=stop)
    got = array_logit_table(
        onnx_case["arrays"].run, x, base, players, batch_size=batch, start=start, stop=stop
    )
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_progress_reports_every_batch_in_order_and_can_stop_the_enumeration(
    onnx_case: dict[str, Any],
) -> None:
    x = onnx_case["x"]
    players = Players(PatchGrid(2, 3, 16, 16))
    seen: list[tuple[int, int]] = []
    array_logit_table(
        onnx_case["arrays"].run,
        x,
        baseline_array(x, "zero"),
        players,
        batch_size=10,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(d, 64) for d in (10, 20, 30, 40, 50, 60, 64)]

    class Stop(Exception):
        pass

    calls: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return np.zeros((len(batch), 2), dtype=np.float32)

    def stop_after_two(done: int, total: int) -> None:
        if done >= 20:
            raise Stop

    with pytest.raises(Stop):
        array_logit_table(run, x, x, players, batch_size=10, progress=stop_after_two)
    assert len(calls) <= 3  # the batch in flight at most, not the remaining four


def test_an_error_of_the_model_reaches_the_caller() -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("the runtime failed")

    x = np.zeros((1, 4, 4), dtype=np.float32)
    with pytest.raises(RuntimeError, match="the runtime failed"):
        array_logit_table(broken, x, x, Players(PatchGrid(2, 2, 4, 4)), batch_size=2)


@pytest.mark.parametrize(("start", "stop", "n"), [(0, 16, 4), (5, 70, 7), (1000, 1001, 12)])
def test_mask_range_bits_are_the_torch_coalitions(start: int, stop: int, n: int) -> None:
    torch_bits = mask_range_coalitions(start, stop, n, torch.device("cpu")).numpy()
    assert np.array_equal(mask_range_bits(start, stop, n), torch_bits)


def test_a_bad_range_batch_or_shape_is_refused() -> None:
    x = np.zeros((1, 4, 4), dtype=np.float32)
    players = Players(PatchGrid(2, 2, 4, 4))
    with pytest.raises(ValueError, match="differ in shape"):  # not broadcast
        array_logit_table(lambda b: b, np.zeros((3, 4, 4), dtype=np.float32), x, players)
    with pytest.raises(ValueError, match="the grid expects"):
        wide = np.zeros((1, 4, 5), dtype=np.float32)
        array_logit_table(lambda b: b, wide, wide, players)
    with pytest.raises(ValueError, match=r"outside 0\.\.16"):
        array_logit_table(lambda b: b, x, x, players, start=3, stop=17)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        array_logit_table(lambda b: b, x, x, players, batch_size=0)
