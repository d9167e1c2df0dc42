"""Disentangler nets: architecture, determinism, and targets of known complexity (§7)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conceptlens.components import (
    ComponentsError,
    Disentangler,
    TrainedOrder,
    predict_orders,
    significance,
    train_disentanglers,
)

from .conftest import Toy


def fit(
    x: torch.Tensor,
    f: torch.Tensor,
    x_test: torch.Tensor,
    f_test: torch.Tensor,
    *,
    orders: tuple[int, ...],
    epochs: int,
    seed: int = 0,
) -> list[TrainedOrder]:
    """Small, fast settings: width 16, lr 1e-2, batches of 32."""
    return train_disentanglers(
        x,
        f,
        x_test,
        f_test,
        orders=orders,
        epochs=epochs,
        seed=seed,
        width=16,
        lr=1e-2,
        batch_size=32,
    )


def relus(net: nn.Module) -> int:
    return sum(isinstance(m, nn.ReLU) for m in net.modules())


@pytest.mark.parametrize("order", [0, 1, 2, 5])
def test_order_is_the_number_of_relu_layers(order: int) -> None:
    assert relus(Disentangler((1, 16, 16), (32, 8, 8), order=order, width=8)) == order


def test_order_zero_is_affine() -> None:
    torch.manual_seed(0)
    net = Disentangler((1, 16, 16), (16, 8, 8), order=0, width=8)
    for p in net.parameters():  # move off the zero-initialised start
        nn.init.normal_(p)
    a, b, zero = torch.randn(1, 1, 16, 16), torch.randn(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    with torch.no_grad():
        lhs = net(2 * a - 3 * b) - net(zero)
        rhs = 2 * (net(a) - net(zero)) - 3 * (net(b) - net(zero))
    assert torch.allclose(lhs, rhs, atol=1e-3 * float(lhs.abs().max()))


@pytest.mark.parametrize(
    ("input_shape", "feature_shape"),
    [
        ((1, 16, 16), (16, 16, 16)),  # same grid
        ((1, 16, 16), (32, 4, 4)),  # pixel-unshuffle by 4
        ((3, 15, 15), (8, 4, 4)),  # adaptive pooling
        ((1, 4, 4), (8, 8, 8)),  # upsampling
        ((1, 16, 16), (64,)),  # flat feature
    ],
)
def test_output_has_the_feature_shape(
    input_shape: tuple[int, int, int], feature_shape: tuple[int, ...]
) -> None:
    net = Disentangler(input_shape, feature_shape, order=2, width=4)
    assert net(torch.zeros(2, *input_shape)).shape == (2, *feature_shape)


def test_bad_shapes_and_orders_are_refused(linear_toy: Toy) -> None:
    with pytest.raises(ComponentsError, match=r"\[C, H, W\] or \[D\]"):
        Disentangler((1, 8, 8), (2, 3), order=0)
    t = linear_toy
    with pytest.raises(ComponentsError, match="increasing"):
        train_disentanglers(t.x_train, t.f_train, t.x_test, t.f_test, orders=(2, 1))
    with pytest.raises(ComponentsError, match="each image needs its feature"):
        train_disentanglers(t.x_train, t.f_train[:5], t.x_test, t.f_test, orders=(0,))


def test_a_linear_feature_is_all_order_zero(linear_toy: Toy) -> None:
    t = linear_toy
    trained = fit(t.x_train, t.f_train, t.x_test, t.f_test, orders=(0, 1, 2), epochs=10)
    s = significance(predict_orders(trained, t.x_train), t.f_train, (0, 1, 2))
    assert s.component[0] > 0.95
    assert (s.component[1:] < 0.05).all()
    assert trained[0].test_r2 > 0.99
    assert s.residual < 0.01


def test_a_two_relu_feature_needs_two_relu_layers(hat_toy: Toy) -> None:
    t = hat_toy
    trained = fit(t.x_train, t.f_train, t.x_test, t.f_test, orders=(0, 2), epochs=25)
    s = significance(predict_orders(trained, t.x_train), t.f_train, (0, 2))
    r2_linear, r2_deep = trained[0].test_r2, trained[1].test_r2
    assert r2_linear < 0.1 < 0.9 < r2_deep
    assert s.component[0] < 0.05
    assert s.cumulative[1] > s.component[0] + 0.8


def test_same_seed_same_nets_and_state_restored(linear_toy: Toy) -> None:
    t = linear_toy
    x, f = t.x_train[:128], t.f_train[:128]
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()

    def run(seed: int) -> list[torch.Tensor]:
        trained = fit(x, f, x, f, orders=(0, 1), epochs=2, seed=seed)
        return [p.detach().clone() for t in trained for p in t.net.state_dict().values()]

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_warm_start_begins_at_the_previous_order(linear_toy: Toy) -> None:
    t = linear_toy
    x, f = t.x_train[:64], t.f_train[:64]
    (zero,) = fit(x, f, x, f, orders=(0,), epochs=1)
    deeper = Disentangler((1, 8, 8), (2, 8, 8), order=3, width=16)
    deeper.load_state_dict(zero.net.state_dict(), strict=False)
    assert torch.allclose(deeper(x), zero.predict(x), atol=1e-6)


def test_progress_counts_epochs_and_can_cancel(linear_toy: Toy) -> None:
    t = linear_toy
    x, f = t.x_train[:64], t.f_train[:64]
    seen: list[tuple[int, int]] = []
    train_disentanglers(
        x, f, x, f, orders=(0, 1), epochs=3, progress=lambda d, n: seen.append((d, n))
    )
    assert seen == [(d, 6) for d in range(1, 7)]

    class Stop(Exception):
        pass

    def cancel(done: int, total: int) -> None:
        raise Stop

    threads = torch.get_num_threads()
    with pytest.raises(Stop):
        train_disentanglers(x, f, x, f, orders=(0, 1), epochs=3, progress=cancel)
    assert torch.get_num_threads() == threads


def test_kept_outputs_are_the_predictions(linear_toy: Toy) -> None:
    t = linear_toy
    x, f, x_test, f_test = t.x_train[:64], t.f_train[:64], t.x_test[:32], t.f_test[:32]
    (kept,) = train_disentanglers(x, f, x_test, f_test, orders=(1,), epochs=1, keep_outputs=True)
    assert kept.outputs is not None
    assert torch.equal(kept.outputs[0], kept.predict(x))
    assert torch.equal(kept.outputs[1], kept.predict(x_test))
    (plain,) = train_disentanglers(x, f, x_test, f_test, orders=(1,), epochs=1)
    assert plain.outputs is None
