"""Harsanyi (AND) interactions by the fast Möbius transform — SCIENCE.md §1.

``I(S) = Σ_{T⊆S} (-1)^{|S|-|T|} v(T)``; faithfulness ``v(S) = Σ_{T⊆S} I(T)``.

All transforms here are in-place butterflies over the ``n`` bit axes of a table of length
``2**n``: O(n·2^n) time, O(2^n) memory, never a dense ``2^n × 2^n`` matrix. They work on
NumPy arrays and on torch tensors alike (same slicing syntax), with trailing value axes
(``[2**n, k]``) carried along.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from conceptlens.aliases import FloatArray

if TYPE_CHECKING:
    import torch

#: A table over subsets, as a NumPy array or a torch tensor; transforms return the same kind.
A = TypeVar("A", npt.NDArray[Any], "torch.Tensor")


def n_players_of(table: Any) -> int:
    """Number of players ``n`` of a table whose first axis has length ``2**n``."""
    size = int(table.shape[0])
    n = size.bit_length() - 1
    if size < 1 or (1 << n) != size:
        raise ValueError(f"a subset table needs a first axis of length 2**n, got {size}")
    return n


CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


def largest_cache_bytes(root: Path = CACHE_DIR) -> int | None:
    """Size in bytes of the CPU's largest data cache as Linux describes it (``index*/size``
    under ``root``, e.g. ``32768K``), or ``None`` where that is not known (other systems,
    unreadable or odd files)."""
    sizes = []
    for index in root.glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):  # unreadable, or not text
            continue
        size = re.fullmatch(r"(\d+)([KMG]?)", text, flags=re.ASCII | re.IGNORECASE)
        if size is not None:
            scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[size[2].upper()]
            sizes.append(int(size[1]) * scale)
    return max(sizes, default=None)


#: The largest threshold :func:`block_min_bytes` gives: blocking was never measured slower
#: than the plain passes from 16 MiB on, whatever a CPU's cache claims.
BLOCK_MIN_CAP = 16 << 20


def block_min_bytes(cache: int | None) -> int:
    """Tables up to a quarter of the largest cache (at most :data:`BLOCK_MIN_CAP`) are
    transformed pass by pass: while the table stays in cache a sweep costs little, and the
    tiles' extra calls cost more than they save (one thread, 32 MiB L3: pass by pass 1.3×
    faster at 4–8 MiB, the tiles 1.1× faster at 16 MiB; ``bench/README.md``). Unknown
    cache: 2 MiB."""
    return min(BLOCK_MIN_CAP, max(1 << 21, (cache or 0) // 4))


#: Tables at or below this many bytes are transformed pass by pass (they fit in cache).
BLOCK_MIN_BYTES = block_min_bytes(largest_cache_bytes())
#: NumPy tables at or below this many bytes are transformed by NumPy's own kernels: each
#: bit costs a few microseconds of call overhead there, against 20–30 µs through torch's
#: views (n = 6–12: 2–3× faster; equal at 128 KiB, n = 14; torch faster above).
NUMPY_MAX_BYTES = 1 << 16
#: Bytes of one tile the blocked transform keeps in cache while it applies several bits.
TILE_BYTES = 1 << 20
#: Bits applied in phase 1 of the blocked transform (rows of 2^LOW_BITS values).
LOW_BITS = 15


def _butterfly(a: A, *, superset: bool, sign: int) -> A:
    """In place: for each player axis, combine the two halves of the table.

    subset (``superset=False``):   ``a[S ∪ {i}] += sign · a[S]``   (i ∉ S)
    superset (``superset=True``):  ``a[S] += sign · a[S ∪ {i}]``   (i ∉ S)

    Small float NumPy tables (up to :data:`NUMPY_MAX_BYTES`) are combined by NumPy's own
    kernels (:func:`_numpy_bits`), where call overhead dominates; larger ones, and any
    other NumPy array, through a zero-copy torch view: torch's in-place kernels are several
    times faster than NumPy's on large strided halves. In a process that has not imported
    torch (``conceptlens analyze`` of an ONNX model), NumPy's kernels take float tables of
    any size: importing torch (1.6–2 s) costs more than their slower passes (tens of
    milliseconds at n = 20). On the torch path, a table larger than
    :data:`BLOCK_MIN_BYTES` is transformed tile by tile (:func:`_blocked`): the same
    additions in the same order, so the same bits, with about two sweeps over memory
    instead of ``n``.
    """
    n = n_players_of(a)
    if isinstance(a, np.ndarray) and _numpy_sized(a):
        _numpy_bits(a, n, superset=superset, sign=sign)
        return a
    import torch

    t: torch.Tensor = torch.from_numpy(a) if isinstance(a, np.ndarray) else a
    big = t.numel() * t.element_size() > BLOCK_MIN_BYTES
    if big and t.device.type == "cpu" and t.is_contiguous() and n >= 4:
        _blocked(t, n, superset=superset, sign=sign)
    else:
        _bits(t, range(n), superset=superset, sign=sign)
    return a


def _bits(t: torch.Tensor, bits: range, *, superset: bool, sign: int, axis: int = 0) -> None:
    """Apply the butterflies of ``bits`` (in order) along ``axis`` of ``t`` (length 2^k)."""
    k = int(t.shape[axis]).bit_length() - 1
    for i in bits:
        view = t.unflatten(axis, (1 << (k - 1 - i), 2, 1 << i))
        hi, lo = view.select(axis + 1, 1), view.select(axis + 1, 0)
        dst, src = (lo, hi) if superset else (hi, lo)
        dst.add_(src, alpha=sign)


def _numpy_sized(a: npt.NDArray[Any]) -> bool:
    """Whether :func:`_numpy_bits` takes the table: small (any size while torch is not
    imported), C-contiguous, writable, native float32 or float64 (what :func:`harsanyi`
    and its kin copy into); anything else keeps the torch path, which raises or converts
    as it always has."""
    return (
        (a.nbytes <= NUMPY_MAX_BYTES or "torch" not in sys.modules)
        and a.flags.c_contiguous
        and a.flags.writeable
        and a.dtype in (np.float32, np.float64)  # native only: equality includes byte order
    )


def _numpy_bits(a: npt.NDArray[Any], n: int, *, superset: bool, sign: int) -> None:
    """:func:`_bits` over all ``n`` bits of a small C-contiguous NumPy table (so that every
    reshape is a view), with NumPy's kernels: the same additions (``dst + (−1)·src`` is
    ``dst − src`` exactly), so the same bits."""
    combine = np.add if sign > 0 else np.subtract
    rest = a.shape[1:]
    for i in range(n):
        view = a.reshape(1 << (n - 1 - i), 2, 1 << i, *rest)
        hi, lo = view[:, 1], view[:, 0]
        dst, src = (lo, hi) if superset else (hi, lo)
        combine(dst, src, out=dst)


def _blocked(t: torch.Tensor, n: int, *, superset: bool, sign: int) -> None:
    """The butterflies of :func:`_butterfly` in two cache-sized phases.

    The table is a matrix ``[2^(n-b) rows (high bits), 2^b columns (low bits)]``. Phase 1
    takes a few rows at a time and applies bits ``0 … b−1`` along them; phase 2 takes a
    few columns at a time and applies bits ``b … n−1`` down them. Each element sees the
    same additions in the same order as bit by bit over the whole table (bits commute, and
    each phase keeps its bits' order), while each tile is read from memory once per phase.
    """
    rest = tuple(t.shape[1:])
    item = t.element_size() * max(1, int(np.prod(rest)) if rest else 1)
    b = min(n - 2, LOW_BITS)
    m = t.view(1 << (n - b), 1 << b, *rest)
    rows = max(1, TILE_BYTES // (item << b))
    for r in range(0, 1 << (n - b), rows):
        _bits(m[r : r + rows], range(b), superset=superset, sign=sign, axis=1)
    cols = max(1, TILE_BYTES // (item << (n - b)))
    for c in range(0, 1 << b, cols):
        _bits(m[:, c : c + cols], range(n - b), superset=superset, sign=sign, axis=0)


def harsanyi(v: A, *, inplace: bool = False) -> A:
    """Harsanyi dividends of a game table: the Möbius transform (SCIENCE.md §1).

    ``v`` has shape ``[2**n]`` or ``[2**n, k]`` (row index = bitmask); the result has the
    same shape, ``I[S] = Σ_{T⊆S} (-1)^{|S|-|T|} v[T]``. Cost O(n·2^n), memory O(2^n).

    Example:
        >>> import numpy as np
        >>> v = np.array([1.0, 2.0, 5.0, 11.0])     # v(∅), v({0}), v({1}), v({0,1})
        >>> harsanyi(v)
        array([1., 1., 4., 5.])
    """
    a = v if inplace else _copy(v)
    return _butterfly(a, superset=False, sign=-1)


def zeta(interactions: A, *, inplace: bool = False) -> A:
    """Inverse of :func:`harsanyi`: ``v[S] = Σ_{T⊆S} I[T]``. O(n·2^n).

    Example:
        >>> import numpy as np
        >>> zeta(np.array([1.0, 1.0, 4.0, 5.0]))
        array([ 1.,  2.,  5., 11.])
    """
    a = interactions if inplace else _copy(interactions)
    return _butterfly(a, superset=False, sign=+1)


def harsanyi_adjoint(g: A, *, inplace: bool = False) -> A:
    """Transpose of the Möbius matrix applied to ``g``: ``(Mᵀg)[T] = Σ_{S⊇T} (-1)^{|S|-|T|} g[S]``.

    Needed for gradients through :func:`harsanyi` (the AND-OR optimiser). O(n·2^n).
    """
    a = g if inplace else _copy(g)
    return _butterfly(a, superset=True, sign=-1)


def superset_sums(g: A, *, inplace: bool = False) -> A:
    """Transpose of the zeta transform: ``(Zᵀg)[T] = Σ_{S⊇T} g[S]``. O(n·2^n)."""
    a = g if inplace else _copy(g)
    return _butterfly(a, superset=True, sign=+1)


def faithfulness_residual(v: A, interactions: A) -> float:
    """``max_S |v(S) − Σ_{T⊆S} I(T)|`` — zero up to float rounding for exact dividends.

    Memory: one table (the rebuilt ``v``) besides the two given.
    """
    if not len(v):
        return 0.0
    return max_abs_difference(_to_numpy(zeta(interactions)), _to_numpy(v))


def harsanyi_checked(v: FloatArray) -> tuple[FloatArray, float]:
    """``(harsanyi(v), faithfulness_residual(v, harsanyi(v)))`` in one table besides ``v``.

    The dividends are computed, rebuilt into ``v`` in place (zeta) and compared with ``v``
    span by span; then the table is refilled from ``v`` and transformed again. The
    transform is deterministic, so the second pass gives the same bits as the first: the
    residual belongs to the returned table. Three transforms instead of two (O(n·2^n) more,
    about 0.15 s at n = 24), for one table of ``2^n`` float64 less at the peak (issue 14).

    Example:
        >>> table, residual = harsanyi_checked(np.array([1.0, 2.0, 5.0, 11.0]))
        >>> table.tolist(), residual
        ([1.0, 1.0, 4.0, 5.0], 0.0)
    """
    values = np.asarray(v)
    table = _copy(values)
    harsanyi(table, inplace=True)
    zeta(table, inplace=True)
    residual = max_abs_difference(table, values) if values.size else 0.0
    np.copyto(table, values)
    return harsanyi(table, inplace=True), residual


def harsanyi_checked_in_place(
    table: FloatArray, values_of: Callable[[int, int], FloatArray], span: int
) -> float:
    """:func:`harsanyi_checked` with no table besides ``table``: ``table`` holds ``v`` and is
    turned into its dividends in place; returns the faithfulness residual.

    ``values_of(start, stop)`` must give ``v[start:stop]`` again, bit for bit, for ``start``
    a multiple of ``span`` (e.g. the output values of those logit rows). The dividends are
    rebuilt in place (zeta) and compared with ``values_of`` span by span, the table is
    refilled from it and transformed again: the same bits as :func:`harsanyi_checked`, at
    the cost of computing ``v`` twice more instead of holding a copy (issue 14: an n ≥ 22
    analysis's peak is then the logit table and one value table).

    Example:
        >>> import numpy as np
        >>> v = np.array([1.0, 2.0, 5.0, 11.0])
        >>> table = v.copy()
        >>> harsanyi_checked_in_place(table, lambda a, b: v[a:b], 2), table.tolist()
        (0.0, [1.0, 1.0, 4.0, 5.0])
    """
    if table.ndim != 1:
        raise ValueError("the in-place check takes a 1-D table [2**n]")
    step = max(1, span)
    spans = [(start, min(start + step, table.size)) for start in range(0, table.size, step)]
    harsanyi(table, inplace=True)
    zeta(table, inplace=True)
    worst = 0.0
    for start, stop in spans:
        difference = max_abs_difference(table[start:stop], values_of(start, stop))
        if np.isnan(difference):
            worst = difference
            break
        worst = max(worst, difference)
    for start, stop in spans:
        table[start:stop] = values_of(start, stop)
    harsanyi(table, inplace=True)
    return worst


def max_abs_difference(a: FloatArray, b: FloatArray) -> float:
    """``max |a − b|`` over two equal-shaped arrays, span by span (no full-size temporary);
    NaN if either holds a NaN."""
    flat_a, flat_b = np.ravel(a), np.ravel(b)
    worst = 0.0
    for start in range(0, flat_a.size, SPAN):
        span = float(np.abs(flat_a[start : start + SPAN] - flat_b[start : start + SPAN]).max())
        if np.isnan(span):
            return span
        worst = max(worst, span)
    return worst


SPAN_BITS = 16
SPAN = 1 << SPAN_BITS
"""Table entries per span when a whole-table reduction goes span by span (512 KiB of
float64): its temporaries stay O(span), not O(2^n)."""


def order_spans(n: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, orders of the masks start … stop−1)`` covering ``0 … 2^n``, ``SPAN``
    masks at a time (the whole table if smaller), so a reduction over ``|S|`` needs no
    ``[2^n]`` array of orders.

    Example:
        >>> [(a, b, o.tolist()) for a, b, o in order_spans(2)]
        [(0, 4, [0, 1, 1, 2])]
    """
    low = min(n, SPAN_BITS)
    base = orders(low)
    for high in range(1 << (n - low)):
        start = high << low
        yield start, start + (1 << low), base + np.uint8(high.bit_count())


def orders(n: int) -> np.ndarray:
    """``|S|`` for every bitmask ``S`` of ``n`` players, as ``uint8 [2**n]``. O(2^n).

    Example:
        >>> orders(3).tolist()
        [0, 1, 1, 2, 1, 2, 2, 3]
    """
    out = np.zeros(1 << n, dtype=np.uint8)
    for i in range(n):
        out.reshape(1 << (n - 1 - i), 2, 1 << i)[:, 1] += 1
    return out


def _copy(a: A) -> A:
    if isinstance(a, np.ndarray):
        dtype = np.result_type(a.dtype, np.float32)
        copied: npt.NDArray[Any] = np.array(a, dtype=dtype, order="C", copy=True)
        return copied
    import torch

    return a.clone(memory_format=torch.contiguous_format)


def _to_numpy(a: Any) -> FloatArray:
    if isinstance(a, np.ndarray):
        return a
    return a.detach().cpu().numpy()
