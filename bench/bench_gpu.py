"""The engine on a CUDA device against the CPU, measured side by side in one run.

    python bench/bench_gpu.py [--repeats 5] [--epochs 5] [--json PATH]

1. ``logit_table`` of the demo CNN (safetensors, torch) at n = 16 players (4×4 grid, 65,536
   masked images) on CUDA and on the CPU (all cores), interleaved, at the default batch of
   2,048, at 16,384 and at 65,536 (one batch); the two tables are compared.
2. On CUDA: ``logit_table`` against the bare forward passes (``model.predict``) over the same
   batches, pre-built on the device — the end-to-end overhead ratio — and, beside them,
   ``MaskedModelGame.logits`` (the same batches in one thread, one copy back at the end).
3. Disentangler training for ``bench_components``' layer, orders, width and batch size on
   the demo's 1,500 training digits, on CUDA and on the CPU (one thread, as
   ``train_disentanglers`` runs there): seconds per epoch of each order, scoring included.

Needs a CUDA device. Prints Markdown tables; timings are medians of ``--repeats`` (of three
times as many for the millisecond runs of part 2), and every ratio compares runs made in this
process, interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_components import BATCH, LAYER, ORDERS, WIDTH

from conceptlens.components import extract, feature_extractor, train_disentanglers
from conceptlens.game import MaskedModelGame, logit_table, mask_range_coalitions
from conceptlens.images import load_image
from conceptlens.models.demo import (
    load_digits_16,
    split_digits,
    train_demo_model,
    write_demo_model,
)
from conceptlens.models.loaders import LoadedModel, load_model
from conceptlens.players import PatchGrid, Players, make_baseline, masked_inputs

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
N_ROWS, N_COLS = 4, 4


def synced(device: torch.device, fn: Callable[[], object]) -> float:
    """Seconds of ``fn()``, the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def demo_game(demo: Path, device: torch.device, batch: int) -> tuple[MaskedModelGame, LoadedModel]:
    """The demo CNN on ``device`` and its 16-player game on sample 3 (mean baseline)."""
    manifest = json.loads((demo / "demo_model.json").read_text())
    model = load_model(demo / manifest["files"]["safetensors"], device=device)
    image = load_image(demo / manifest["samples"][3]["file"], channels=1, size=(16, 16))
    players = Players(PatchGrid(N_ROWS, N_COLS, 16, 16))
    base = make_baseline(image, "mean")
    game = MaskedModelGame(model.predict, image, players, base, device=device, batch_size=batch)
    return game, model


def bench_table(demo: Path, batches: list[int], repeats: int) -> list[dict[str, Any]]:
    """``logit_table`` at n = 16 on CUDA and on the CPU, interleaved, per batch size."""
    rows = []
    for batch in batches:
        games = {dev.type: demo_game(demo, dev, batch)[0] for dev in (CPU, CUDA)}
        tables = {kind: logit_table(game) for kind, game in games.items()}  # warm-up
        times: dict[str, list[float]] = {"cpu": [], "cuda": []}
        for _ in range(repeats):
            for kind, game in games.items():
                times[kind].append(synced(game.device, partial(logit_table, game)))
        cpu, cuda = statistics.median(times["cpu"]), statistics.median(times["cuda"])
        passes = 1 << (N_ROWS * N_COLS)
        rows.append(
            {
                "batch": batch,
                "cpu_s": cpu,
                "cuda_s": cuda,
                "cpu_per_s": passes / cpu,
                "cuda_per_s": passes / cuda,
                "speedup": cpu / cuda,
                "max_abs_diff": float(np.abs(tables["cpu"] - tables["cuda"]).max()),
                "max_abs_logit": float(np.abs(tables["cpu"]).max()),
            }
        )
    return rows


def bare_batches(game: MaskedModelGame) -> list[torch.Tensor]:
    """Every masked input of the game, pre-built on its device in its batches."""
    n, total = game.n_players, 1 << game.n_players
    out = []
    for start in range(0, total, game.batch_size):
        coal = mask_range_coalitions(start, min(start + game.batch_size, total), n, game.device)
        presence = game.players.pixel_presence(coal)
        out.append(masked_inputs(game.x, game.baseline, presence).contiguous())
    return out


