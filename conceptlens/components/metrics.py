"""Feature components of different complexity and their metrics — SCIENCE.md §7 (seed 001).

Inputs are the disentangler outputs of every order stacked as ``phis [L, N, *feature]``
(:func:`.disentangler.predict_orders`) and the target feature ``f [N, *feature]``.
Variances are those of :func:`.stats.variance` (over samples and feature entries, each
entry centred by its mean over the samples).

* components: ``c^(l_0) = Φ^(l_0)``, ``c^(l_k) = Φ^(l_k) − Φ^(l_{k−1})``, residual
  ``Δf = f − Φ^(l_max)``, so ``f = Σ_k c^(l_k) + Δf`` exactly;
* significance: ``ρ^(l) = Var[c^(l)] / Var[f]``, cumulative ``Var[Φ^(l)] / Var[f]``,
  residual share ``Var[Δf] / Var[f]`` (the shares need not sum to 1: components correlate);
* reliability: the share of ``Φ^(l)`` (and of ``c^(l)``) that survives a cycle of linear
  maps through exemplary models' outputs of the same order (:func:`reliability`);
* effectiveness and over-fitting: Shapley values of the components on the task loss when
  they replace ``f`` in the rest of the network (:func:`effects`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from conceptlens.aliases import Coalitions, FloatArray
from conceptlens.components.features import ComponentsError, FeatureFn
from conceptlens.components.shapley import shapley_from_table, shapley_values
from conceptlens.components.stats import variance

__all__ = [
    "ComponentGame",
    "Effects",
    "Reliability",
    "Significance",
    "component_parts",
    "components",
    "cycle_map",
    "effects",
    "reliability",
    "significance",
]


# --------------------------------------------------------------------------- components


def components(phis: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c [L, N, *feature], Δf [N, *feature])``: successive differences and the residual.

    Example:
        >>> phis = torch.tensor([[[1.0]], [[3.0]]])        # Φ^(0), Φ^(1) of one sample
        >>> c, residual = components(phis, torch.tensor([[4.0]]))
        >>> c.flatten().tolist(), residual.flatten().tolist()
        ([1.0, 2.0], [1.0])
    """
    if phis.dim() < 2 or phis.shape[1:] != f.shape:
        raise ComponentsError(
            f"disentangler outputs {list(phis.shape)} do not match the feature {list(f.shape)}"
        )
    c = torch.cat([phis[:1], phis[1:] - phis[:-1]])
    return c, f - phis[-1]


@dataclass
class Significance:
    """``ρ`` per order (aligned with ``orders``) and the residual share."""

    orders: tuple[int, ...]
    component: FloatArray
    """``ρ^(l) = Var[c^(l)] / Var[f]``."""
    cumulative: FloatArray
    """``Var[Φ^(l)] / Var[f]``."""
    residual: float
    """``Var[f − Φ^(l_max)] / Var[f]``."""
    feature_variance: float
    """``Var[f]``."""


def significance(phis: torch.Tensor, f: torch.Tensor, orders: Sequence[int]) -> Significance:
    """Significance of the components (SCIENCE.md §7). Cost ``O(L·N·D)``.

    Example:
        >>> f = torch.tensor([[0.0], [2.0]])
        >>> s = significance(torch.stack([0.5 * f, f]), f, orders=(0, 1))
        >>> s.component.tolist(), s.cumulative.tolist(), s.residual
        ([0.25, 0.25], [0.25, 1.0], 0.0)
    """
    c, residual = components(phis, f)
    total = variance(f)
    if total <= 0:
        raise ComponentsError("the feature is the same for every image; nothing to disentangle")
    return Significance(
        orders=tuple(orders),
        component=np.array([variance(part) / total for part in c]),
        cumulative=np.array([variance(phi) / total for phi in phis]),
        residual=variance(residual) / total,
        feature_variance=total,
    )


# --------------------------------------------------------------------------- reliability


@dataclass
class Reliability:
    """Share of each order's output (``cumulative``) and component (``component``) that is
    reproduced through the exemplary models, on held-out samples; aligned with the orders."""

    cumulative: FloatArray
    component: FloatArray


