"""The learned baseline: its pieces against the numpy engine, and learning on models whose
sparsest baseline is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlens.learned_baseline import learn_baseline, mobius, output_torch
from conceptlens.outputs import OUTPUTS, output_values
from conceptlens.players import PatchGrid, Players
from conceptlens.transforms import harsanyi


def test_mobius_is_the_harsanyi_transform() -> None:
    v = np.random.default_rng(0).normal(size=2**6)
    np.testing.assert_allclose(mobius(torch.from_numpy(v), 6).numpy(), harsanyi(v), atol=1e-12)


@pytest.mark.parametrize("kind", OUTPUTS)
@pytest.mark.parametrize("classes", [1, 4])
def test_outputs_agree_with_the_numpy_ones(kind: str, classes: int) -> None:
    z = np.random.default_rng(1).normal(size=(7, classes))
    got = output_torch(torch.from_numpy(z), 1, kind).numpy()  # type: ignore[arg-type]
    np.testing.assert_allclose(got, output_values(z, 1, kind), rtol=1e-10)  # type: ignore[arg-type]


class Square(torch.nn.Module):
    """``f(x) = (Σ w·x)²`` in the logit of class 0 (class 1's logit is 0): interactions of
    orders 1 and 2 that all vanish when the baseline equals the input."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.linspace(0.5, 1.5, 16).reshape(1, 1, 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.w).sum(dim=(1, 2, 3))
        return torch.stack([s**2, torch.zeros_like(s)], dim=1)


def setting() -> tuple[torch.Tensor, Players, torch.Tensor]:
    x = torch.linspace(-1, 1, 16).reshape(1, 4, 4)
    players = Players(PatchGrid(2, 2, 4, 4))
    return x, players, torch.full_like(x, 0.3)


def test_a_wide_box_reaches_the_sparse_baseline() -> None:
    x, players, start = setting()
    out = learn_baseline(Square(), x, players, start, target=0, output="logit", radius=2.0,
                         steps=300, lr=0.05)  # fmt: skip
    assert out.loss_after < 0.02 * out.loss_before
    assert out.loss_after == min(out.history)
    assert np.abs(out.baseline - start.numpy()).max() <= 2.0 + 1e-6


def test_the_box_holds_and_a_zero_radius_changes_nothing() -> None:
    x, players, start = setting()
    narrow = learn_baseline(Square(), x, players, start, target=0, output="logit", radius=0.1,
                            steps=50)  # fmt: skip
    assert np.abs(narrow.baseline - start.numpy()).max() <= 0.1 + 1e-6
    assert narrow.loss_after <= narrow.loss_before
    fixed = learn_baseline(Square(), x, players, start, target=0, output="logit", radius=0.0,
                           steps=5)  # fmt: skip
    np.testing.assert_array_equal(fixed.baseline, start.numpy())
    assert fixed.loss_after == fixed.loss_before
    # the loss before is Σ|I| of the exact analysis with the starting baseline
    from conceptlens.game import MaskedModelGame, value_table

    game = MaskedModelGame(Square(), x, players, start, target=0, output="logit")
    v = value_table(game, players.n)
    assert fixed.loss_before == pytest.approx(np.abs(harsanyi(v)[1:]).sum(), rel=1e-6)
