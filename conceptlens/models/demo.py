"""The demo model: a :class:`DigitCNN` trained on scikit-learn's bundled digits.

Everything here is offline and deterministic: the data ship with scikit-learn (1,797
8×8 digits, no download), training runs on one CPU thread in about a second, and the
same seed gives bit-identical weights on any machine. :func:`write_demo_model` writes
the model in every format :func:`~conceptlens.models.loaders.load_model` accepts, plus
sample PNGs, so the whole pipeline can be tried without bringing a model.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..training import fit, reproducible
from .architectures import ARCHITECTURES, DigitCNN
from .weights import weights_bytes

__all__ = [
    "DEMO_FILES",
    "TEST_SIZE",
    "export_onnx",
    "load_digits_16",
    "pixels_to_float",
    "safetensors_bytes",
    "split_digits",
    "train_demo_model",
    "write_demo_model",
]

ARCHITECTURE = "digit_cnn"
TEST_SIZE = 297
"""Number of samples held out for testing (the tail of a fixed shuffle)."""
TRAIN_SIZE = 1797 - TEST_SIZE
"""Images in the digits' training split (1,500): a model records how many it trained on."""
SPLIT_SEED = 0
"""Seed of the fixed shuffle behind the train/test split; independent of the training seed."""
DEMO_FILES = {
    "onnx": "digit_cnn.onnx",
    "torchscript": "digit_cnn.torchscript.pt",
    "safetensors": "digit_cnn.safetensors",
    "state_dict": "digit_cnn.state_dict.pt",
}
"""File name of the demo model in each format, keyed by the format name ``load_model`` reports."""

_BATCH_SIZE = 32
_MAX_LR = 1e-2


def pixels_to_float(pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Map 8-bit pixels (0..255) to float32 in [0, 1] exactly as :func:`load_digits_16` does.

    Example:
        >>> pixels_to_float(np.array([0, 255], dtype=np.uint8))
        tensor([0., 1.])
    """
    return torch.as_tensor(pixels).to(torch.float32) / 255


def _quantise(images: torch.Tensor) -> torch.Tensor:
    """Round float images in [0, 1] to 8-bit pixels (``round(x * 255)``)."""
    return torch.round(images.clamp(0, 1) * 255).to(torch.uint8)


def load_digits_16() -> tuple[torch.Tensor, torch.Tensor]:
    """Return scikit-learn's digits as 16×16 images: ``(images [N,1,16,16] float32, labels [N])``.

    Pixels (0..16) are scaled to [0, 1], upsampled ×2 (bilinear, ``align_corners=False``)
    and quantised to 8 bits, so that writing them as 8-bit PNGs and reading them back
    with :func:`pixels_to_float` gives bit-identical tensors. N = 1797; cost: milliseconds.

    Example:
        >>> images, labels = load_digits_16()
        >>> images.shape, labels.dtype
        (torch.Size([1797, 1, 16, 16]), torch.int64)
    """
    from sklearn.datasets import load_digits  # here: scikit-learn takes seconds to import

    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16).unsqueeze(1)
    large = F.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return pixels_to_float(_quantise(large)), labels


def split_digits(
    images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split into ``(train_x, train_y, test_x, test_y)``: a fixed shuffle, last 297 for test.

    The shuffle uses :data:`SPLIT_SEED`, not the training seed, so every demo model is
    scored on the same test images. (The dataset's own tail comes from other writers and
    is a much harder test set than its head.)
    """
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train, test = order[:-TEST_SIZE], order[-TEST_SIZE:]
    return images[train], labels[train], images[test], labels[test]


def _accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((model(images).argmax(dim=1) == labels).float().mean())


def _fit(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    seed: int,
    on_epoch: Callable[[int, torch.nn.Module], None] | None = None,
) -> None:
    """Adam with a one-cycle learning rate, mini-batches of 32 in a seeded order
    (:func:`conceptlens.training.fit` with no order loss); ``on_epoch(epoch, model)`` after
    each epoch (in eval mode; it must not change the model)."""
    fit(
        model,
        images,
        labels,
        epochs=epochs,
        batch_size=_BATCH_SIZE,
        lr=_MAX_LR,
        seed=seed,
        on_epoch=None if on_epoch is None else lambda epoch, m, _sums: on_epoch(epoch, m),
    )


def train_demo_model(
    *,
    seed: int = 0,
    n_train: int | None = None,
    epochs: int = 12,
    on_epoch: Callable[[int, torch.nn.Module], None] | None = None,
) -> tuple[DigitCNN, dict[str, Any]]:
    """Train the demo :class:`DigitCNN`; return it in eval mode with its scores.

    Args:
        seed: seeds weight initialisation and batch order. Same seed → identical weights.
        n_train: train on only the first ``n_train`` training samples (all 1,500 if None).
        epochs: passes over the training samples.
        on_epoch: called as ``on_epoch(epoch, model)`` after each epoch (1 … epochs), e.g.
            to keep checkpoints; it must not change the model.

    Returns:
        ``(model, info)`` with info keys ``train_accuracy``, ``test_accuracy`` (on the
        fixed 297-sample test split), ``seed``, ``n_train``, ``epochs``.

    Cost: about 80 ms per epoch over all samples on one CPU thread (~1 s by default);
    test accuracy is about 0.99. Global torch state (RNG, threads, determinism flag) is
    restored on return.
    """
    train_x, train_y, test_x, test_y = split_digits(*load_digits_16())
    if n_train is not None:
        train_x, train_y = train_x[:n_train], train_y[:n_train]
    with reproducible(seed):
        model = DigitCNN()
        _fit(model, train_x, train_y, epochs, seed, on_epoch)
        info = {
            "train_accuracy": _accuracy(model, train_x, train_y),
            "test_accuracy": _accuracy(model, test_x, test_y),
            "seed": seed,
            "n_train": len(train_y),
            "epochs": epochs,
        }
    return model, info


@contextmanager
def _quiet_deprecations() -> Iterator[None]:
    """Silence torch 2.13's deprecation notices for TorchScript and the legacy ONNX exporter.

    Both still work and are what we want here (see :func:`export_onnx`); only these
    messages are hidden, and only inside the block.
    """
    with warnings.catch_warnings():
        for message in (
            r"`torch\.jit\.\w+` is deprecated",
            r"You are using the legacy TorchScript-based ONNX export",
            r"The feature will be removed",
        ):
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        yield


def export_onnx(
    model: torch.nn.Module,
    path: Path,
    *,
    architecture: str = ARCHITECTURE,
    dynamic_batch: bool = True,
    batch: int = 1,
) -> None:
    """Export a model of ``architecture`` (input ``[B, *input_shape]``; by default the demo's
    ``[B, 1, 16, 16]``) to ONNX with input ``input`` and output ``logits``; without
    ``dynamic_batch`` the graph fixes ``B = batch``.

    Uses the TorchScript-based exporter (``dynamo=False``): it takes ~0.2 s instead of
    ~3 s, writes no local source paths into the file, and names node outputs after the
    submodules (``/conv1/Conv_output_0``), which later layer picking relies on. Its
    deprecation warnings are silenced here, and only here; so are its tracer warnings:
    GroupNorm's "more than one value per channel" check is traced as a constant, which is
    right (it depends on the channels and the image size, not the batch).
    """
    example = torch.zeros(batch, *ARCHITECTURES[architecture].input_shape)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with _quiet_deprecations():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes=axes,
            dynamo=False,
        )