def reliability(
    target_fit: torch.Tensor,
    target_eval: torch.Tensor,
    exemplars_fit: Sequence[torch.Tensor],
    exemplars_eval: Sequence[torch.Tensor],
    *,
    ridge: float = 1e-6,
) -> Reliability:
    """Reliability of the components by linear cycle consistency (SCIENCE.md §7; our estimator).

    All inputs are stacked disentangler outputs ``[L, N, *feature]`` of the same orders:
    the target model's and each exemplary model's (same layer, same images; channels may
    differ, the spatial size may not). ``*_fit`` fit the maps, ``*_eval`` (other images)
    score them. Per order and exemplar ``E``, with ``a`` the target's output and ``b`` E's:

    * ``M_ab`` regresses ``b`` on ``a`` and ``M_ba`` regresses ``a`` on ``b`` — channel maps
      (1×1 convolutions with bias, fitted over samples × positions) for feature maps,
      dense affine maps for flat features; ridge ``λ = ridge · tr(AᵀA)/C`` (default 1e-6:
      only numerical; a larger ridge also drops directions an exemplar encodes weakly);
    * one cycle ``a → a M_ab → a M_ab M_ba`` is the linear map ``K_E = M_ab M_ba``; in
      canonical-correlation coordinates it scales each direction by ``ρ_k²``: shared
      directions (``ρ = 1``) pass, directions the exemplar lacks (``ρ = 0``) vanish;
    * with several exemplars the cycles are chained in the given order:
      ``r(a) = a K_1 K_2 ⋯``, the part of ``a`` every exemplar reproduces;
    * reliability ``= Var[r(a)] / Var[a]`` on the evaluation images.

    ``cumulative`` takes ``a = Φ^(l)`` (the paper's ``Var[Φ_reliable^(l)]/Var[Φ^(l)]``),
    ``component`` takes ``a = c^(l)`` with the exemplars' ``c^(l)``. The paper instead trains a
    shared disentangler with per-model linear heads under a cycle loss; this closed form
    needs no extra training and is deterministic. Cost per order and exemplar:
    ``O(N·H·W·C²)`` plus ``C×C`` solves.
    """
    if not exemplars_fit or len(exemplars_fit) != len(exemplars_eval):
        raise ComponentsError("reliability needs at least one exemplary model, fit and eval")
    pairs = [(target_fit, target_eval), *zip(exemplars_fit, exemplars_eval, strict=True)]
    diffs = [(_differences(a), _differences(b)) for a, b in pairs]
    return Reliability(
        cumulative=_cycle_shares(pairs, ridge),
        component=_cycle_shares(diffs, ridge),
    )


def _differences(phis: torch.Tensor) -> torch.Tensor:
    return torch.cat([phis[:1], phis[1:] - phis[:-1]])


def _cycle_shares(pairs: list[tuple[torch.Tensor, torch.Tensor]], ridge: float) -> FloatArray:
    (target_fit, target_eval), exemplars = pairs[0], pairs[1:]
    shares = []
    for k in range(len(target_fit)):
        maps = [cycle_map(target_fit[k], fit[k], ridge=ridge) for fit, _ in exemplars]
        shares.append(_reproduced_share(target_eval[k], target_fit[k], maps))
    return np.array(shares)


def cycle_map(a: torch.Tensor, b: torch.Tensor, *, ridge: float = 1e-6) -> torch.Tensor:
    """``K = M_ab M_ba`` ``[C_a, C_a]`` (float64) for features ``a``, ``b`` ``[N, *feature]``.

    Example:
        >>> a = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
        >>> mix = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]])
        >>> k = cycle_map(a, a @ mix)                    # b is an invertible map of a
        >>> bool(torch.allclose(k, torch.eye(3, dtype=torch.float64), atol=1e-4))
        True
    """
    rows_a, rows_b = _centred_rows(a), _centred_rows(b)
    if len(rows_a) != len(rows_b):
        raise ComponentsError(
            f"the exemplary model's feature {list(b.shape)} does not line up with the "
            f"target's {list(a.shape)}: they need the same images and spatial size"
        )
    return _regress(rows_a, rows_b, ridge) @ _regress(rows_b, rows_a, ridge)


