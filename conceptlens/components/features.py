"""The target feature ``f(x)`` at a chosen layer, and the rest of the network after it.

SCIENCE.md §7: the feature components replace ``f`` in the rest of the network, so
effectiveness and over-fitting need two pieces of the model:

* :func:`feature_extractor` — ``x ↦ f(x)``, the output of a named submodule. Eager torch
  modules get a forward hook that stops the forward pass at the layer (nothing after it
  runs). TorchScript modules refuse hooks; for them the top-level children are run in
  order, which is checked once against the whole model on the first batch.
* :func:`tail_runner` — ``f ↦ logits``, the submodules after the layer, for chain-shaped
  models: the project architecture :class:`~conceptlens.models.architectures.DigitCNN`,
  ``nn.Sequential``, and others whose forward is checked to equal the chain of their
  top-level children on an example input.

ONNX graphs are cut at a node output instead (:class:`.onnx_graph.OnnxNetwork`): both
functions, and :func:`layer_names`, take either kind of :data:`Network`;
:func:`module_of` gives the right one for a loaded model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, Protocol

import torch
from torch import nn

from conceptlens.models.architectures import DigitCNN

__all__ = [
    "ComponentsError",
    "FeatureFn",
    "GraphNetwork",
    "Network",
    "extract",
    "feature_extractor",
    "layer_names",
    "layer_shapes",
    "module_of",
    "tail_runner",
]

FeatureFn = Callable[[torch.Tensor], torch.Tensor]
"""``[B, …] → [B, …]`` without gradients: an extractor ``x ↦ f(x)`` or a tail ``f ↦ logits``."""


class GraphNetwork(Protocol):
    """A network that is not a torch module and cuts itself at a layer (an ONNX graph).

    :class:`~conceptlens.components.onnx_graph.OnnxNetwork` is the one implementation;
    a protocol keeps this module free of onnx imports.
    """

    def layers(self) -> list[str]:
        """Names of the layers a feature can be read at, in graph order."""
        ...

    def feature_extractor(self, layer: str) -> FeatureFn:
        """``x ↦ f(x)`` at ``layer``."""
        ...

    def tail_runner(self, layer: str, *, example: torch.Tensor | None = None) -> FeatureFn:
        """``f ↦ logits`` after ``layer``, checked on ``example`` when given."""
        ...

    def layer_shapes(self) -> dict[str, list[int]]:
        """Each layer's per-sample shape, where the graph fixes it."""
        ...


Network = nn.Module | GraphNetwork
"""What the components analysis reads features from: a torch module or an ONNX graph."""

_TAIL_NEEDED = (
    "effectiveness and over-fitting need the part of the network after the layer; "
    "not available for this model because"
)
_CHAIN_TOLERANCE = 1e-5


class ComponentsError(ValueError):
    """The feature-components analysis cannot run as asked; the message says why, for a person."""


class _Stop(Exception):
    """Raised by the hook once the layer's output is captured: nothing after it runs."""


def layer_names(module: Network) -> list[str]:
    """Names of every submodule (``named_modules`` without the root), in definition order.

    For an ONNX graph: its usable node outputs (:meth:`.onnx_graph.OnnxNetwork.layers`).
    """
    if not isinstance(module, nn.Module):
        return module.layers()
    return [name for name, _ in module.named_modules() if name]