def safetensors_bytes(model: torch.nn.Module) -> bytes:
    """The demo model's weights as a safetensors file that records the architecture (in
    memory; :func:`~conceptlens.models.weights.weights_bytes`: same weights, same bytes)."""
    return weights_bytes(model, ARCHITECTURE)


def _write_weights(model: torch.nn.Module, out_dir: Path) -> None:
    """Write the four model files of :data:`DEMO_FILES` into ``out_dir``."""
    export_onnx(model, out_dir / DEMO_FILES["onnx"])
    with _quiet_deprecations():
        torch.jit.save(torch.jit.script(model), str(out_dir / DEMO_FILES["torchscript"]))
    (out_dir / DEMO_FILES["safetensors"]).write_bytes(safetensors_bytes(model))
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    torch.save(
        {"architecture": ARCHITECTURE, "state_dict": state}, out_dir / DEMO_FILES["state_dict"]
    )


def _sample_order(labels: torch.Tensor, n_samples: int) -> list[int]:
    """Indices of the first test sample of each class (0, 1, …), then the rest in order."""
    firsts = [int((labels == c).nonzero()[0]) for c in range(10) if (labels == c).any()]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return (firsts + rest)[:n_samples]


def _write_samples(out_dir: Path, n_samples: int) -> list[dict[str, Any]]:
    """Write ``samples/digit_<k>_label_<d>.png`` (16×16 8-bit grayscale) from the test split."""
    _, _, test_x, test_y = split_digits(*load_digits_16())
    (out_dir / "samples").mkdir(exist_ok=True)
    samples = []
    for k, index in enumerate(_sample_order(test_y, n_samples)):
        label = int(test_y[index])
        name = f"samples/digit_{k}_label_{label}.png"
        Image.fromarray(_quantise(test_x[index, 0]).numpy()).save(out_dir / name)
        samples.append({"file": name, "label": label, "test_index": index})
    return samples


def write_demo_model(out_dir: str | Path, *, seed: int = 0, n_samples: int = 8) -> dict[str, Any]:
    """Train the demo model and write it in every supported format, with samples.

    Writes into ``out_dir`` (created if missing): the files of :data:`DEMO_FILES`,
    ``samples/digit_<k>_label_<d>.png`` (``n_samples`` test images, one per class
    first) and ``demo_model.json``, whose content is also returned: ``architecture``,
    ``input_shape``, ``num_classes``, ``labels`` ("0".."9"), ``mean``/``std`` (None:
    the model takes raw [0, 1] pixels), the training info of :func:`train_demo_model`,
    ``files`` and ``samples``. Cost: a few seconds, dominated by training.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, info = train_demo_model(seed=seed)
    _write_weights(model, out)
    spec = ARCHITECTURES[ARCHITECTURE]
    manifest: dict[str, Any] = {
        "architecture": ARCHITECTURE,
        "input_shape": list(spec.input_shape),
        "num_classes": spec.num_classes,
        "labels": [str(c) for c in range(spec.num_classes)],
        "mean": None,
        "std": None,
        **info,
        "files": dict(DEMO_FILES),
        "samples": _write_samples(out, n_samples),
    }
    (out / "demo_model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
