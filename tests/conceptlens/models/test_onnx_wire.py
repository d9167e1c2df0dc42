"""The ONNX wire reader against the ``onnx`` package: same schema, same facts, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from google.protobuf.message import DecodeError, Message
from onnx import TensorProto, helper, numpy_helper, onnx_ml_pb2

from conceptlens.models import onnx_wire
from conceptlens.models.demo import DEMO_FILES
from conceptlens.models.formats import _ONNX_TYPES
from conceptlens.models.onnx_wire import TENSOR_PATHS, OnnxWireError, scan_onnx


def _paths_to_tensors() -> dict[str, dict[int, str]]:
    """Every (message, field) of ONNX's schema from ModelProto on a path to a TensorProto,
    from ``onnx``'s own descriptors (a fixed point: the schema has cycles)."""
    messages: dict[str, Any] = {}
    todo = [onnx_ml_pb2.ModelProto.DESCRIPTOR]
    while todo:
        descriptor = todo.pop()
        if descriptor.name not in messages:
            messages[descriptor.name] = descriptor
            todo += [f.message_type for f in descriptor.fields if f.message_type is not None]
    reach = {"TensorProto"}
    while True:
        more = {
            name
            for name, descriptor in messages.items()
            if any(
                f.message_type is not None and f.message_type.name in reach
                for f in descriptor.fields
            )
        } - reach
        if not more:
            break
        reach |= more
    return {
        name: {
            f.number: f.message_type.name
            for f in messages[name].fields
            if f.message_type is not None and f.message_type.name in reach
        }
        for name in reach
    }


def test_the_walked_schema_is_every_path_from_a_model_to_a_tensor() -> None:
    assert _paths_to_tensors() == TENSOR_PATHS


def test_type_names_are_onnx_s() -> None:
    names = [TensorProto.DataType.Name(i) for i in range(len(_ONNX_TYPES))]
    assert names == _ONNX_TYPES


def _facts_by_onnx(data: bytes) -> tuple[bool, list[tuple[bytes, int, list[int | None]]], set]:
    """What the reader must find, by ``onnx``'s parser and reflection over every field."""
    proto = onnx.ModelProto()
    proto.ParseFromString(data)
    external = False

    def walk(message: Any) -> None:
        nonlocal external
        if isinstance(message, TensorProto):
            external |= message.data_location == TensorProto.EXTERNAL
            external |= len(message.external_data) > 0
        for descriptor, value in message.ListFields():
            if descriptor.message_type is None:
                continue
            for child in [value] if isinstance(value, Message) else value:
                walk(child)

    walk(proto)
    inputs = []
    for value in proto.graph.input:
        if value.type.WhichOneof("value") == "tensor_type":
            t = value.type.tensor_type
            dims = [
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in t.shape.dim
            ]
            inputs.append((_raw(value.name), t.elem_type, dims))
        else:
            inputs.append((_raw(value.name), 0, []))
    return external, inputs, {_raw(t.name) for t in proto.graph.initializer}


def _raw(name: str | bytes) -> bytes:
    """A name's bytes (protobuf gives ``bytes`` for a proto2 string that is not UTF-8)."""
    return name if isinstance(name, bytes) else name.encode()


def _facts(data: bytes) -> tuple[bool, list[tuple[bytes, int, list[int | None]]], set]:
    facts = scan_onnx(data)
    inputs = [(i.name, i.elem_type, i.dims) for i in facts.inputs]
    return facts.external, inputs, facts.initializers


def _model(nodes: list, inputs: list, initializers: list, **graph: Any) -> onnx.ModelProto:
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    made = helper.make_graph(nodes, "g", inputs, outputs, initializers, **graph)
    return helper.make_model(made, opset_imports=[helper.make_opsetid("", 17)])


def _external(tensor: TensorProto, location: str = "weights.bin") -> TensorProto:
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    tensor.ClearField("raw_data")
    return tensor


def _weights(name: str = "W") -> TensorProto:
    return numpy_helper.from_array(np.ones((2, 2), np.float32), name)


def _models() -> dict[str, bytes]:
    x = helper.make_tensor_value_info
    add = helper.make_node("Add", ["x", "W"], ["y"])
    sub = _model([helper.make_node("Identity", ["W"], ["y"])], [], [_weights()])
    models = {
        "dynamic batch": _model([add], [x("x", TensorProto.FLOAT, ["N", 2])], [_weights()]),
        "int64 input": _model([add], [x("x", TensorProto.INT64, [3, 2])], [_weights()]),
        "no shape": _model([add], [x("x", TensorProto.FLOAT, None)], [_weights()]),
        "weights as inputs": _model(
            [add],
            [x("x", TensorProto.FLOAT, [1, 1, 2, 2]), x("W", TensorProto.FLOAT, [2, 2])],
            [_weights()],
        ),
        "sequence input": _model(
            [add],
            [
                helper.make_value_info(
                    "x",
                    helper.make_sequence_type_proto(
                        helper.make_tensor_type_proto(TensorProto.FLOAT, [2])
                    ),
                )
            ],
            [_weights()],
        ),
        "negative dim": _model([add], [x("x", TensorProto.FLOAT, [-3, 2])], [_weights()]),
        "if with a subgraph": _model(
            [helper.make_node("If", ["c"], ["y"], then_branch=sub.graph, else_branch=sub.graph)],
            [x("c", TensorProto.BOOL, [])],
            [],
        ),
    }
    return {name: model.SerializeToString() for name, model in models.items()}


