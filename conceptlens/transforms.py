"""Harsanyi (AND) interactions by the fast Möbius transform — SCIENCE.md §1.

``I(S) = Σ_{T⊆S} (-1)^{|S|-|T|} v(T)``; faithfulness ``v(S) = Σ_{T⊆S} I(T)``.

All transforms here are in-place butterflies over the ``n`` bit axes of a table of length
``2**n``: O(n·2^n) time, O(2^n) memory, never a dense ``2^n × 2^n`` matrix. They work on
NumPy arrays and on torch tensors alike (same slicing syntax), with trailing value axes
(``[2**n, k]``) carried along.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from conceptlens.aliases import FloatArray

#: A table over subsets, as a NumPy array or a torch tensor; transforms return the same kind.
A = TypeVar("A", npt.NDArray[Any], torch.Tensor)


def n_players_of(table: Any) -> int:
    """Number of players ``n`` of a table whose first axis has length ``2**n``."""
    size = int(table.shape[0])
    n = size.bit_length() - 1
    if size < 1 or (1 << n) != size:
        raise ValueError(f"a subset table needs a first axis of length 2**n, got {size}")
    return n


def _butterfly(a: A, *, superset: bool, sign: int) -> A:
    """In place: for each player axis, combine the two halves of the table.

    subset (``superset=False``):   ``a[S ∪ {i}] += sign · a[S]``   (i ∉ S)
    superset (``superset=True``):  ``a[S] += sign · a[S ∪ {i}]``   (i ∉ S)

    NumPy arrays are worked on through a zero-copy torch view: torch's in-place kernels
    are several times faster than NumPy's on these strided halves and use every core.
    """
    n = n_players_of(a)
    t: torch.Tensor = torch.from_numpy(a) if isinstance(a, np.ndarray) else a
    rest: tuple[int, ...] = tuple(t.shape[1:])
    for i in range(n):
        view = t.view((1 << (n - 1 - i), 2, 1 << i, *rest))
        hi, lo = view[:, 1], view[:, 0]
        dst, src = (lo, hi) if superset else (hi, lo)
        dst.add_(src, alpha=sign)
    return a


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
    """``max_S |v(S) − Σ_{T⊆S} I(T)|`` — zero up to float rounding for exact dividends."""
    rebuilt = zeta(interactions)
    return float(np.max(np.abs(_to_numpy(rebuilt) - _to_numpy(v)))) if len(v) else 0.0


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
    return a.clone(memory_format=torch.contiguous_format)


def _to_numpy(a: Any) -> FloatArray:
    if isinstance(a, np.ndarray):
        return a
    return a.detach().cpu().numpy()
