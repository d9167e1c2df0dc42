"""What the model sandbox can be asked to do; runs only inside the sandbox process.

Every operation takes a JSON header and arrays and returns a JSON-ready result and arrays:

* ``have`` — whether a model (by key) is loaded here already;
* ``load`` — load model bytes (``load_model``: format from the bytes, the TorchScript
  operator check, one test pass) and keep it under its key (a few, least recent dropped);
* ``validate`` — what the service records about a model: format, shape, classes, layers
  with their shapes, seconds per forward pass;
* ``logits`` — rows ``start … stop−1`` of the logit table of one image (the masked-model
  game of :mod:`conceptlens.game`);
* ``coalitions`` — logits of the same game for given coalitions (bit-packed rows), for
  sampled analyses, whose coalitions are drawn by the worker;
* ``learn_baseline`` — the learned baseline of one image (:mod:`conceptlens.learned_baseline`;
  torch models only: it needs gradients);
* ``pgd`` — an L∞ PGD attack on one image (:func:`conceptlens.stability.pgd_attack`; torch
  models only);
* ``components`` — the §7 analysis of a layer (:mod:`worker.components_compute`).
* ``consistency`` — §8 between two models' layers (:mod:`worker.consistency_compute`).

Long operations report ``{"progress": [done, total]}`` messages on the way.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptlens.components.features import (
    ComponentsError,
    layer_names,
    layer_shapes,
    module_of,
)
from conceptlens.components.pipeline import TrainingPlan
from conceptlens.game import MaskedModelGame, logit_table
from conceptlens.images import ImageError
from conceptlens.models.loaders import LoadedModel, ModelLoadError, load_model
from conceptlens.players import PatchGrid, Players
from worker.sandbox import wire

#: Loaded models kept per sandbox.
KEEP_MODELS = 4
#: Seconds between progress messages (the last one is always sent).
PROGRESS_EVERY_S = 0.2


def kind_of(error: BaseException) -> str:
    """``user`` (the message is for a person), ``memory`` or ``internal``."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError) or "can't allocate memory" in str(
        error
    ):
        return "memory"
    if isinstance(error, ModelLoadError | ImageError | ComponentsError | ValueError):
        return "user"
    return "internal"


