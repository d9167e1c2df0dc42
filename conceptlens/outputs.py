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
    z = np.asarray(logits, dtype=np.float64)
    if z.shape[-1] == 1:
        z = np.concatenate([np.zeros_like(z), z], axis=-1)
    classes = z.shape[-1]
    if not 0 <= target < classes:
        raise ValueError(f"target class {target} does not exist: the model has {classes} classes")
    zy = z[..., target]
    if kind == "logit":
        return zy
    log_all = _logsumexp(z)
    if kind == "log-prob":
        return zy - log_all
    if kind == "prob":
        return np.exp(zy - log_all)
    if kind == "log-odds":
        others = z.copy()
        others[..., target] = -np.inf
        return zy - _logsumexp(others)
    raise ValueError(f"unknown output {kind!r}; choose one of {', '.join(OUTPUTS)}")


def predicted_class(logits: FloatArray) -> int:
    """The arg-max class of one logit row (a single logit: 1 if positive)."""
    row = np.asarray(logits, dtype=np.float64).reshape(-1)
    return int(row[0] > 0) if row.size == 1 else int(np.argmax(row))


def _logsumexp(z: FloatArray) -> FloatArray:
    top = z.max(axis=-1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=-1, keepdims=True)))[..., 0]