def bench_overhead(demo: Path, batches: list[int], repeats: int) -> list[dict[str, Any]]:
    """On CUDA: ``logit_table`` against only the model's forward passes, same batches."""
    rows = []
    for batch in batches:
        game, model = demo_game(demo, CUDA, batch)
        inputs = bare_batches(game)

        def bare(model: LoadedModel = model, inputs: list[torch.Tensor] = inputs) -> None:
            for x in inputs:
                model.predict(x)

        coal = mask_range_coalitions(0, 1 << game.n_players, game.n_players, CUDA)
        runs: dict[str, Callable[[], object]] = {
            "table": partial(logit_table, game),
            "logits": partial(game.logits, coal),
            "bare": bare,
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(repeats):
            for name, fn in runs.items():
                times[name].append(synced(CUDA, fn))
        t, g, b = (statistics.median(times[name]) for name in ("table", "logits", "bare"))
        rows.append(
            {
                "batch": batch,
                "table_s": t,
                "logits_s": g,
                "bare_s": b,
                "ratio": t / b,
                "logits_ratio": g / b,
            }
        )
    return rows


def bench_disentanglers(epochs: int, repeats: int) -> list[dict[str, Any]]:
    """Seconds per epoch of each order, CPU (one thread) and CUDA, interleaved."""
    model, _ = train_demo_model(seed=0)
    x_train, _, x_test, _ = split_digits(*load_digits_16())
    fx = feature_extractor(model, LAYER)
    data = (x_train, extract(fx, x_train), x_test, extract(fx, x_test))

    def train(device: torch.device, orders: tuple[int, ...], n_epochs: int) -> list[Any]:
        return train_disentanglers(
            *data, orders=orders, width=WIDTH, batch_size=BATCH, epochs=n_epochs, device=device
        )

    train(CUDA, (0, 1), 1)  # warm-up: CUDA context, kernels, cuDNN
    per_epoch: dict[str, list[list[float]]] = {"cpu": [], "cuda": []}
    r2: dict[str, list[float]] = {}
    for _ in range(repeats):
        for device in (CPU, CUDA):
            trained = train(device, ORDERS, epochs)
            per_epoch[device.type].append([t.seconds / epochs for t in trained])
            r2[device.type] = [t.test_r2 for t in trained]
    rows = []
    for k, order in enumerate(ORDERS):
        cpu = statistics.median(run[k] for run in per_epoch["cpu"])
        cuda = statistics.median(run[k] for run in per_epoch["cuda"])
        rows.append(
            {
                "order": order,
                "cpu_s": cpu,
                "cuda_s": cuda,
                "speedup": cpu / cuda,
                "cpu_r2": r2["cpu"][k],
                "cuda_r2": r2["cuda"][k],
            }
        )
    return rows


def conv_precision() -> str:
    """cuDNN's float32 convolution precision setting (``tf32`` by default, or ``ieee``)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None:
        return str(conv.fp32_precision)
    return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Device: {results['device']}; CPU: {results['cpu_threads']} torch threads; torch "
        f"{results['torch']}; cuDNN conv float32 precision: {results['conv_precision']}.",
        "",
        "### `logit_table`, demo CNN, n = 16 (65,536 masked images)",
        "",
        "| batch | CPU (s) | CUDA (s) | CPU images/s | CUDA images/s | CUDA speed-up "
        "| max abs logit diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["table"]:
        lines.append(
            f"| {r['batch']:,} | {r['cpu_s']:.3f} | {r['cuda_s']:.3f} | {r['cpu_per_s']:,.0f} "
            f"| {r['cuda_per_s']:,.0f} | ×{r['speedup']:.1f} | {r['max_abs_diff']:.1e} "
            f"(of {r['max_abs_logit']:.1f}) |"
        )
    lines += [
        "",
        "### CUDA: `logit_table` against the bare forward passes over the same batches",
        "",
        "| batch | logit_table (s) | game.logits, one thread (s) | bare forward (s) "
        "| ratio logit_table / bare | ratio game.logits / bare |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["overhead"]:
        lines.append(
            f"| {r['batch']:,} | {r['table_s']:.4f} | {r['logits_s']:.4f} | {r['bare_s']:.4f} "
            f"| {r['ratio']:.2f} | {r['logits_ratio']:.2f} |"
        )
    lines += [
        "",
        f"### Disentanglers, layer `{LAYER}`, width {WIDTH}, batch {BATCH}, "
        f"{results['epochs']} epochs per order",
        "",
        "| order l | CPU, 1 thread (s/epoch) | CUDA (s/epoch) | CUDA speed-up "
        "| test R² CPU | test R² CUDA |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["disentanglers"]:
        lines.append(
            f"| {r['order']} | {r['cpu_s']:.3f} | {r['cuda_s']:.3f} | ×{r['speedup']:.1f} "
            f"| {r['cpu_r2']:.3f} | {r['cuda_r2']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each table")
    parser.add_argument("--epochs", type=int, default=5, help="disentangler epochs per order")
    parser.add_argument("--train-repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    batches = [2048, 16384, 65536]
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp)
        write_demo_model(demo)
        results: dict[str, Any] = {
            "device": torch.cuda.get_device_name(CUDA),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "conv_precision": conv_precision(),
            "table": bench_table(demo, batches, args.repeats),
            "overhead": bench_overhead(demo, batches, 3 * args.repeats),  # milliseconds each
        }
    results["epochs"] = args.epochs
    results["disentanglers"] = bench_disentanglers(args.epochs, args.train_repeats)
    print(markdown(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