class Operations:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._table: dict[str, Callable[[dict[str, Any], wire.Arrays], Any]] = {
            "ping": lambda h, a: ({"pong": True}, {}),
            "have": self.have,
            "load": self.load,
            "validate": self.validate,
            "logits": self.logits,
            "coalitions": self.coalitions,
            "learn_baseline": self.learn_baseline,
            "pgd": self.pgd,
            "components": self.components,
            "consistency": self.consistency,
        }

    def run(self, header: dict[str, Any], arrays: wire.Arrays) -> tuple[Any, wire.Arrays]:
        op = self._table.get(str(header.get("op")))
        if op is None:
            raise ValueError(f"unknown sandbox operation {header.get('op')!r}")
        result: tuple[Any, wire.Arrays] = op(header, arrays)
        return result

    # ---------------------------------------------------------------- models

    def model(self, key: str) -> LoadedModel:
        if key not in self.models:
            raise KeyError(f"model {key} is not loaded in this sandbox")
        self.models.move_to_end(key)
        return self.models[key]

    def have(self, h: dict[str, Any], _: wire.Arrays) -> tuple[Any, wire.Arrays]:
        return {"have": h["key"] in self.models}, {}

    def load(self, h: dict[str, Any], arrays: wire.Arrays) -> tuple[Any, wire.Arrays]:
        shape = tuple(h["input_shape"]) if h.get("input_shape") else None
        with tempfile.TemporaryDirectory(dir=".") as tmp:  # the scratch folder
            path = Path(tmp) / "model"
            path.write_bytes(arrays["model"].tobytes())
            model = load_model(
                path,
                input_shape=shape,
                architecture=h.get("architecture"),
                device=h.get("device") or "cpu",
                max_bytes=int(h["max_bytes"]),
                max_input_values=int(h["max_input_values"]),
            )
        self.models[h["key"]] = model
        while len(self.models) > KEEP_MODELS:
            self.models.popitem(last=False)
        return _describe(model), {}

    def validate(self, h: dict[str, Any], _: wire.Arrays) -> tuple[Any, wire.Arrays]:
        model = self.model(h["key"])
        network = module_of(model)
        layers = layer_names(network)[:500]  # layers usable as features
        try:
            example = torch.zeros((1, *model.input_shape), device=model.device)
            shapes = layer_shapes(network, example)
        except Exception:  # the picker shows no shapes; the model itself passed its test
            shapes = {}
        return {
            **_describe(model),
            "layers": layers,
            "layer_shapes": {name: shapes[name] for name in layers if name in shapes},
            "seconds_per_pass": seconds_per_pass(model),
        }, {}

    # ---------------------------------------------------------------- analyses

    def logits(self, h: dict[str, Any], arrays: wire.Arrays) -> tuple[Any, wire.Arrays]:
        game = self._game(h, arrays)
        t0 = time.perf_counter()
        table = logit_table(
            game, start=int(h["start"]), stop=int(h["stop"]), progress=self.progress
        )
        return {"seconds": time.perf_counter() - t0}, {"logits": table}

    def coalitions(self, h: dict[str, Any], arrays: wire.Arrays) -> tuple[Any, wire.Arrays]:
        game = self._game(h, arrays)
        packed = torch.from_numpy(np.ascontiguousarray(arrays["packed"], dtype=np.uint8))
        n, total, step = game.n_players, int(packed.shape[0]), int(h["batch_size"])
        if packed.ndim != 2 or packed.shape[1] != (n + 7) // 8:
            raise ValueError(f"coalitions must be packed rows of {n} players")
        weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
        outs = []
        t0 = time.perf_counter()
        for start in range(0, total, step):
            rows = packed[start : start + step]
            bits = (rows.unsqueeze(-1) & weights).ne(0).reshape(len(rows), -1)[:, :n]
            outs.append(game.logits(bits))
            self.progress(min(start + step, total), total)
        table = np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)
        return {"seconds": time.perf_counter() - t0}, {"logits": table}

    def learn_baseline(self, h: dict[str, Any], arrays: wire.Arrays) -> tuple[Any, wire.Arrays]:
        from conceptlens.learned_baseline import learn_baseline

        model = self.model(h["key"])
        module = _differentiable(model, "a learned baseline")
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        x = torch.from_numpy(arrays["x"]).to(model.device)
        players = _players(h, x)
        target = h.get("target")
        if target is None:  # the class predicted on the whole image
            target = int(model.predict(x[None]).argmax(dim=1)[0])
        out = learn_baseline(
            module, x, players, torch.from_numpy(arrays["start"]).to(model.device),
            target=int(target), output=h["output"], radius=float(h["radius"]),
            steps=int(h["steps"]), batch_size=int(h["batch_size"]), progress=self.progress,
        )  # fmt: skip
        result = {
            "target": int(target),
            "loss_before": out.loss_before,
            "loss_after": out.loss_after,
            "history": out.history,
        }
        return result, {"baseline": out.baseline}

    def pgd(self, h: dict[str, Any], arrays: wire.Arrays) -> tuple[Any, wire.Arrays]:
        from conceptlens.stability import pgd_attack

        model = self.model(h["key"])
        module = _differentiable(model, "the PGD attack")
        x = torch.from_numpy(arrays["x"]).to(model.device)
        target = int(model.predict(x[None]).argmax(dim=1)[0])
        delta = pgd_attack(
            module, x, target, epsilon=float(h["epsilon"]), steps=int(h["steps"]),
            seed=int(h["seed"]),
        )  # fmt: skip
        return {"target": target}, {"delta": delta.detach().cpu().numpy().astype(np.float32)}

    def _game(self, h: dict[str, Any], arrays: wire.Arrays) -> MaskedModelGame:
        model = self.model(h["key"])
        x = torch.from_numpy(arrays["x"])
        return MaskedModelGame(
            model.predict, x, _players(h, x), torch.from_numpy(arrays["baseline"]),
            device=model.device, batch_size=int(h["batch_size"]),
        )  # fmt: skip

    def components(self, h: dict[str, Any], arrays: wire.Arrays) -> tuple[Any, wire.Arrays]:
        from worker.components_compute import compute_components

        module = module_of(self.model(h["key"]))
        exemplars = [module_of(self.model(key)) for key in h.get("exemplars", [])]
        data = tuple(
            torch.from_numpy(arrays[k]) for k in ("x_train", "y_train", "x_test", "y_test")
        )
        metrics, maps = compute_components(
            module, exemplars, h["layer"], data,  # type: ignore[arg-type]
            labelled=bool(h["labelled"]), plan=TrainingPlan(**h["plan"]),
            device=torch.device(h.get("device") or "cpu"), progress=self.progress,
            map_images=int(h["maps"]["images"]), max_map_values=int(h["maps"]["max_values"]),
        )  # fmt: skip
        return metrics, maps

    def consistency(self, h: dict[str, Any], arrays: wire.Arrays) -> tuple[Any, wire.Arrays]:
        from conceptlens.components.consistency import ConsistencyPlan
        from worker.consistency_compute import compute_consistency

        a, b = module_of(self.model(h["key"])), module_of(self.model(h["compare_key"]))
        x = {k: torch.from_numpy(v) for k, v in arrays.items()}
        plan = h["plan"]
        return compute_consistency(
            a, h["layer"], b, h["compare_layer"], (x["xa_train"], x["xa_test"]),
            (x["xb_train"], x["xb_test"]), plan=ConsistencyPlan(**plan),
            device=torch.device(h.get("device") or "cpu"), progress=self.progress,
        )  # fmt: skip

    # ---------------------------------------------------------------- progress

    _last = 0.0

    def progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_S and done < total:
            return
        self._last = now
        wire.send(self.sock, {"progress": [int(done), int(total)]})


def _players(h: dict[str, Any], x: torch.Tensor) -> Players:
    """The players a request names: its grid over ``x`` (``[C, H, W]``) and chosen cells."""
    rows, cols = h["grid"]
    grid = PatchGrid(int(rows), int(cols), int(x.shape[1]), int(x.shape[2]))
    return Players(grid, h.get("players"), others_present=bool(h["others_present"]))


def _differentiable(model: LoadedModel, what: str) -> torch.nn.Module:
    """The model's torch module in eval mode, or a sentence saying why ``what`` needs one."""
    module = getattr(model, "module", None)
    if not isinstance(module, torch.nn.Module):
        raise ValueError(
            f"{what} needs gradients through the model, which ONNX graphs do not give here; "
            "choose a PyTorch model (TorchScript or safetensors weights)"
        )
    module.eval()
    return module


def _describe(model: LoadedModel) -> dict[str, Any]:
    return {
        "format": model.format,
        "input_shape": list(model.input_shape),
        "num_classes": model.num_classes,
        "architecture": model.architecture,
    }


def seconds_per_pass(model: LoadedModel, batch: int = 256) -> float:
    """Time per forward pass on this device (best of three batches of zeros)."""
    x = torch.zeros((batch, *model.input_shape), device=model.device)
    model.predict(x)  # warm-up
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        model.predict(x)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        best = min(best, time.perf_counter() - t0)
    return best / batch
