"""Order losses L+ and L− (SCIENCE.md §5): against a naive implementation, the coalition
sampler, the forward-pass count, and a tiny game where encouraging orders moves J^(m)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conceptlens.game import mask_range_coalitions
from conceptlens.order_loss import (
    OrderLossConfig,
    OrderTerm,
    coalition_sizes,
    delta_u,
    order_loss_terms,
    passes_per_batch,
    sample_coalitions,
)
from conceptlens.outputs import output_values
from conceptlens.pairwise import relative_strength
from conceptlens.players import PatchGrid, Players, masked_inputs
from conceptlens.reference import exact_strength


def toy_model(seed: int = 0, channels: int = 2, pixels: int = 6 * 8, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(channels * pixels, 16), nn.Tanh(), nn.Linear(16, classes)
    )


def naive_masked(x: torch.Tensor, keep: list[int], grid: tuple[int, int], baseline: str):
    """One masked image ``[C, H, W]`` built patch by patch with slices."""
    _, h, w = x.shape
    rows, cols = grid
    r_edges = [round(k * h / rows) for k in range(rows + 1)]
    c_edges = [round(k * w / cols) for k in range(cols + 1)]
    fill = torch.zeros_like(x)
    if baseline == "mean":
        for c in range(x.shape[0]):
            fill[c] = x[c].mean()
    out = fill.clone()
    for player in keep:
        r, c = divmod(player, cols)
        rs, cs = slice(r_edges[r], r_edges[r + 1]), slice(c_edges[c], c_edges[c + 1])
        out[:, rs, cs] = x[:, rs, cs]
    return out


def naive_strength(model, x, y, s1, s2, grid, baseline) -> torch.Tensor:
    """``E|Δu|`` by a loop over pairs, one image through the model at a time."""
    terms = []
    for k in range(s1.shape[0]):
        b = k % x.shape[0]
        u = []
        for s in (s1[k], s2[k]):
            keep = [int(i) for i in torch.nonzero(s)]
            logits = model(naive_masked(x[b], keep, grid, baseline)[None])[0]
            u.append(torch.log_softmax(logits, dim=0)[int(y[b])])
        terms.append((u[1] - u[0]).abs())
    return torch.stack(terms).mean()


# ---------------------------------------------------------------- against a naive version


@pytest.mark.parametrize("baseline", ["zero", "mean"])
@pytest.mark.parametrize("samples", [1, 2])
def test_order_losses_match_a_naive_loop_over_pairs(baseline: str, samples: int) -> None:
    grid = (3, 4)  # 6×8 image: uneven patch heights 2, 2, 2 and widths 2
    model = toy_model()
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(5, 2, 6, 8, generator=gen)
    y = torch.tensor([0, 1, 2, 1, 0])
    config = OrderLossConfig(
        grid=grid,
        baseline=baseline,
        plus=OrderTerm(0.5, 0.0, 0.25),
        minus=OrderTerm(2.0, 0.5, 1.0),
        samples=samples,
    )
    terms = order_loss_terms(model, x, y, config, torch.Generator().manual_seed(11))
    assert set(terms) == {"plus", "minus"}

    replay = torch.Generator().manual_seed(11)  # same draws, same order: plus, then minus
    count = samples * len(y)
    p1, p2 = sample_coalitions(12, 0.0, 0.25, count, replay)
    m1, m2 = sample_coalitions(12, 0.5, 1.0, count, replay)
    with torch.no_grad():
        plus = -naive_strength(model, x, y, p1, p2, grid, baseline)
        minus = naive_strength(model, x, y, m1, m2, grid, baseline)
    torch.testing.assert_close(terms["plus"].detach(), plus, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["minus"].detach(), minus, rtol=1e-5, atol=1e-6)
    assert terms["plus"] < 0 < terms["minus"]


def test_delta_u_is_differentiable_and_matches_the_definition() -> None:
    model = toy_model(channels=1, pixels=16, classes=4)
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([3, 0, 1])
    s1, s2 = sample_coalitions(4, 0.25, 0.75, 3, torch.Generator().manual_seed(1))
    du = delta_u(model, x, y, s1, s2, (2, 2), "zero")
    assert du.shape == (3,)
    du.abs().sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)
    with torch.no_grad():
        for b in range(3):
            u = [
                F.log_softmax(
                    model(
                        naive_masked(x[b], torch.nonzero(s[b])[:, 0].tolist(), (2, 2), "zero")[None]
                    ),
                    dim=1,
                )[0, y[b]]
                for s in (s1, s2)
            ]
            assert float(du[b]) == pytest.approx(float(u[1] - u[0]), rel=1e-5, abs=1e-6)


def test_delta_u_of_the_full_against_the_empty_coalition() -> None:
    model = toy_model(channels=1, pixels=16, classes=4)
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([1, 2])
    empty = torch.zeros(2, 4, dtype=torch.bool)
    full = torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        du = delta_u(model, x, y, empty, full, (2, 2), "mean")
        log_p = F.log_softmax(model(x), dim=1)[torch.arange(2), y]
        base = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
        log_b = F.log_softmax(model(base), dim=1)[torch.arange(2), y]
    torch.testing.assert_close(du, log_p - log_b)


def test_delta_u_rejects_coalitions_of_the_wrong_size() -> None:
    model = toy_model(channels=1, pixels=16, classes=4)
    x = torch.rand(2, 1, 4, 4)
    s = torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="coalitions"):
        delta_u(model, x, torch.tensor([0, 1]), s, s, (2, 2), "zero")


def test_no_active_term_gives_no_losses() -> None:
    model = toy_model(channels=1, pixels=16, classes=4)
    terms = order_loss_terms(
        model, torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), OrderLossConfig(), torch.Generator()
    )
    assert terms == {}


# ---------------------------------------------------------------- configuration


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        OrderTerm(1.0, 0.5, 0.5)
    with pytest.raises(ValueError):
        OrderTerm(-1.0, 0.0, 0.5)
    with pytest.raises(ValueError):
        OrderTerm(1.0, 0.0, 1.5)
    with pytest.raises(ValueError, match="baseline"):
        OrderLossConfig(baseline="blur")
    with pytest.raises(ValueError, match="samples"):
        OrderLossConfig(samples=0)
    with pytest.raises(ValueError, match="empty"):  # ⌊0.1·4⌋ = ⌊0.2·4⌋ = 0
        OrderLossConfig(grid=(2, 2), plus=OrderTerm(1.0, 0.1, 0.2))


def test_coalition_sizes_floor_without_rounding_surprises() -> None:
    assert coalition_sizes(10, 0.3, 0.7) == (3, 7)  # 0.3·10 is 3.0000000000000004
    assert coalition_sizes(100, 0.29, 0.57) == (29, 57)  # 0.29·100 is 28.999999999999996
    assert coalition_sizes(16, 0.0, 1.0) == (0, 16)
    assert coalition_sizes(9, 0.25, 0.5) == (2, 4)


# ---------------------------------------------------------------- the sampler


def test_sampler_sizes_and_subsets() -> None:
    s1, s2 = sample_coalitions(16, 0.25, 0.75, 500, torch.Generator().manual_seed(0))
    assert s1.dtype == s2.dtype == torch.bool and s1.shape == s2.shape == (500, 16)
    assert (s1.sum(1) == 4).all() and (s2.sum(1) == 12).all()
    assert (s1 <= s2).all()


def test_sampler_is_reproducible_and_roughly_uniform() -> None:
    a = sample_coalitions(6, 1 / 3, 2 / 3, 20_000, torch.Generator().manual_seed(7))
    b = sample_coalitions(6, 1 / 3, 2 / 3, 20_000, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    s1, s2 = a
    # each player is in S1 with probability 2/6 and in S2 with 4/6
    assert torch.allclose(s1.float().mean(0), torch.full((6,), 1 / 3), atol=0.02)
    assert torch.allclose(s2.float().mean(0), torch.full((6,), 2 / 3), atol=0.02)
    # all C(6,2) = 15 sets S1 appear about equally often, and so do the C(4,2) = 6 ways to
    # extend one S1 to S2
    weights = 1 << torch.arange(6)
    m1 = (s1.long() * weights).sum(1)
    counts = torch.bincount(m1, minlength=64)
    used = counts[counts > 0]
    assert len(used) == math.comb(6, 2)
    assert float(used.min()) > 0.85 * 20_000 / 15 and float(used.max()) < 1.15 * 20_000 / 15
    first = m1 == int(m1[0])
    extra = torch.bincount((s2[first].long() * weights).sum(1), minlength=64)
    extra = extra[extra > 0]
    assert len(extra) == math.comb(4, 2)
    assert float(extra.min()) > 0.7 * float(first.sum()) / 6


# ---------------------------------------------------------------- forward passes


def test_passes_per_batch_matches_a_forward_counting_hook() -> None:
    model = toy_model(channels=1, pixels=16, classes=4)
    seen: list[int] = []
    model.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))
    x = torch.rand(7, 1, 4, 4)
    y = torch.randint(0, 4, (7,))
    configs = [
        None,
        OrderLossConfig(grid=(2, 2), plus=OrderTerm(1.0, 0.0, 0.5)),
        OrderLossConfig(grid=(2, 2), minus=OrderTerm(1.0, 0.5, 1.0), samples=3),
        OrderLossConfig(
            grid=(2, 2), plus=OrderTerm(1.0, 0.75, 1.0), minus=OrderTerm(1.0, 0.0, 0.5), samples=2
        ),
    ]
    for config in configs:
        seen.clear()
        model(x)  # the classification pass
        if config is not None:
            order_loss_terms(model, x, y, config, torch.Generator().manual_seed(0))
        assert sum(seen) == passes_per_batch(config, 7)
    assert [passes_per_batch(c, 7) for c in configs] == [7, 21, 49, 63]


# ---------------------------------------------------------------- a known game


GRID = (2, 4)  # n = 8 one-pixel players on a 2×4 image


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(8, 32),
        nn.Tanh(),
        nn.Linear(32, 32),
        nn.Tanh(),
        nn.Linear(32, 2),
    )


def _exact_j(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Exact ``J^(m)`` over the images ``x``: all 2^8 masked inputs (zero baseline), log-odds
    of the label, Harsanyi, SCIENCE.md §4's closed form."""
    players = Players(PatchGrid(*GRID, height=2, width=4))
    presence = players.pixel_presence(mask_range_coalitions(0, 1 << 8, 8, torch.device("cpu")))
    rows = []
    with torch.no_grad():
        for xi, yi in zip(x, y, strict=True):
            logits = model(masked_inputs(xi, torch.zeros_like(xi), presence)).numpy()
            rows.append(exact_strength(output_values(logits, int(yi))))
    return relative_strength(rows)