def layer_shapes(module: Network, example: torch.Tensor) -> dict[str, list[int]]:
    """The per-sample output shape of each layer (those that return one tensor), e.g. for
    choosing a layer: ``{"relu2": [32, 8, 8], …}``.

    Torch modules run ``example`` (a batch on the module's device) once with forward hooks;
    TorchScript (no hooks) runs its top-level children in order and gives their shapes, or
    none when that chain fails; ONNX graphs give the shapes their inference fixed.

    Example:
        >>> layer_shapes(DigitCNN(), torch.zeros(1, 1, 16, 16))["relu2"]
        [32, 8, 8]
    """
    if not isinstance(module, nn.Module):
        return module.layer_shapes()
    shapes: dict[str, list[int]] = {}
    if isinstance(module, torch.jit.ScriptModule):
        try:
            with _evaluating(module), torch.inference_mode():
                h = example
                for name, child in _children(module):
                    h = child(h)
                    shapes[name] = list(h.shape[1:])
        except Exception:
            return {}
        return shapes

    def hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def record(_m: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and name not in shapes:
                shapes[name] = list(output.shape[1:])

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in module.named_modules() if name]
    try:
        with _evaluating(module), torch.inference_mode():
            module(example)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def module_of(loaded: Any) -> Network:
    """What to analyse in a :class:`~conceptlens.models.loaders.LoadedModel`, or a clear error.

    The torch module (state dict, safetensors, TorchScript), or for ONNX models an
    :class:`~conceptlens.components.onnx_graph.OnnxNetwork` on the model's device. Cost:
    one ONNX shape inference over the graph; nothing for torch modules.
    """
    module = getattr(loaded, "module", None)
    if isinstance(module, nn.Module):
        return module
    graph = getattr(loaded, "onnx_model", None)
    if graph is not None:
        from conceptlens.components.onnx_graph import OnnxNetwork  # imports this module

        return OnnxNetwork(graph, device=getattr(loaded, "device", "cpu"))
    fmt = getattr(loaded, "format", type(loaded).__name__)
    raise ComponentsError(
        f"feature components need a torch module or an ONNX graph; this model ({fmt}) has neither."
    )