def _reproduced_share(a_eval: torch.Tensor, a_fit: torch.Tensor, maps: list[torch.Tensor]) -> float:
    total = variance(a_eval)
    if total <= 0:
        return float("nan")
    rows = _rows(a_eval)
    mean = _rows(a_fit).mean(dim=0)
    cycled = rows - mean
    for k in maps:
        cycled = cycled @ k
    return variance(_unrows(cycled + mean, a_eval.shape)) / total


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W] → [N·H·W, C]`` (channels as columns) or ``[N, D]`` as is; float64."""
    t = t.detach().to(torch.float64)
    if t.dim() == 4:
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
    if t.dim() == 2:
        return t
    raise ComponentsError(f"features must be [N, C, H, W] or [N, D], got {list(t.shape)}")


def _unrows(rows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if len(shape) == 2:
        return rows
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).permute(0, 3, 1, 2)


def _centred_rows(t: torch.Tensor) -> torch.Tensor:
    rows = _rows(t)
    return rows - rows.mean(dim=0)


def _regress(x: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    """``argmin_M ‖x M − y‖² + λ‖M‖²`` with ``λ = ridge · tr(xᵀx)/C``."""
    gram = x.T @ x
    lam = ridge * float(gram.trace()) / max(gram.shape[0], 1) or ridge
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + lam * eye, x.T @ y)


# --------------------------------------------------------------------------- effects


@dataclass
class ComponentGame:
    """Players = components; ``v(S)`` = task loss with ``f`` replaced by ``base + Σ_{p∈S} parts_p``.

    ``parts`` (one ``[N, *feature]`` tensor per player) are the components centred by their
    means over the training images, ``base`` the training mean of ``f``; an absent component
    is thus replaced by its training mean, and ``v(∅)`` is the network with ``f`` replaced by
    its training mean. A :class:`~conceptlens.aliases.Game`: boolean coalitions ``[b, P]``
    → losses ``[b]``. Cost per coalition: ``|S|`` additions and the network's tail on ``N``
    features. Feature maps are best given in ``channels_last`` memory format
    (:func:`effects` does so): the sums keep it, and a DigitCNN tail (max-pool first) ran
    6× faster on it.
    """

    parts: Sequence[torch.Tensor]
    base: torch.Tensor
    tail: FeatureFn
    labels: torch.Tensor
    batch_size: int = 512
    n_players: int = field(init=False)

    def __post_init__(self) -> None:
        self.n_players = len(self.parts)

    def __call__(self, coalitions: Coalitions) -> FloatArray:
        return np.array([self._loss(np.flatnonzero(row)) for row in np.asarray(coalitions)])

    def _loss(self, present: npt.NDArray[np.intp]) -> float:
        """Mean cross-entropy of ``tail(base + Σ_{p present} parts_p)`` over the ``N`` images."""
        n = len(self.parts[0])
        total = 0.0
        for start in range(0, n, self.batch_size):
            rows = slice(start, start + self.batch_size)
            feature = torch.empty_like(self.parts[0][rows]).copy_(self.base)
            for p in present:
                feature += self.parts[p][rows]
            logits = self.tail(feature).to(torch.float64)
            labels = self.labels[rows].to(logits.device)
            total += float(F.cross_entropy(logits, labels, reduction="sum"))
        return total / n


@dataclass
class Effects:
    """Shapley values of the components on the task loss (aligned with ``players``).

    Efficiency: ``shapley_train.sum() == values_train[-1] − values_train[0]`` (and for test);
    ``values_*[0]`` is the loss with ``f`` replaced by its training mean, ``values_*[-1]``
    the loss with every player present (the original network when the residual is a player).
    """

    players: tuple[str, ...]
    shapley_train: FloatArray
    """``φ_train``: contribution to the training loss (negative = lowers it)."""
    shapley_test: FloatArray
    shapley_gap: FloatArray
    """``φ_gap``: Shapley values of the game ``v_test − v_train`` (the loss gap)."""
    effectiveness: FloatArray
    """``−φ_train / √Var[c]``: training-loss decrease per unit of the component's strength."""
    overfitting: FloatArray
    """``φ_gap / (−φ_train)``: gap increase per unit of training-loss decrease."""
    values_train: FloatArray
    values_test: FloatArray


