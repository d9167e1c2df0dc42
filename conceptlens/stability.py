"""Stability of concepts: consistency, instability, adversarial sensitivity — SCIENCE.md §6.

All statistics are per subset ``S`` (a bitmask-indexed table of length ``2**n``) and are
shown averaged per order with :func:`per_order`.

- consistency ``β(S) = E_c[ |E_{x∈c} I(S|x)| / Std_{x∈c} I(S|x) ]`` (:func:`consistency`);
- Gaussian instability ``κ(S) = E_x E_ε |I(S|x+ε) − I(S|x)| / E_x |I(S|x)|``
  (:func:`instability`, noise from :func:`gaussian_noise`);
- adversarial sensitivity ``α(S) = E_x |I(S|x+δ) − I(S|x)| / E_x |I(S|x)|`` with ``δ`` from
  :func:`pgd_attack` (:func:`adversarial_sensitivity`).

Edge cases (choices made here, SCIENCE.md being silent):

- *No interaction.* A set whose interaction is zero (within float rounding, see below) in
  every image concerned has no concept to be stable or unstable: β and κ/α are **NaN**
  there ("undefined"), never ``0/0`` garbage. A linear model, whose tables are non-zero
  only at ∅ and order 1, thus gets NaN at every order ≥ 2.
- *Zero spread.* Where a class's images share one non-zero interaction exactly
  (``Std = 0``, ``mean ≠ 0``) β_c is **+inf** (perfectly consistent), not a cap.
- :func:`per_order` counts only finite values (NaN *and* ±inf are undefined) and reports
  how many sets were defined per order.
- *Rounding.* Tables computed by the Möbius transform carry rounding noise of about
  ``n²·eps·max|I|`` where the exact interaction is 0. A value is taken as zero when its
  magnitude is at most ``rtol · max|table|`` (the largest magnitude in the whole input,
  ∅ included), ``rtol`` defaulting to ``4·(n+1)²·eps`` of the tables' dtype (about
  ``1e-13`` in float64 and ``6e-5`` in float32 for ``n = 10``). Pass ``rtol=0`` for exact
  comparisons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from conceptlens.aliases import FloatArray, IntArray
from conceptlens.transforms import n_players_of, orders

Model = torch.nn.Module | Callable[[torch.Tensor], torch.Tensor]

#: Tag of the noise stream in :func:`gaussian_noise` (keeps it apart from other seeded draws).
_NOISE_STREAM = 0x6A55


@dataclass(frozen=True)
class OrderStat:
    """A per-set statistic summarised per order ``s = 1…n`` (the empty set excluded)."""

    orders: IntArray
    """``[n]``: 1, 2, …, n."""
    mean: FloatArray
    """``[n]``: mean over the sets of that order with a finite value; NaN where none."""
    sd: FloatArray
    """``[n]``: their population SD (ddof = 0); NaN where none is defined."""
    defined: IntArray
    """``[n]``: how many sets of that order had a finite value."""


def per_order(values: FloatArray, n: int) -> OrderStat:
    """Mean and SD of a per-set statistic ``[2**n]`` over the sets of each order ``1…n``.

    NaN and ±inf both count as undefined and are left out; the SD is the population one
    (ddof = 0, so an order with one defined set has SD 0).

    Example:
        >>> st = per_order(np.array([9.0, 1.0, 3.0, np.nan]), 2)
        >>> st.orders.tolist(), st.mean.tolist(), st.defined.tolist()
        ([1, 2], [2.0, nan], [2, 0])
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (1 << n,):
        raise ValueError(f"expected a table of shape [{1 << n}], got {list(values.shape)}")
    size = orders(n)
    mean = np.full(n, np.nan)
    sd = np.full(n, np.nan)
    defined = np.zeros(n, dtype=np.int64)
    for s in range(1, n + 1):
        row = values[size == s]
        row = row[np.isfinite(row)]
        defined[s - 1] = row.size
        if row.size:
            mean[s - 1] = row.mean()
            sd[s - 1] = row.std()
    return OrderStat(orders=np.arange(1, n + 1, dtype=np.int64), mean=mean, sd=sd, defined=defined)