def feature_extractor(module: Network, layer: str) -> FeatureFn:
    """``x ↦ f(x)``: the output of submodule ``layer`` for a batch ``x`` (no gradients, eval mode).

    Cost: the forward pass up to the layer (the hook stops it there). For TorchScript the
    top-level children run in order; the first call also runs the whole model once to check
    that this chain reproduces it, and raises :class:`ComponentsError` if not. For an ONNX
    graph, ``layer`` is a node output and the graph up to it runs in onnxruntime (see
    :meth:`.onnx_graph.OnnxNetwork.feature_extractor`).

    Example:
        >>> net = DigitCNN()
        >>> feature_extractor(net, "relu2")(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 32, 8, 8])
    """
    if not isinstance(module, nn.Module):
        return module.feature_extractor(layer)
    target = _submodule(module, layer)
    if isinstance(module, torch.jit.ScriptModule):
        return _scripted_extractor(module, layer)

    def extract(x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def hook(_m: nn.Module, _inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                raise ComponentsError(f"layer '{layer}' does not return one tensor")
            captured.append(output.detach().clone())
            raise _Stop

        handle = target.register_forward_hook(hook)
        try:
            with _evaluating(module), torch.inference_mode():
                module(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ComponentsError(f"layer '{layer}' did not run in the model's forward pass")
        return captured[0]

    return extract


def tail_runner(module: Network, layer: str, *, example: torch.Tensor | None = None) -> FeatureFn:
    """``f ↦ logits``: the submodules after ``layer``, run in order (no gradients, eval mode).

    ``tail(f(x)) == module(x)`` for chain-shaped models. Known chains: :class:`DigitCNN`
    and ``nn.Sequential``. Any other module (TorchScript included) qualifies when
    ``example`` (an input batch) is given and running its top-level children in order
    reproduces its logits on it. ``layer`` must be a top-level child. Cost per call: the
    forward pass of the tail only. An ONNX graph is cut after the node output ``layer``
    (:meth:`.onnx_graph.OnnxNetwork.tail_runner`; checked on ``example`` when given).

    Raises:
        ComponentsError: unknown layer, or no runnable tail (the message says why).

    Example:
        >>> net = DigitCNN().eval()
        >>> x = torch.rand(3, 1, 16, 16)
        >>> tail = tail_runner(net, "relu2")
        >>> bool(torch.allclose(tail(feature_extractor(net, "relu2")(x)), net(x)))
        True
    """
    if not isinstance(module, nn.Module):
        return module.tail_runner(layer, example=example)
    _submodule(module, layer)
    children = _children(module)
    if layer not in dict(children):
        parent = layer.split(".")[0]
        _no_tail(
            f"'{layer}' sits inside '{parent}'; pick one of the top-level layers "
            f"({', '.join(name for name, _ in children)})"
        )
    if not _known_chain(module):
        _check_chain(module, children, example)
    index = [name for name, _ in children].index(layer)
    return _chain_runner(module, [child for _, child in children[index + 1 :]])


def extract(fn: FeatureFn, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in batches along the first axis and concatenate. Cost: one pass."""
    return torch.cat([fn(batch) for batch in x.split(batch_size)])


def _submodule(module: nn.Module, layer: str) -> nn.Module:
    modules = dict(module.named_modules())
    if not layer or layer not in modules:
        names = layer_names(module)
        shown = ", ".join(names[:40]) + (", …" if len(names) > 40 else "")
        raise ComponentsError(f"unknown layer '{layer}'; the model's layers are: {shown}")
    return modules[layer]


def _children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return list(module.named_children())


def _known_chain(module: nn.Module) -> bool:
    """Project architectures and ``nn.Sequential`` run their children in definition order."""
    return type(module) is DigitCNN or type(module) is nn.Sequential


def _no_tail(reason: str) -> NoReturn:
    raise ComponentsError(f"{_TAIL_NEEDED} {reason}.")


def _check_chain(
    module: nn.Module, children: list[tuple[str, nn.Module]], example: torch.Tensor | None
) -> None:
    """Raise unless running the children in order gives the module's own output on ``example``."""
    kind = "a TorchScript program" if isinstance(module, torch.jit.ScriptModule) else "its code"
    if example is None:
        _no_tail(
            f"its forward pass is {kind}, not a known chain of layers (pass an example "
            "input to check whether its top-level layers run in order)"
        )
    if not _chain_matches(module, [child for _, child in children], example):
        _no_tail(f"its forward pass ({kind}) is not its top-level layers run in order")


def _chain_matches(module: nn.Module, chain: list[nn.Module], x: torch.Tensor) -> bool:
    try:
        with _evaluating(module), torch.inference_mode():
            expected = module(x)
            got = x
            for child in chain:
                got = child(got)
    except Exception:
        return False
    return (
        isinstance(expected, torch.Tensor)
        and got.shape == expected.shape
        and bool(torch.allclose(got, expected, rtol=_CHAIN_TOLERANCE, atol=_CHAIN_TOLERANCE))
    )


def _chain_runner(owner: nn.Module, chain: list[nn.Module]) -> FeatureFn:
    def run(h: torch.Tensor) -> torch.Tensor:
        with _evaluating(owner), torch.inference_mode():
            h = h.clone()  # an in-place first layer (ReLU(inplace=True)) must not touch the input
            for child in chain:
                h = child(h)
        return h

    return run


def _scripted_extractor(module: nn.Module, layer: str) -> FeatureFn:
    """TorchScript: run the top-level children up to ``layer``, once checked against the model."""
    children = _children(module)
    names = [name for name, _ in children]
    if layer not in names:
        raise ComponentsError(
            f"TorchScript models take no hooks; pick a top-level layer ({', '.join(names)}) "
            f"instead of '{layer}'."
        )
    head = _chain_runner(module, [child for _, child in children[: names.index(layer) + 1]])
    checked = False

    def extract(x: torch.Tensor) -> torch.Tensor:
        nonlocal checked
        if not checked:
            if not _chain_matches(module, [child for _, child in children], x):
                raise ComponentsError(
                    "this TorchScript model's forward pass is not its top-level layers run "
                    "in order, so its intermediate features cannot be read (no hooks in "
                    "TorchScript); export it as a state dict of a ConceptLens architecture."
                )
            checked = True
        return head(x).detach().clone()

    return extract


@contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; each submodule's training flag is restored afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag
