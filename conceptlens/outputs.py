"""Output functions ``v`` applied to a stored logit table — SCIENCE.md, Conventions.

The logit table ``[2**n, classes]`` is the artefact; the scalar game ``v(S)`` is computed
from it afterwards, so changing target or output type costs no forward pass.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from conceptlens.aliases import FloatArray

OutputKind = Literal["log-odds", "logit", "prob", "log-prob"]
OUTPUTS: tuple[str, ...] = ("log-odds", "logit", "prob", "log-prob")


def output_values(logits: FloatArray, target: int, kind: OutputKind = "log-odds") -> FloatArray:
    """``v`` for class ``target`` from logits ``[..., classes]``, as float64 ``[...]``.

    ``log-odds``: ``log(p_y/(1−p_y)) = z_y − logsumexp(z_{k≠y})`` (stable form);
    ``logit``: ``z_y``; ``prob``: ``p_y``; ``log-prob``: ``log p_y``. A single-logit
    (binary) model reads its logit as the log-odds of class 1 against class 0.

    Example:
        >>> import numpy as np
        >>> z = np.array([[2.0, 0.0, 0.0]])
        >>> output_values(z, 0).round(4)        # log(e²/(1+1))
        array([1.3069])
    """
    table = np.asarray(logits)
    single = table.shape[-1] == 1
    classes = 2 if single else table.shape[-1]
    if not 0 <= target < classes:
        raise ValueError(f"target class {target} does not exist: the model has {classes} classes")
    if kind not in OUTPUTS:
        raise ValueError(f"unknown output {kind!r}; choose one of {', '.join(OUTPUTS)}")
    shape = table.shape[:-1]
    rows = table.reshape(-1, table.shape[-1])  # a view when the table is contiguous
    out = np.empty(rows.shape[0], dtype=np.float64)
    step = chunk_rows(classes)
    for start in range(0, rows.shape[0], step):
        stop = min(start + step, rows.shape[0])
        out[start:stop] = _chunk_values(rows[start:stop], target, kind, single)
    return out.reshape(shape)


def chunk_rows(classes: int) -> int:
    """Rows per chunk: about ``CHUNK_VALUES`` float64 values (cache-sized)."""
    return max(1, CHUNK_VALUES // max(classes, 1))


CHUNK_VALUES = 1 << 16
"""float64 values per chunk of :func:`output_values`: 512 KiB a temporary (timings were flat
from 2^15 to 2^19 values at n = 20, 10 classes)."""


def _chunk_values(rows: FloatArray, target: int, kind: str, single: bool) -> FloatArray:
    """The formula of :func:`output_values` on rows ``[b, classes]``, in float64."""
    z = np.asarray(rows, dtype=np.float64)
    if single:
        z = np.concatenate([np.zeros_like(z), z], axis=-1)
    zy = z[:, target]
    if kind == "logit":
        return zy
    if kind == "log-odds":
        zy = zy.copy()
        others = z if z is not rows else z.copy()  # z may already be a private float64 copy
        others[:, target] = -np.inf
        return zy - _logsumexp(others)
    log_all = _logsumexp(z)
    if kind == "log-prob":
        return zy - log_all
    return np.exp(zy - log_all)  # prob


def predicted_class(logits: FloatArray) -> int:
    """The arg-max class of one logit row (a single logit: 1 if positive)."""
    row = np.asarray(logits, dtype=np.float64).reshape(-1)
    return int(row[0] > 0) if row.size == 1 else int(np.argmax(row))


def _logsumexp(z: FloatArray) -> FloatArray:
    top = z.max(axis=-1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=-1, keepdims=True)))[..., 0]