@pytest.mark.parametrize("name", list(_models()))
def test_facts_are_onnx_s(name: str) -> None:
    data = _models()[name]
    assert _facts(data) == _facts_by_onnx(data)
    assert not scan_onnx(data).external


def test_the_demo_model_s_facts_are_onnx_s(demo_dir: Path) -> None:
    data = (demo_dir / DEMO_FILES["onnx"]).read_bytes()
    assert _facts(data) == _facts_by_onnx(data)
    (only,) = scan_onnx(data).inputs
    assert (only.elem_type, only.dims[1:]) == (TensorProto.FLOAT, [1, 16, 16])


def test_a_message_given_twice_merges_as_protobuf_merges(demo_dir: Path) -> None:
    """Serialised messages concatenated are one message, merged: repeated fields join, a
    scalar's last value wins (a second input shape, a renamed input)."""
    data = (demo_dir / DEMO_FILES["onnx"]).read_bytes()
    other = onnx.load_model_from_string(data)
    other.graph.input[0].name = "renamed"
    other.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 5
    for merged in (data + other.SerializeToString(), other.SerializeToString() + data):
        assert _facts(merged) == _facts_by_onnx(merged)


def _external_models() -> dict[str, onnx.ModelProto]:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])
    add = helper.make_node("Add", ["x", "W"], ["y"])
    constant = helper.make_node("Constant", [], ["W"], value=_external(_weights()))
    sparse = helper.make_sparse_tensor(
        _external(numpy_helper.from_array(np.ones(1, np.float32), "v")),
        numpy_helper.from_array(np.zeros(1, np.int64), "i"),
        [2, 2],
    )
    inner = _model([helper.make_node("Identity", ["W"], ["y"])], [], [_external(_weights())])
    x_graph = inner.graph
    listed = [_weights(), _external(_weights())]
    custom = helper.make_node("Custom", [], ["W"], domain="x", ts=listed)
    models = {
        "initializer": _model([add], [x], [_external(_weights())]),
        "constant node": _model([constant, add], [x], []),
        "sparse initializer": _model([add], [x], [], sparse_initializer=[sparse]),
        "subgraph initializer": _model(
            [helper.make_node("If", ["c"], ["y"], then_branch=x_graph, else_branch=x_graph)],
            [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
            [],
        ),
        "tensors attribute": _model(
            [custom, add],
            [x],
            [],
        ),
    }
    function = _model([add], [x], [_weights()])
    function.functions.add().node.append(constant)
    models["function"] = function
    training = _model([add], [x], [_weights()])
    training.training_info.add().initialization.CopyFrom(inner.graph)
    models["training info"] = training
    data_location_only = _model([add], [x], [_weights()])
    data_location_only.graph.initializer[0].data_location = TensorProto.EXTERNAL
    models["data location only"] = data_location_only
    return models


@pytest.mark.parametrize("name", list(_external_models()))
def test_an_external_tensor_anywhere_is_found(name: str) -> None:
    data = _external_models()[name].SerializeToString()
    assert _facts_by_onnx(data)[0]
    assert scan_onnx(data).external


def test_damaged_bytes_are_refused_or_read_as_onnx_reads_them(demo_dir: Path) -> None:
    """Fuzz: truncations and byte changes of the demo model and the models above. The
    reader raises nothing but :class:`OnnxWireError`; where both it and ``onnx`` read the
    bytes, the facts agree (an external tensor is never missed)."""
    rng = np.random.default_rng(0)
    seeds = [(demo_dir / DEMO_FILES["onnx"]).read_bytes()]
    seeds += [m.SerializeToString() for m in _external_models().values()]
    seeds += list(_models().values())
    agreed = refused = 0
    for case in range(1500):
        data = bytearray(seeds[case % len(seeds)])
        if case % 3 == 0:
            del data[int(rng.integers(1, len(data))) :]
        head = min(len(data), 600)  # the structure; the demo's weights are one long field
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, head))] = int(rng.integers(0, 256))
        try:
            ours = _facts(bytes(data))
        except OnnxWireError:
            refused += 1
            continue
        try:
            theirs = _facts_by_onnx(bytes(data))
        except DecodeError:
            continue
        assert ours == theirs
        agreed += 1
    assert agreed > 150 and refused > 500


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (lengths below 2^14 here)."""
    length = len(payload)
    size = bytes([length]) if length < 128 else bytes([length & 0x7F | 0x80, length >> 7])
    return bytes([number << 3 | 2]) + size + payload


def _nested(levels: int) -> bytes:
    """A model whose graph holds an If node whose branch holds one... ``levels`` deep: each
    level is graph → node → attribute (3 messages). Written by hand: ``onnx`` itself
    cannot build it (protobuf's depth limit)."""
    graph = b""
    for _ in range(levels):
        graph = _field(1, _field(5, _field(6, graph)))
    return _field(7, graph)


def test_nesting_and_field_count_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not scan_onnx(_nested(20)).external  # 61 deep
    with pytest.raises(OnnxWireError, match="nested more than 64"):
        scan_onnx(_nested(22))
    data = _models()["dynamic batch"]
    monkeypatch.setattr(onnx_wire, "MAX_FIELDS", 10)
    with pytest.raises(OnnxWireError, match="more than 10 fields"):
        scan_onnx(data)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x0a\x05ab", "longer than its message"),
        (b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "overlong"),
        (b"\x0b", "wire type 3"),
        (b"\x00\x01", "numbered 0"),
        (b"\x38\x01", "ModelProto field 7 is not a message"),
    ],
)
def test_malformed_protobuf_says_what_is_wrong(data: bytes, why: str) -> None:
    with pytest.raises(OnnxWireError, match=why):
        scan_onnx(data)
