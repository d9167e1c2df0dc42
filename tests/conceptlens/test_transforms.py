"""Harsanyi transform: SCIENCE.md §1 identities (faithfulness, naive definition)."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conceptlens.transforms import (
    SPAN,
    faithfulness_residual,
    harsanyi,
    harsanyi_adjoint,
    harsanyi_checked,
    harsanyi_checked_in_place,
    max_abs_difference,
    n_players_of,
    order_spans,
    orders,
    superset_sums,
    zeta,
)


def naive_harsanyi(v: np.ndarray) -> np.ndarray:
    """``I(S) = Σ_{T⊆S} (-1)^{|S|-|T|} v(T)`` by enumerating every submask: O(3^n)."""
    out = np.zeros_like(v)
    for s in range(len(v)):
        t = s
        while True:
            out[s] += (-1) ** (bin(s).count("1") - bin(t).count("1")) * v[t]
            if t == 0:
                break
            t = (t - 1) & s
    return out


@pytest.mark.parametrize("n", range(0, 9))
def test_matches_naive_definition(n: int) -> None:
    v = np.random.default_rng(n).normal(size=1 << n)
    np.testing.assert_allclose(harsanyi(v), naive_harsanyi(v), rtol=0, atol=1e-10)


@pytest.mark.parametrize("n", [1, 5, 9, 12])
def test_faithfulness_on_random_tables(n: int) -> None:
    v = np.random.default_rng(100 + n).normal(scale=10.0, size=1 << n)
    interactions = harsanyi(v)
    assert faithfulness_residual(v, interactions) < 1e-9
    np.testing.assert_allclose(zeta(interactions), v, atol=1e-9, rtol=0)


def test_faithfulness_at_n_22() -> None:
    v = np.random.default_rng(22).random(1 << 22)
    assert faithfulness_residual(v, harsanyi(v)) < 1e-9


def test_does_not_modify_input_unless_inplace() -> None:
    v = np.arange(8, dtype=np.float64)
    before = v.copy()
    harsanyi(v)
    np.testing.assert_array_equal(v, before)
    out = harsanyi(v, inplace=True)
    assert out is v
    assert not np.array_equal(v, before)


def test_table_with_value_axis_is_transformed_per_column() -> None:
    table = np.random.default_rng(1).normal(size=(1 << 6, 3))
    out = harsanyi(table)
    for k in range(3):
        np.testing.assert_allclose(out[:, k], harsanyi(table[:, k]), atol=1e-12)


def test_torch_tensors_work_like_arrays() -> None:
    v = np.random.default_rng(2).normal(size=1 << 7)
    out = harsanyi(torch.from_numpy(v.copy()))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), harsanyi(v), atol=1e-12)


def test_integer_tables_are_promoted_to_float() -> None:
    out = harsanyi(np.array([1, 2, 5, 11]))
    assert out.dtype.kind == "f"
    np.testing.assert_array_equal(out, [1, 1, 4, 5])


@pytest.mark.parametrize("size", [0, 3, 6, 12])
def test_rejects_tables_that_are_not_a_power_of_two(size: int) -> None:
    with pytest.raises(ValueError, match="2\\*\\*n"):
        n_players_of(np.zeros(size))


@pytest.mark.parametrize("transform,adjoint", [(harsanyi, harsanyi_adjoint), (zeta, superset_sums)])
def test_adjoints_satisfy_inner_product_identity(transform: Any, adjoint: Any) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=1 << 9), rng.normal(size=1 << 9)
    assert np.dot(transform(x), y) == pytest.approx(np.dot(x, adjoint(y)), rel=1e-10)


def test_orders_are_popcounts() -> None:
    n = 10
    expected = [bin(s).count("1") for s in range(1 << n)]
    assert orders(n).tolist() == expected


def test_unanimity_game_has_one_dividend() -> None:
    n = 5
    v = np.array([float(all((s >> i) & 1 for i in (1, 3))) for s in range(1 << n)])
    interactions = harsanyi(v)
    expected = np.zeros(1 << n)
    expected[0b01010] = 1.0
    np.testing.assert_allclose(interactions, expected, atol=1e-12)
    assert list(itertools.compress(range(1 << n), interactions != 0)) == [0b01010]


def _bit_by_bit(v: np.ndarray, *, superset: bool, sign: int) -> np.ndarray:
    """The reference: a copy of ``v`` through the torch butterflies, one bit at a time."""
    from conceptlens import transforms

    plain = v.copy()
    n = n_players_of(v)
    transforms._bits(torch.from_numpy(plain), range(n), superset=superset, sign=sign)
    return plain


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Wrap ``conceptlens.transforms.<name>`` to record a 1 per call; the list it fills."""
    from conceptlens import transforms

    calls: list[int] = []
    original = getattr(transforms, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(transforms, name, counted)
    return calls


@pytest.mark.parametrize(("n", "rest"), [(20, ()), (18, (3,)), (21, (2,))])
@pytest.mark.parametrize(("superset", "sign"), [(False, -1), (True, +1)])
def test_the_blocked_transform_gives_the_same_bits(
    n: int, rest: tuple[int, ...], superset: bool, sign: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables past BLOCK_MIN_BYTES go tile by tile (two sweeps over memory instead of n);
    every element sees the same additions in the same order, so the result is bit-identical
    to the pass-by-pass transform — also with small tiles, where the tiles' edges matter."""
    from conceptlens import transforms

    monkeypatch.setattr(transforms, "BLOCK_MIN_BYTES", 1 << 21)  # whatever this CPU's cache
    v = np.random.default_rng(n).normal(size=(1 << n, *rest))
    plain = _bit_by_bit(v, superset=superset, sign=sign)
    calls = _count_calls(monkeypatch, "_blocked")
    for tile in (1 << 12, transforms.TILE_BYTES):
        monkeypatch.setattr(transforms, "TILE_BYTES", tile)
        blocked = transforms._butterfly(v.copy(), superset=superset, sign=sign)
        assert np.array_equal(blocked, plain)
    assert len(calls) == 2  # the tables were transformed tile by tile


def test_tables_that_fit_a_quarter_of_the_largest_cache_go_pass_by_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocking pays only for tables that leave the cache: on a 32 MiB L3 the tiles were
    1.3× slower than the plain passes at 4–8 MiB (the threshold was a fixed 2 MiB), so it is
    now a quarter of the largest data cache that Linux reports, 2 MiB where none is known."""
    from conceptlens import transforms

    for index, (kind, size) in enumerate(
        [("Data", "48K"), ("Instruction", "64M"), ("Unified", "1024K"), ("Unified", "32768K")]
    ):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "type").write_text(kind + "\n")
        (tmp_path / f"index{index}" / "size").write_text(size + "\n")
    assert transforms.largest_cache_bytes(tmp_path) == 32 << 20  # not the instruction cache
    assert transforms.largest_cache_bytes(tmp_path / "missing") is None
    odd = tmp_path / "odd"
    for index, raw in enumerate([b"2\xc2\xb2K", b"\xff\xfe", b"12KK", b"", b"4M"]):
        (odd / f"index{index}").mkdir(parents=True)
        (odd / f"index{index}" / "type").write_text("Unified")
        (odd / f"index{index}" / "size").write_bytes(raw)
    assert transforms.largest_cache_bytes(odd) == 4 << 20  # the odd ones are skipped
    (odd / "index1" / "type").write_bytes(b"\xff")
    assert transforms.largest_cache_bytes(odd) == 4 << 20
    assert transforms.block_min_bytes(32 << 20) == 8 << 20
    assert transforms.block_min_bytes(4 << 20) == transforms.block_min_bytes(None) == 1 << 21
    assert transforms.block_min_bytes(512 << 20) == transforms.BLOCK_MIN_CAP == 16 << 20

    monkeypatch.setattr(transforms, "BLOCK_MIN_BYTES", 8 << 20)
    calls = _count_calls(monkeypatch, "_blocked")
    for n, blocked in ((20, 0), (21, 1)):  # 8 MiB stays in cache; 16 MiB goes tile by tile
        v = np.random.default_rng(n).normal(size=1 << n)
        assert np.array_equal(harsanyi(v), _bit_by_bit(v, superset=False, sign=-1))
        assert len(calls) == blocked


@pytest.mark.parametrize(("n", "rest"), [(1, ()), (6, ()), (12, ()), (13, ()), (9, (10,))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("superset", "sign"), [(False, -1), (False, +1), (True, -1), (True, +1)])
def test_small_tables_take_numpy_kernels_with_the_same_bits(
    n: int, rest: tuple[int, ...], dtype: Any, superset: bool, sign: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Tables up to NUMPY_MAX_BYTES are transformed by NumPy's kernels (less call overhead
    per bit than torch's views); the result is bit-identical to the torch butterflies."""
    from conceptlens import transforms

    v = np.random.default_rng(n).normal(size=(1 << n, *rest)).astype(dtype)
    assert v.nbytes <= transforms.NUMPY_MAX_BYTES
    plain = _bit_by_bit(v, superset=superset, sign=sign)
    torch_calls = _count_calls(monkeypatch, "_bits")
    small = transforms._butterfly(v.copy(), superset=superset, sign=sign)
    assert np.array_equal(small, plain)
    assert small.dtype == dtype
    assert not torch_calls  # NumPy did it


@pytest.mark.parametrize(("n", "rest"), [(16, ()), (18, ()), (12, (10,))])  # 0.5–2 MiB
def test_without_torch_numpy_kernels_take_tables_of_any_size_with_the_same_bits(
    n: int, rest: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that has not imported torch (an ONNX analysis) transforms large tables
    with NumPy's kernels rather than importing torch for them: the same bits."""
    import sys

    from conceptlens import transforms

    v = np.random.default_rng(n).normal(size=(1 << n, *rest))
    assert v.nbytes > transforms.NUMPY_MAX_BYTES
    with_torch = harsanyi(v)
    torch_calls = _count_calls(monkeypatch, "_bits")
    monkeypatch.delitem(sys.modules, "torch")
    without = harsanyi(v)
    assert np.array_equal(without, with_torch)
    assert not torch_calls  # NumPy did it
    assert "torch" not in sys.modules


@pytest.mark.parametrize("n", [6, 17])  # 512 B, the NumPy kernels' size; 1 MiB, torch's
def test_a_read_only_table_transforms_in_place_at_every_size(n: int) -> None:
    """Tables the NumPy kernels cannot write into keep the torch path, as before they came:
    the first version sent a read-only table of ≤ 64 KiB to NumPy, which raised, while a
    larger one went through torch (which warns, once per process, and writes)."""
    v = np.random.default_rng(n).normal(size=1 << n)
    expected = harsanyi(v)
    v.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = harsanyi(v, inplace=True)
    assert np.array_equal(out, expected)


def test_a_strided_view_is_transformed_in_place() -> None:
    """``inplace=True`` on a strided view (a column of a wider table) writes through the
    view, whichever kernels transform it."""
    v = np.random.default_rng(3).normal(size=(1 << 8, 2))
    column = v[:, 1]
    expected = naive_harsanyi(column.copy())
    out = harsanyi(column, inplace=True)
    assert out is column
    np.testing.assert_allclose(v[:, 1], expected, atol=1e-12)


def test_harsanyi_checked_returns_the_same_bits_and_their_residual() -> None:
    v = np.random.default_rng(7).normal(size=1 << 18)
    table, residual = harsanyi_checked(v)
    assert np.array_equal(table, harsanyi(v))
    assert residual == faithfulness_residual(v, table)
    assert 0 < residual < 1e-10  # round-off of 18 butterflies, but not nothing


def test_max_abs_difference_spans_and_propagates_nan() -> None:
    a = np.zeros(3 * SPAN)
    b = np.zeros(3 * SPAN)
    b[2 * SPAN + 5] = -4.0
    assert max_abs_difference(a, b) == 4.0
    b[SPAN + 1] = np.nan
    assert np.isnan(max_abs_difference(a, b))


def test_order_spans_cover_the_orders() -> None:
    for n in (3, 17, 18):
        spans = list(order_spans(n))
        assert [(a, b) for a, b, _ in spans] == [
            (a, min(a + SPAN, 1 << n)) for a in range(0, 1 << n, SPAN)
        ]
        assert np.array_equal(np.concatenate([o for _, _, o in spans]), orders(n))


@pytest.mark.parametrize("span", [1, 7, 64, 1 << 10])
def test_the_in_place_check_gives_the_bits_and_residual_of_the_two_table_one(span: int) -> None:
    v = np.random.default_rng(3).normal(size=1 << 10)
    expected, residual = harsanyi_checked(v)
    table = v.copy()
    assert harsanyi_checked_in_place(table, lambda a, b: v[a:b], span) == residual
    assert np.array_equal(table, expected)