def default_rtol(dtype: np.dtype | type, n: int) -> float:
    """The default relative zero tolerance ``4·(n+1)²·eps(dtype)`` (module docstring)."""
    eps = float(np.finfo(np.dtype(dtype) if np.issubdtype(dtype, np.floating) else np.float64).eps)
    return 4.0 * (n + 1) ** 2 * eps


def consistency(
    tables: FloatArray, labels: Sequence[int] | IntArray, *, rtol: float | None = None
) -> tuple[FloatArray, dict[int, FloatArray]]:
    """Consistency ``β(S)`` over classes, and per class.

    ``tables [X, 2**n]`` are Harsanyi tables ``I(S|x)`` of ``X`` images, ``labels [X]`` their
    classes. Per class ``c`` with at least two images,
    ``β_c(S) = |mean_{x∈c} I(S|x)| / sd_{x∈c} I(S|x)`` (sample SD, ddof = 1):

    - NaN where ``max_{x∈c} |I(S|x)| ≤ rtol·max|tables|`` (no interaction in that class);
    - +inf where the SD is zero within rounding (``sd ≤ 64·eps·max_{x∈c}|I(S|x)|``) and the
      interaction is not.

    ``β`` averages ``β_c`` over the classes where it is not NaN (NaN if none; an inf among
    them makes the average inf). Classes with fewer than two images have no SD and are left
    out of both returns. Returns ``(β [2**n], {class: β_c [2**n]})``, float64.

    Example:
        >>> t = np.array([[0.0, 1.0], [0.0, 3.0], [0.0, 5.0], [0.0, 5.0]])
        >>> beta, by_class = consistency(t, [0, 0, 1, 1])
        >>> by_class[0].round(4).tolist(), by_class[1].tolist(), beta.tolist()
        ([nan, 1.4142], [nan, inf], [nan, inf])
    """
    tables = np.asarray(tables)
    labels_arr = np.asarray(labels)
    if tables.ndim != 2 or labels_arr.shape != (tables.shape[0],):
        raise ValueError("expected tables [X, 2**n] and labels [X]")
    n = n_players_of(tables.T)
    dtype = tables.dtype if np.issubdtype(tables.dtype, np.floating) else np.float64
    eps = float(np.finfo(dtype).eps)
    t64 = tables.astype(np.float64)
    zero = (default_rtol(dtype, n) if rtol is None else rtol) * _max_abs(t64)
    by_class: dict[int, FloatArray] = {}
    for c in np.unique(labels_arr):
        rows = t64[labels_arr == c]
        if rows.shape[0] < 2:
            continue
        mean = rows.mean(axis=0)
        sd = rows.std(axis=0, ddof=1)
        peak = np.abs(rows).max(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.abs(mean) / sd
        beta[sd <= 64 * eps * peak] = np.inf
        beta[peak <= zero] = np.nan
        by_class[int(c)] = beta
    if not by_class:
        return np.full(1 << n, np.nan), by_class
    stacked = np.stack(list(by_class.values()))
    defined = ~np.isnan(stacked)
    count = defined.sum(axis=0)
    with np.errstate(invalid="ignore"):
        total = np.where(defined, stacked, 0.0).sum(axis=0)
        averaged = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return averaged, by_class


def instability(clean: FloatArray, noisy: FloatArray, *, rtol: float | None = None) -> FloatArray:
    """Instability ``κ(S) = E_x E_ε |I(S|x+ε) − I(S|x)| / E_x |I(S|x)|``, ``[2**n]`` float64.

    ``clean [X, 2**n]`` are the tables of the images, ``noisy [X, D, 2**n]`` those of ``D``
    perturbed copies of each. NaN where ``E_x |I(S|x)| ≤ rtol·max|clean|`` (no interaction
    in any image: undefined, module docstring). With ``D = 1`` and adversarial copies this
    is the adversarial sensitivity α (:func:`adversarial_sensitivity`).

    Example:
        >>> clean = np.array([[1.0, 2.0, 0.0, 0.0]])
        >>> noisy = np.array([[[1.0, 3.0, 0.5, 0.0], [1.0, 1.0, 0.0, 0.0]]])
        >>> instability(clean, noisy).tolist()
        [0.0, 0.5, nan, nan]
    """
    clean = np.asarray(clean)
    noisy = np.asarray(noisy)
    if clean.ndim != 2 or noisy.ndim != 3 or noisy.shape[::2] != clean.shape:
        raise ValueError("expected clean [X, 2**n] and noisy [X, D, 2**n]")
    n = n_players_of(clean.T)
    dtype = clean.dtype if np.issubdtype(clean.dtype, np.floating) else np.float64
    c64 = clean.astype(np.float64)
    zero = (default_rtol(dtype, n) if rtol is None else rtol) * _max_abs(c64)
    numerator = np.abs(noisy.astype(np.float64) - c64[:, None, :]).mean(axis=(0, 1))
    denominator = np.abs(c64).mean(axis=0)
    out = np.full(1 << n, np.nan)
    ok = denominator > zero
    out[ok] = numerator[ok] / denominator[ok]
    return out


def adversarial_sensitivity(
    clean: FloatArray, attacked: FloatArray, *, rtol: float | None = None
) -> FloatArray:
    """Adversarial sensitivity ``α(S) = E_x |I(S|x+δ) − I(S|x)| / E_x |I(S|x)|``, ``[2**n]``.

    ``clean`` and ``attacked`` are ``[X, 2**n]``; the same as :func:`instability` with one
    perturbed copy per image (NaN where there is no interaction).
    """
    attacked = np.asarray(attacked)
    return instability(clean, attacked[:, None, :], rtol=rtol)


def pgd_attack(
    model: Model,
    x: torch.Tensor,
    target: int,
    *,
    epsilon: float,
    steps: int = 10,
    step_size: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """L∞ PGD perturbation ``δ`` (same shape as ``x [C, H, W]``) that raises the model's
    cross-entropy loss for class ``target``.

    Random start uniform in ``[−ε, ε]`` (a ``torch.Generator`` seeded with ``seed``), then
    ``steps`` sign-gradient ascent steps of ``step_size`` (default ``2.5·ε/steps``), each
    projected back into the ball. ``model`` maps ``[B, C, H, W]`` to logits ``[B, K]`` (one
    logit is read as the log-odds of class 1 against class 0). Gradients are taken w.r.t.
    ``δ`` only (``torch.autograd.grad``), so the model's parameters accumulate nothing; the
    model's train/eval mode is left as it is. ``x + δ`` is not clipped to a pixel range
    (masking works in the model's input space, after normalisation). Returns ``δ`` detached,
    in ``x``'s dtype and device.
    """
    if epsilon < 0 or steps < 0:
        raise ValueError("epsilon and steps must not be negative")
    if step_size is None:
        step_size = 2.5 * epsilon / max(steps, 1)
    generator = torch.Generator().manual_seed(int(seed))
    x = x.detach()
    start = (torch.rand(x.shape, generator=generator, dtype=torch.float64) * 2 - 1) * epsilon
    delta = start.to(device=x.device, dtype=x.dtype)
    label = torch.tensor([int(target)], device=x.device)
    with torch.enable_grad():
        for _ in range(steps):
            delta.requires_grad_(True)
            logits = model((x + delta)[None])
            if logits.shape[-1] == 1:
                logits = torch.cat([torch.zeros_like(logits), logits], dim=-1)
            loss = F.cross_entropy(logits, label)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + step_size * grad.sign()).clamp(-epsilon, epsilon)
    return delta.detach()


def gaussian_noise(shape: Sequence[int], sigma: float, draws: int, seed: int) -> np.ndarray:
    """``draws`` reproducible Gaussian perturbations ``ε ~ N(0, σ²I)``: float32 ``[draws, *shape]``.

    Drawn from ``np.random.default_rng([seed, 0x6A55])``: the same arguments give the same
    noise; draw ``k`` does not depend on how many draws are asked for.

    Example:
        >>> a = gaussian_noise((2, 3), 0.1, 4, seed=7)
        >>> a.shape, a.dtype, bool((a == gaussian_noise((2, 3), 0.1, 4, seed=7)).all())
        ((4, 2, 3), dtype('float32'), True)
    """
    if sigma < 0 or draws < 0:
        raise ValueError("sigma and draws must not be negative")
    rng = np.random.default_rng([int(seed), _NOISE_STREAM])
    noise = rng.standard_normal((int(draws), *(int(d) for d in shape)), dtype=np.float64)
    return (noise * sigma).astype(np.float32)


def _max_abs(a: FloatArray) -> float:
    finite = np.abs(a[np.isfinite(a)])
    return float(finite.max()) if finite.size else 0.0