def component_parts(
    phis: torch.Tensor,
    f: torch.Tensor,
    means: tuple[torch.Tensor, torch.Tensor],
    *,
    include_residual: bool,
) -> list[torch.Tensor]:
    """Components (and residual) minus their training means ``means``, one ``[N, *feature]``
    tensor per player (feature maps in ``channels_last`` memory format)."""
    c, residual = components(phis, f)
    c_mean, residual_mean = means
    parts = [c[k] - c_mean[k] for k in range(len(c))]
    if include_residual:
        parts.append(residual - residual_mean)
    if f.dim() == 4:
        parts = [p.contiguous(memory_format=torch.channels_last) for p in parts]
    return parts


def effects(
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    tail: FeatureFn,
    orders: Sequence[int],
    *,
    include_residual: bool = True,
    batch_size: int = 512,
) -> Effects:
    """Effectiveness and over-fitting of the components as Shapley values (SCIENCE.md §7).

    ``train`` and ``test`` are ``(phis [L, N, *feature], f [N, *feature], labels [N])``;
    ``tail`` maps features to logits. Players are the components ``c^(l)`` (named ``"l=…"``)
    and, with ``include_residual``, ``Δf``. Games: ``v_train(S)``, ``v_test(S)`` = mean
    cross-entropy with ``f`` replaced by ``f̄ + Σ_{p∈S}(part_p − part̄_p)`` (bars: training
    means), so ``v(∅)`` is the network with ``f`` replaced by its training mean and, with the
    residual, ``v(N)`` the original network. ``φ_gap`` is the Shapley value of ``v_test −
    v_train`` (= ``φ_test − φ_train`` by linearity). Normalisations (the seed's text lost
    these formulas; our reading of the paper): effectiveness ``−φ_train/√Var[c]``, over-fitting
    ``φ_gap/(−φ_train)``; ``nan`` where the denominator is 0.

    Cost: ``2·2^P`` tail passes over the training and test images (``P ≤ 6``: 128 passes).
    """
    game_train, game_test = _loss_games(train, test, tail, include_residual, batch_size)
    (phi_tr, v_tr), (phi_te, v_te) = shapley_values(game_train), shapley_values(game_test)
    phi_gap = shapley_from_table(v_te - v_tr)
    strength = np.sqrt([variance(p) for p in game_train.parts])
    with np.errstate(divide="ignore", invalid="ignore"):
        effectiveness = np.where(strength > 0, -phi_tr / strength, np.nan)
        overfitting = np.where(phi_tr != 0, phi_gap / -phi_tr, np.nan)
    names = tuple(f"l={o}" for o in orders) + (("residual",) if include_residual else ())
    return Effects(
        players=names,
        shapley_train=phi_tr,
        shapley_test=phi_te,
        shapley_gap=phi_gap,
        effectiveness=effectiveness,
        overfitting=overfitting,
        values_train=v_tr,
        values_test=v_te,
    )


def _loss_games(
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    tail: FeatureFn,
    include_residual: bool,
    batch_size: int,
) -> tuple[ComponentGame, ComponentGame]:
    """The training and test games, both centred by the training means."""
    phis_tr, f_tr, _ = train
    c_tr, residual_tr = components(phis_tr, f_tr)
    means = (c_tr.mean(dim=1), residual_tr.mean(dim=0))
    base = f_tr.mean(dim=0)

    def game(phis: torch.Tensor, f: torch.Tensor, labels: torch.Tensor) -> ComponentGame:
        parts = component_parts(phis, f, means, include_residual=include_residual)
        return ComponentGame(parts, base, tail, labels, batch_size)

    return game(*train), game(*test)