def _train(term: str, weight: float, r1: float, r2: float, x, y, steps: int = 60) -> nn.Module:
    model = _mlp()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    config = OrderLossConfig(grid=GRID, **{term: OrderTerm(weight, r1, r2)})  # type: ignore[arg-type]
    for step in range(steps):
        batch = torch.arange(32) + (32 * step) % len(y)
        loss = F.cross_entropy(model(x[batch]), y[batch])
        for value in order_loss_terms(model, x[batch], y[batch], config, generator).values():
            loss = loss + weight * value
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model


@pytest.fixture(scope="module")
def sum_task() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Is the sum of 8 uniform pixels above 4? And J^(m) of a model trained with λ = 0."""
    x = torch.rand(256, 1, 2, 4, generator=torch.Generator().manual_seed(1))
    y = (x.flatten(1).sum(1) > 4).long()
    plain = _train("plus", 0.0, 0.5, 1.0, x, y)
    return x, y, _exact_j(plain, x[:8], y[:8])


def test_encouraging_high_orders_raises_j_there(sum_task) -> None:
    x, y, plain = sum_task
    high = _exact_j(_train("plus", 1.0, 0.5, 1.0, x, y), x[:8], y[:8])
    # orders m = 5, 6 of 0 … 6 (the encouraged range is [4, 8] players)
    assert high[5:].mean() > 1.5 * plain[5:].mean()
    assert high[:2].mean() < 0.5 * plain[:2].mean()


def test_encouraging_low_orders_raises_j_there(sum_task) -> None:
    x, y, plain = sum_task
    low = _exact_j(_train("plus", 1.0, 0.0, 0.25, x, y), x[:8], y[:8])
    assert low[0] > 1.5 * plain[0]
    # the plain curve rises from order 0 to order 3; the encouraged one now falls
    assert plain[0] < plain[3] and low[0] > 1.5 * low[3]
