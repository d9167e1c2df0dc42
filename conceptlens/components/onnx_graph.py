"""An ONNX classifier cut at a node output: ``f(x)`` and the network's tail, as graphs.

SCIENCE.md §7 needs the target feature ``x ↦ f(x)`` at a layer and the rest of the network
``f ↦ logits``. In an ONNX graph a layer is a node output (a tensor name such as
``/relu2/Relu_output_0``); :class:`OnnxNetwork` cuts the graph there, in memory:

* the **head** — the nodes the tensor is computed from, with the image input and the
  tensor as the cut graph's input and output;
* the **tail** — the nodes between the tensor and the logits, with the tensor as the cut
  graph's only input. A graph whose tail also needs another tensor (a skip connection
  around the layer, or the image input itself) has no tail at that layer.

Each piece runs in its own onnxruntime session (built once per layer, then reused), with
the loader's session options and its zero-padded chunks for graphs that fix the batch size.
Inputs and outputs go through numpy on the CPU: results are CPU torch tensors.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx
import torch

from conceptlens.components.features import ComponentsError, FeatureFn, _no_tail
from conceptlens.models.loaders import ModelLoadError, onnx_forward, onnx_session

__all__ = ["OnnxNetwork"]

_CHECK_TOLERANCE = 1e-4
_SHOWN_LAYERS = 40


class OnnxNetwork:
    """An ONNX image classifier whose float node outputs can be read and run onwards.

    ``model`` takes one float image batch ``[B, C, H, W]`` (initialisers listed as inputs
    are not counted) and its first graph output is the logits, as
    :func:`~conceptlens.models.loaders.load_model` requires. ``device`` only picks the
    onnxruntime provider (CUDA first when it is a CUDA device and available).

    Cost: one shape inference over the graph on construction; each layer's head and tail
    are cut and compiled into a session the first time they are asked for.

    Example:
        >>> from onnx import TensorProto, helper
        >>> graph = helper.make_graph(
        ...     [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Flatten", ["h"], ["y"])],
        ...     "tiny",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 2, 3])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 6])],
        ... )
        >>> opset = [helper.make_opsetid("", 17)]
        >>> net = OnnxNetwork(helper.make_model(graph, ir_version=10, opset_imports=opset))
        >>> net.layers()
        ['h', 'y']
        >>> f = net.feature_extractor("h")(torch.tensor([[[-1.0, 2, 3], [4, 5, -6]]]))
        >>> net.tail_runner("h")(f)
        tensor([[0., 2., 3., 4., 5., 0.]])
    """

    def __init__(self, model: onnx.ModelProto, *, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._model = _with_shapes(model)
        graph = self._model.graph
        self._weights = {tensor.name for tensor in graph.initializer}
        inputs = [value.name for value in graph.input if value.name not in self._weights]
        if len(inputs) != 1 or not graph.output:
            raise ComponentsError(
                f"feature components need an ONNX classifier with one image input and the "
                f"logits as its first output; this graph has {len(inputs)} input(s) and "
                f"{len(graph.output)} output(s)."
            )
        self.input_name = inputs[0]
        self.output_name = graph.output[0].name
        self._infos: dict[str, onnx.ValueInfoProto] = {
            value.name: value
            for value in (*graph.input, *graph.value_info, *graph.output)
            if value.HasField("type")
        }
        self._producer = {
            name: index for index, node in enumerate(graph.node) for name in node.output if name
        }
        self._from_input = self._computed_from(self.input_name)
        self._usable = self._usable_tensors()
        self._heads: dict[str, FeatureFn] = {}
        self._tails: dict[str, FeatureFn] = {}
        self._checked: set[str] = set()
        self._whole: FeatureFn | None = None

    def __repr__(self) -> str:
        return f"OnnxNetwork({len(self._model.graph.node)} nodes, device={self.device})"

    def layers(self) -> list[str]:
        """Node outputs usable as the target feature, in graph order.

        Float tensors computed from the image input (not constants, shapes or indices)
        whose inferred rank is at least 2 (a batch axis and a feature axis). Cost: none.
        """
        return [name for name, rank in self._usable.items() if rank is not None]

    def layer_shapes(self) -> dict[str, list[int]]:
        """The per-sample shape of each layer whose inferred dimensions (after the batch) are
        all fixed numbers. Cost: none.

        Example:
            >>> from onnx import TensorProto, helper
            >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 2, 3])
            >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 6])
            >>> relu = helper.make_node("Relu", ["x"], ["h"])
            >>> nodes = [relu, helper.make_node("Flatten", ["h"], ["y"])]
            >>> graph = helper.make_graph(nodes, "tiny", [x], [y])
            >>> model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            >>> OnnxNetwork(model).layer_shapes()
            {'h': [2, 3], 'y': [6]}
        """
        shapes: dict[str, list[int]] = {}
        for name in self.layers():
            dims = self._infos[name].type.tensor_type.shape.dim[1:]
            if all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
                shapes[name] = [int(d.dim_value) for d in dims]
        return shapes

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The whole graph's first output for a batch ``x`` (CPU, float32). Cost: one pass."""
        if self._whole is None:
            self._whole = self._runner(self._model, "the whole graph")
        return self._whole(x)

    def feature_extractor(self, layer: str) -> FeatureFn:
        """``x ↦ f(x)``: the tensor ``layer`` for an image batch ``x`` (CPU, float32).

        Cost: cutting and compiling the head once per layer; then each call runs only the
        nodes ``layer`` is computed from.

        Raises:
            ComponentsError: ``layer`` is not a node output, or not a usable feature.
        """
        self._check_layer(layer)
        if layer not in self._heads:
            head, _ = self._cut(self.input_name, layer)  # a usable layer needs only the input
            self._heads[layer] = self._runner(head, f"the graph up to '{layer}'")
        return self._heads[layer]

    def tail_runner(self, layer: str, *, example: torch.Tensor | None = None) -> FeatureFn:
        """``f ↦ logits``: the nodes after ``layer``, fed the tensor ``f`` (CPU, float32).

        ``tail(f(x)) == logits(x)`` by construction; with ``example`` (an image batch) this
        is checked once per layer (up to ``1e-4``, onnxruntime fuses nodes differently in a
        cut graph). The logits themselves have the identity as their tail. Cost: cutting
        and compiling the tail once per layer (plus the whole graph once for the check);
        then each call runs only the tail's nodes.

        Raises:
            ComponentsError: unknown layer, or the tail also needs another tensor (the
                image input or one computed before the layer: a skip connection around it).
        """
        self._check_layer(layer)
        if layer not in self._tails:
            self._tails[layer] = self._build_tail(layer)
        tail = self._tails[layer]
        if example is not None and layer not in self._checked:
            self._check_tail(layer, tail, example)
            self._checked.add(layer)
        return tail

    def _build_tail(self, layer: str) -> FeatureFn:
        if layer == self.output_name:
            return _identity
        tail, needed = self._cut(layer, self.output_name)
        if not any(layer in _consumed(node) for node in tail.graph.node):
            _no_tail(f"its output '{self.output_name}' does not depend on '{layer}'")
        if needed:
            _no_tail(
                f"the part of the graph after '{layer}' also needs {_quoted(needed)}, computed "
                f"before the layer (a connection around it, such as a skip or residual "
                f"connection); pick a layer that every path from the input to the output "
                f"goes through"
            )
        return self._runner(tail, f"the graph after '{layer}'")

    def _check_tail(self, layer: str, tail: FeatureFn, example: torch.Tensor) -> None:
        expected = self.logits(example)
        got = tail(self.feature_extractor(layer)(example))
        if got.shape != expected.shape or not torch.allclose(
            got, expected, rtol=_CHECK_TOLERANCE, atol=_CHECK_TOLERANCE
        ):
            gap = (got - expected).abs().max().item() if got.shape == expected.shape else None
            _no_tail(
                f"running the graph after '{layer}' does not give back its output "
                f"(shapes {list(got.shape)} and {list(expected.shape)}, largest gap {gap})"
            )

    def _check_layer(self, layer: str) -> None:
        if layer in self._usable:
            return
        names = self.layers()
        shown = ", ".join(names[:_SHOWN_LAYERS]) + (", …" if len(names) > _SHOWN_LAYERS else "")
        if layer in self._producer:
            raise ComponentsError(
                f"layer '{layer}' is not a float feature with a batch axis computed from the "
                f"input (a shape, an index, a constant or a tensor of rank < 2); the model's "
                f"layers are: {shown}"
            )
        raise ComponentsError(f"unknown layer '{layer}'; the model's layers are: {shown}")

    def _usable_tensors(self) -> dict[str, int | None]:
        """Float node outputs computed from the input → their rank (None when unknown).

        Tensors whose rank is known to be below 2 are left out (no batch and feature axes).
        """
        usable: dict[str, int | None] = {}
        for node in self._model.graph.node:
            for name in node.output:
                if name not in self._from_input:
                    continue
                info = self._infos.get(name)
                tensor = info.type.tensor_type if info is not None else None
                if tensor is None or tensor.elem_type != onnx.TensorProto.FLOAT:
                    continue
                rank = len(tensor.shape.dim) if tensor.HasField("shape") else None
                if rank is None or rank >= 2:
                    usable[name] = rank
        return usable

    def _computed_from(self, source: str) -> set[str]:
        """``source`` and every tensor computed from it (graph order is topological)."""
        computed = {source}
        for node in self._model.graph.node:
            if any(name in computed for name in _consumed(node)):
                computed.update(name for name in node.output if name)
        return computed

    def _cut(self, source: str, target: str) -> tuple[onnx.ModelProto, list[str]]:
        """The graph computing ``target`` from ``source`` and the weights, and what else it needs.

        Walks back from ``target`` through the nodes' inputs (and the outer names their
        sub-graphs use), stopping at ``source``, the initialisers, and the tensors computed
        from the image input but not from ``source``: those are the second value, in graph
        order (empty when ``source`` suffices). Nodes computed from neither (constants)
        are kept. The nodes met keep their graph order. Cost: linear in the graph's size.
        """
        graph = self._model.graph
        after_source = self._computed_from(source)
        chosen: set[int] = set()
        needed: set[str] = set()
        stack = [target]
        while stack:
            name = stack.pop()
            if name == source or name in self._weights:
                continue
            if name in self._from_input and name not in after_source:
                needed.add(name)
                continue
            index = self._producer.get(name)
            if index is not None and index not in chosen:
                chosen.add(index)
                stack.extend(_consumed(graph.node[index]))
        nodes = [graph.node[index] for index in sorted(chosen)]
        produced = {name for node in nodes for name in node.output}
        consumed = {name for node in nodes for name in _consumed(node)}
        order = [self.input_name, *(name for node in graph.node for name in node.output)]
        cut = onnx.helper.make_graph(
            nodes,
            f"{graph.name or 'graph'}: {source} → {target}",
            [self._info(source)],
            [self._info(target)],
            initializer=[tensor for tensor in graph.initializer if tensor.name in consumed],
            value_info=[
                self._infos[n] for n in order if n in produced and n in self._infos and n != target
            ],
        )
        model = onnx.helper.make_model(
            cut,
            ir_version=self._model.ir_version,
            opset_imports=self._model.opset_import,
            functions=self._model.functions,
        )
        return model, [name for name in order if name in needed]

    def _info(self, name: str) -> onnx.ValueInfoProto:
        """The inferred type of ``name``; float32 of unknown shape when inference gave none."""
        info = self._infos.get(name)
        if info is not None:
            return info
        unknown: onnx.ValueInfoProto = onnx.helper.make_tensor_value_info(
            name, onnx.TensorProto.FLOAT, None
        )
        return unknown

    def _runner(self, model: onnx.ModelProto, what: str) -> FeatureFn:
        """A session for ``model`` (one input, one output); padded chunks for a fixed batch."""
        try:
            session = onnx_session(model.SerializeToString(), self.device)
        except ModelLoadError as error:
            raise ComponentsError(f"onnxruntime cannot run {what}: {error}") from error
        batch = session.get_inputs()[0].shape[0] if session.get_inputs()[0].shape else None
        fixed = batch if isinstance(batch, int) and batch > 0 else None
        return onnx_forward(session, fixed, torch.device("cpu"))


def _with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with inferred types and shapes of its intermediate tensors.

    Inference that fails (an operator it does not know, say) leaves a plain copy: those
    tensors then have no known type and are not offered as layers.
    """
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy


def _consumed(node: onnx.NodeProto) -> list[str]:
    """The tensors a node reads: its inputs and the outer names its sub-graphs use."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            names.extend(_outer_names(attribute.g))
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            for subgraph in attribute.graphs:
                names.extend(_outer_names(subgraph))
    return names


def _outer_names(graph: onnx.GraphProto) -> list[str]:
    """Names a sub-graph (an ``If`` branch, a ``Loop`` body) reads from its enclosing graph."""
    local = {value.name for value in graph.input} | {t.name for t in graph.initializer}
    local |= {name for node in graph.node for name in node.output}
    return [name for node in graph.node for name in _consumed(node) if name not in local]


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _identity(f: torch.Tensor) -> torch.Tensor:
    return f.detach().clone()
