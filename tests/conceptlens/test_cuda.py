"""The engine on a CUDA device against the same computation on the CPU.

The whole module is skipped where torch sees no CUDA device (CI has none); run it on a GPU
machine with ``PYTHONPATH=. python -m pytest tests/conceptlens/test_cuda.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conceptlens.analysis import interactions_from_logits
from conceptlens.components import (
    TrainedOrder,
    TrainingPlan,
    analyze_components,
    feature_extractor,
    image_maps,
    module_of,
)
from conceptlens.components import train_disentanglers as train
from conceptlens.game import MaskedModelGame, logit_table, mask_range_coalitions
from conceptlens.images import load_image
from conceptlens.models import train_demo_model
from conceptlens.models.demo import export_onnx, load_digits_16, split_digits
from conceptlens.models.loaders import LoadedModel, load_model, onnx_session
from conceptlens.players import PatchGrid, Players, make_baseline
from conceptlens.transforms import (
    faithfulness_residual,
    harsanyi,
    harsanyi_adjoint,
    superset_sums,
    zeta,
)
from tests.conceptlens.components.conftest import gaussian_images, hat_net, toy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


# --------------------------------------------------------------------------- the game


def demo_game(
    demo_dir: Path, manifest: dict[str, Any], fmt: str, device: torch.device
) -> tuple[MaskedModelGame, LoadedModel]:
    """The demo CNN from its ``fmt`` file on ``device``: 16 players (4×4), mean baseline."""
    shape = (1, 16, 16) if fmt == "torchscript" else None
    model = load_model(demo_dir / manifest["files"][fmt], input_shape=shape, device=device)
    image = load_image(demo_dir / manifest["samples"][3]["file"], channels=1, size=(16, 16))
    players = Players(PatchGrid(4, 4, 16, 16))
    game = MaskedModelGame(
        model.predict, image, players, make_baseline(image, "mean"), device=device
    )
    return game, model


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "onnx"])
def test_demo_logit_table_on_cuda_matches_the_cpu(
    demo_dir: Path, demo_manifest: dict[str, Any], fmt: str
) -> None:
    cpu_game, _ = demo_game(demo_dir, demo_manifest, fmt, CPU)
    cuda_game, model = demo_game(demo_dir, demo_manifest, fmt, CUDA)
    assert model.device == CUDA and cuda_game.x.device.type == "cuda"
    assert model.predict(cuda_game.x[None]).device.type == "cuda"
    on_cpu, on_cuda = logit_table(cpu_game), logit_table(cuda_game)
    assert on_cuda.shape == on_cpu.shape == (1 << 16, 10) and on_cuda.dtype == np.float32
    scale = float(np.abs(on_cpu).max())
    np.testing.assert_allclose(on_cuda, on_cpu, rtol=0, atol=1e-4 * scale)
    # the table's rows are the bitmasks: spot-check them against the game's own batches
    rows = np.array([0, 1, 0b1010_0101_1100_0011, (1 << 16) - 1])
    spot = cuda_game.logits(_coalitions(rows, 16))
    np.testing.assert_allclose(spot, on_cuda[rows], rtol=0, atol=1e-4 * scale)


def test_harsanyi_of_the_cuda_table_is_faithful_and_reads_as_the_cpu_one(
    demo_dir: Path, demo_manifest: dict[str, Any]
) -> None:
    cpu_game, _ = demo_game(demo_dir, demo_manifest, "safetensors", CPU)
    cuda_game, _ = demo_game(demo_dir, demo_manifest, "safetensors", CUDA)
    on_cuda = interactions_from_logits(logit_table(cuda_game), k=10)
    on_cpu = interactions_from_logits(logit_table(cpu_game), target=on_cuda.target, k=10)
    v, interactions = on_cuda.v, on_cuda.interactions
    assert abs(interactions.sum() - v[-1]) < 1e-9  # Σ_{S⊆N} I(S) = v(N)
    assert interactions[0] == v[0]  # I(∅) = v(∅)
    assert on_cuda.residual < 1e-9 and faithfulness_residual(v, interactions) < 1e-9
    # what a person reads off the result: the strongest interactions, the salient counts
    assert set(on_cuda.top_masks.tolist()) == set(on_cpu.top_masks.tolist())
    salient_cuda = on_cuda.salient_positive + on_cuda.salient_negative
    salient_cpu = on_cpu.salient_positive + on_cpu.salient_negative
    assert np.abs(salient_cuda - salient_cpu).sum() <= 0.005 * salient_cpu.sum()
    np.testing.assert_allclose(on_cuda.strength, on_cpu.strength, rtol=1e-3)


def _coalitions(masks: np.ndarray, n: int) -> np.ndarray:
    return ((masks[:, None] >> np.arange(n)) & 1).astype(bool)


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("transform", [harsanyi, zeta, harsanyi_adjoint, superset_sums])
def test_transforms_on_cuda_tensors_equal_the_cpu(transform: Any, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    for shape in [(1 << 16,), (1 << 12, 10)]:
        table = torch.randn(shape, generator=gen, dtype=dtype)
        on_cpu = transform(table.numpy())
        on_cuda = transform(table.to(CUDA))
        assert isinstance(on_cuda, torch.Tensor) and on_cuda.device.type == "cuda"
        assert on_cuda.dtype == dtype
        # the same additions in the same order: bit for bit
        np.testing.assert_array_equal(on_cuda.cpu().numpy(), on_cpu)
        inplace = table.to(CUDA)
        assert transform(inplace, inplace=True) is inplace
        assert torch.equal(inplace, on_cuda)


def test_faithfulness_residual_takes_cuda_tensors() -> None:
    v = torch.randn(1 << 14, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    interactions = harsanyi(v.to(CUDA))
    assert faithfulness_residual(v.to(CUDA), interactions) < 1e-12
    np.testing.assert_allclose(zeta(interactions).cpu().numpy(), v.numpy(), atol=1e-12)


# --------------------------------------------------------------------------- out of memory


class CellPolynomial(nn.Module):
    """Class-1 logit ``3·p1·p2 + 2·p3 − 1.5·p0·p2·p3 + 0.5·p8⋯p15`` of the 4×4 cell means.

    On an all-ones image with a zero baseline ``p_c = [c present]``, so its Harsanyi
    interactions are these coefficients (:data:`CELL_COEFFICIENTS`), whatever the image size.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.adaptive_avg_pool2d(x, (4, 4)).flatten(1)
        score = (
            3 * p[:, 1] * p[:, 2]
            + 2 * p[:, 3]
            - 1.5 * p[:, 0] * p[:, 2] * p[:, 3]
            + 0.5 * p[:, 8:16].prod(dim=1)
        )
        return torch.stack([torch.zeros_like(score), score], dim=1)


CELL_COEFFICIENTS = {0b0110: 3.0, 0b1000: 2.0, 0b1101: -1.5, 0xFF00: 0.5}


def cell_table(n: int) -> np.ndarray:
    """The class-1 logit of :class:`CellPolynomial` for every bitmask, from its coefficients."""
    masks = np.arange(1 << n)
    out = np.zeros(1 << n)
    for s, value in CELL_COEFFICIENTS.items():
        out[(masks & s) == s] += value
    return out


@pytest.fixture
def oom_game() -> Iterator[MaskedModelGame]:
    """16 players on an image so large that the whole table's presence maps need 1.2× the
    free device memory: one batch of ``2^16`` masked inputs cannot fit, nor can one of
    ``2^15`` (presence fits, inputs do not), while one of ``2^14`` needs 0.6×."""
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    rows = 1 << 16
    side = 4 * int(math.sqrt(0.3 * free / rows) // 4)  # 4·side²·rows bytes = 1.2·free
    x = torch.ones(1, side, side)
    players = Players(PatchGrid(4, 4, side, side))
    yield MaskedModelGame(
        CellPolynomial(),
        x,
        players,
        make_baseline(x, "zero"),
        device=CUDA,
        batch_size=rows,
        target=1,
        output="logit",
    )
    torch.cuda.empty_cache()


@pytest.mark.parametrize("entry", ["logit_table", "game.logits"])
def test_a_real_cuda_oom_halves_the_batch_and_the_table_is_right(
    oom_game: MaskedModelGame, monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    game, rows = oom_game, 1 << 16
    sizes: list[int] = []
    back_off = game._back_off

    def spy() -> None:
        sizes.append(game.batch_size)
        back_off()

    monkeypatch.setattr(game, "_back_off", spy)
    if entry == "logit_table":
        table = logit_table(game)
    else:
        table = game.logits(mask_range_coalitions(0, rows, 16, CUDA))
    # Two real OOMs, then the first size that fits: a failed batch's memory must be free
    # again before the retry (a retry beside it needs 1.2× the free memory, and fails).
    assert sizes == [rows, rows // 2]
    assert game.batch_size == rows // 4
    np.testing.assert_allclose(table[:, 1], cell_table(16), atol=1e-5)
    np.testing.assert_array_equal(table[:, 0], 0)
    interactions = harsanyi(table[:, 1].astype(np.float64))
    expected = np.zeros(rows)
    for mask, value in CELL_COEFFICIENTS.items():
        expected[mask] = value
    np.testing.assert_allclose(interactions, expected, atol=1e-3)


# --------------------------------------------------------------------------- ONNX


def test_onnx_uses_the_cuda_provider_when_installed(demo_dir: Path, demo_manifest: Any) -> None:
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        pytest.skip(f"this onnxruntime build has no CUDAExecutionProvider ({providers})")
    data = (demo_dir / demo_manifest["files"]["onnx"]).read_bytes()
    assert onnx_session(data, CUDA).get_providers()[0] == "CUDAExecutionProvider"
    assert onnx_session(data, CPU).get_providers() == ["CPUExecutionProvider"]


# --------------------------------------------------------------------------- components


def fit(data: tuple[torch.Tensor, ...], device: torch.device, **kw: Any) -> list[TrainedOrder]:
    """The components tests' small settings: width 16, lr 1e-2, batches of 32."""
    settings: dict[str, Any] = {"width": 16, "lr": 1e-2, "batch_size": 32, **kw}
    return train(*data, device=device, **settings)


def hat_data(flat: bool = False) -> tuple[torch.Tensor, ...]:
    """Toy images and a feature that needs two ReLU layers (conftest's ``hat_toy``)."""
    t = toy(gaussian_images(2), hat_net(3))
    if flat:  # a flat feature: the nets' head is a Linear layer (cuBLAS)
        return t.x_train, t.f_train.flatten(1), t.x_test, t.f_test.flatten(1)
    return t.x_train, t.f_train, t.x_test, t.f_test


def test_disentanglers_on_cuda_reach_the_cpu_r2() -> None:
    data = hat_data()
    on_cpu = fit(data, CPU, orders=(0, 2), epochs=25)
    on_cuda = fit(data, CUDA, orders=(0, 2), epochs=25)
    assert all(p.device.type == "cuda" for t in on_cuda for p in t.net.parameters())
    r2_cpu = [t.test_r2 for t in on_cpu]
    r2_cuda = [t.test_r2 for t in on_cuda]
    assert r2_cuda[0] < 0.1 < 0.9 < r2_cuda[1]
    np.testing.assert_allclose(r2_cuda, r2_cpu, atol=0.02)


@pytest.mark.parametrize("flat", [False, True], ids=["conv-feature", "flat-feature"])
def test_same_seed_same_nets_on_cuda(flat: bool) -> None:
    """Bit-identical nets from two CUDA runs (deterministic kernels, no workspace config)."""
    data = hat_data(flat)

    def run(seed: int) -> list[torch.Tensor]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trained = fit(data, CUDA, orders=(0, 1), epochs=3, seed=seed)
        for w in {str(w.message) for w in caught}:
            print(f"warning while training on CUDA: {w}")
        return [p.detach().cpu() for t in trained for p in t.net.state_dict().values()]

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_cuda_training_leaves_the_global_state_alone() -> None:
    data = hat_data()
    torch.cuda.manual_seed(123)
    cuda_rng, cpu_rng = torch.cuda.get_rng_state(), torch.random.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    fit(data, CUDA, orders=(0, 1), epochs=1)
    fit(data, CPU, orders=(0,), epochs=1)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
    assert torch.equal(torch.random.get_rng_state(), cpu_rng)
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.get_num_threads() == threads


def test_analyze_components_on_cuda_matches_the_cpu() -> None:
    model, _ = train_demo_model(seed=0, epochs=3)
    data = split_digits(*load_digits_16())
    plan = TrainingPlan(orders=(0, 1, 2), width=16, epochs=3)
    on_cpu = analyze_components(model, "relu2", data, plan=plan, device="cpu")
    on_cuda = analyze_components(model.to(CUDA), "relu2", data, plan=plan, device="cuda")
    model.to(CPU)
    assert all(p.device.type == "cuda" for t in on_cuda.trained for p in t.net.parameters())
    np.testing.assert_allclose(on_cuda.train_r2, on_cpu.train_r2, atol=0.02)
    np.testing.assert_allclose(on_cuda.test_r2, on_cpu.test_r2, atol=0.02)
    np.testing.assert_allclose(
        on_cuda.significance.cumulative, on_cpu.significance.cumulative, atol=0.02
    )
    e_cpu, e_cuda = on_cpu.effects, on_cuda.effects
    assert e_cpu is not None and e_cuda is not None
    np.testing.assert_allclose(e_cuda.values_train, e_cpu.values_train, rtol=0.05, atol=0.02)
    efficiency = e_cuda.shapley_train.sum() - (e_cuda.values_train[-1] - e_cuda.values_train[0])
    assert abs(efficiency) < 1e-9


def test_components_of_an_onnx_graph_train_on_cuda_and_map_on_the_cpu(tmp_path: Path) -> None:
    """ONNX heads and tails run on the CPU (onnxruntime); the nets train on the GPU."""
    model, _ = train_demo_model(seed=0, epochs=3)
    path = tmp_path / "demo.onnx"
    export_onnx(model, path)
    network = module_of(load_model(path, device=CUDA))
    x_train, y_train, x_test, y_test = split_digits(*load_digits_16())
    data = (x_train[:400], y_train[:400], x_test[:100], y_test[:100])
    plan = TrainingPlan(orders=(0, 2), width=16, epochs=3)
    layer = "/relu2/Relu_output_0"
    on_cuda = analyze_components(network, layer, data, plan=plan, device="cuda")
    on_cpu = analyze_components(network, layer, data, plan=plan, device="cpu")
    np.testing.assert_allclose(on_cuda.test_r2, on_cpu.test_r2, atol=0.02)
    assert on_cuda.effects is not None
    efficiency = on_cuda.effects.shapley_test.sum() - (
        on_cuda.effects.values_test[-1] - on_cuda.effects.values_test[0]
    )
    assert abs(efficiency) < 1e-9
    images = data[2][:3]
    maps = image_maps(on_cuda.trained, images, feature_extractor(network, layer)(images))
    rebuilt = maps.components.sum(axis=1) + maps.residuals
    np.testing.assert_allclose(rebuilt, maps.features, atol=1e-4)


# ------------------------------------------- training, stability, consistency (issues 11, 12)


def test_training_with_order_losses_on_cuda_reaches_the_cpu_accuracy() -> None:
    """Same config on both devices: close accuracies and losses; the same seed twice on CUDA
    gives bit-identical weights; torch's global state is left as it was."""
    from conceptlens.order_loss import OrderLossConfig, OrderTerm
    from conceptlens.training import TrainConfig, train_model

    x_train, y_train, x_test, y_test = split_digits(*load_digits_16())
    data = (x_train[:300], y_train[:300], x_test[:200], y_test[:200])
    order = OrderLossConfig(grid=(2, 2), plus=OrderTerm(0.1, 0.5, 1.0))
    config = TrainConfig(epochs=3, order=order, seed=3)
    deterministic = torch.are_deterministic_algorithms_enabled()
    _, rec_cpu = train_model(config, *data, device="cpu")
    a, rec_cuda = train_model(config, *data, device="cuda")
    b, _ = train_model(config, *data, device="cuda")
    assert all(p.device.type == "cuda" for p in a.parameters())
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert rec_cuda[-1].test_accuracy == pytest.approx(rec_cpu[-1].test_accuracy, abs=0.05)
    assert rec_cuda[-1].loss_cls == pytest.approx(rec_cpu[-1].loss_cls, rel=0.1, abs=0.02)
    assert rec_cuda[-1].passes == rec_cpu[-1].passes


def test_pgd_on_cuda_raises_the_loss_as_on_the_cpu() -> None:
    from conceptlens.stability import pgd_attack
    from conceptlens.training import adversarial_accuracy

    model, _ = train_demo_model(seed=0, epochs=3)
    model.eval()
    x, y = load_digits_16()
    xs, ys = x[:64], y[:64]
    on_cpu = adversarial_accuracy(model, xs, ys, eps=0.1, steps=5, clamp=None)
    gpu = model.to(CUDA)
    on_cuda = adversarial_accuracy(gpu, xs.to(CUDA), ys.to(CUDA), eps=0.1, steps=5, clamp=None)
    assert on_cuda == pytest.approx(on_cpu, abs=2 / 64)
    d_cuda = pgd_attack(gpu, xs[0].to(CUDA), int(ys[0]), epsilon=0.2, steps=5)
    model.to(CPU)
    d_cpu = pgd_attack(model, xs[0], int(ys[0]), epsilon=0.2, steps=5)
    assert d_cuda.device.type == "cuda"
    assert float(d_cuda.abs().max()) <= 0.2 + 1e-6
    # sign steps agree except where a gradient is ~0 and rounding picks the sign
    assert float((d_cuda.cpu() - d_cpu).abs().le(1e-4).float().mean()) > 0.95


def test_knowledge_consistency_on_cuda_matches_the_cpu() -> None:
    from conceptlens.components.consistency import ConsistencyPlan, fit_consistency

    gen = torch.Generator().manual_seed(0)
    fb = torch.randn(240, 4, 6, 6, generator=gen)
    fa = F.conv2d(fb, torch.randn(3, 4, 3, 3, generator=gen), padding=1).relu() + 0.5
    plan = ConsistencyPlan(width=8, epochs=4, seed=0)
    args = (fb[:180], fa[:180], fb[180:], fa[180:])
    on_cpu = fit_consistency(*args, plan=plan, device="cpu").variances("test")
    on_cuda = fit_consistency(*args, plan=plan, device="cuda").variances("test")
    np.testing.assert_allclose(on_cuda["cumulative_r2"], on_cpu["cumulative_r2"], atol=0.02)


def test_cycle_reliability_on_cuda_matches_the_cpu() -> None:
    from conceptlens.components.reliable import cycle_reliability

    t = toy(gaussian_images(2), hat_net(3))
    settings: dict[str, Any] = {"orders": (0, 1), "width": 8, "epochs": 4, "seed": 0}
    feats = ([t.f_train] * 3, [t.f_test] * 3)
    on_cpu = cycle_reliability(t.x_train, feats[0], t.x_test, feats[1], device="cpu", **settings)
    on_cuda = cycle_reliability(t.x_train, feats[0], t.x_test, feats[1], device="cuda", **settings)
    np.testing.assert_allclose(
        on_cuda.reliability.cumulative, on_cpu.reliability.cumulative, atol=0.02
    )
    np.testing.assert_allclose(on_cuda.head_r2, on_cpu.head_r2, atol=0.03)
