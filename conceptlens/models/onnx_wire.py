"""What ConceptLens must know about an ONNX file before onnxruntime sees it, read straight
from the protobuf bytes, without the ``onnx`` package.

Two facts decide whether a model may be loaded: whether any tensor anywhere in it keeps its
values in an external file (onnxruntime reads such files from the server's disk, relative to
the working directory for a model given as bytes), and the graph's inputs (name, element
type, dimensions), which size the test input before onnxruntime plans any memory.

Importing ``onnx`` to learn them cost 0.13–0.15 s per process (protobuf's Python layer,
``onnx.helper``, ``ml_dtypes``), more than half an n = 12 analysis's forward passes
(``bench/README.md``, "Whole processes"). This reader walks the protobuf wire format over
the part of ONNX's schema that can hold a tensor (:data:`TENSOR_PATHS`; a test derives the
same table from ``onnx``'s own descriptors) and skips everything else by its length.
Protobuf's merge rules hold: a field may occur several times, repeated fields concatenate,
and for a scalar the last occurrence wins. Anything that is not well-formed protobuf is
refused, as is nesting deeper than :data:`MAX_DEPTH` or more than :data:`MAX_FIELDS` fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MAX_DEPTH", "MAX_FIELDS", "TENSOR_PATHS", "OnnxFacts", "OnnxWireError", "scan_onnx"]

MAX_DEPTH = 64
"""Nesting of messages (graphs in attributes of nodes of graphs...) beyond which a file is
refused; protobuf's own parsers stop at 100."""

MAX_FIELDS = 4_000_000
"""Fields walked before a file is refused: exporters pack numeric arrays into one field, so
a model needs far fewer; a hostile one of 200 MiB could hold 40 million."""

TENSOR_PATHS: dict[str, dict[int, str]] = {
    "ModelProto": {7: "GraphProto", 20: "TrainingInfoProto", 25: "FunctionProto"},
    "TrainingInfoProto": {1: "GraphProto", 2: "GraphProto"},
    "FunctionProto": {7: "NodeProto", 11: "AttributeProto"},
    "GraphProto": {1: "NodeProto", 5: "TensorProto", 15: "SparseTensorProto"},
    "NodeProto": {5: "AttributeProto"},
    "AttributeProto": {
        5: "TensorProto",
        6: "GraphProto",
        10: "TensorProto",
        11: "GraphProto",
        22: "SparseTensorProto",
        23: "SparseTensorProto",
    },
    "SparseTensorProto": {1: "TensorProto", 2: "TensorProto"},
    "TensorProto": {},
}
"""For each message of ONNX's schema on a path from the model to a tensor: the fields (by
number) that hold such messages. Every other field is skipped."""

_EXTERNAL_DATA = 13  # TensorProto.external_data: the file's location, offset and length
_DATA_LOCATION = 14  # TensorProto.data_location; EXTERNAL = 1
_TENSOR_NAME = 8  # TensorProto.name
_GRAPH_INPUT = 11  # GraphProto.input (ValueInfoProto)
_GRAPH_INITIALIZER = 5
_TYPE_ONEOF = {1, 4, 5, 7, 8, 9}  # TypeProto's kinds: tensor, sequence, map, ...; 1: tensor


class OnnxWireError(ValueError):
    """The bytes are not a well-formed ONNX protobuf (or too deep or too many fields)."""


@dataclass
class OnnxInput:
    """One entry of the main graph's ``input``: what :mod:`.formats` checks."""

    name: bytes = b""
    elem_type: int = 0
    """``TensorProto.DataType``; 0 (UNDEFINED) when the input is not a tensor."""
    dims: list[int | None] = field(default_factory=list)
    """Each dimension's size, None where symbolic or unset."""


@dataclass
class OnnxFacts:
    """What :func:`scan_onnx` found."""

    external: bool = False
    """Whether any tensor, anywhere, keeps its values in an external file."""
    inputs: list[OnnxInput] = field(default_factory=list)
    """The main graph's inputs, in order (initialisers listed as inputs included)."""
    initializers: set[bytes] = field(default_factory=set)
    """Names of the main graph's initialisers."""


class _Reader:
    """Fields of one message: ``(number, wire type, value)``; value is an int for varints
    and fixed-width fields, ``(start, stop)`` into the buffer for length-delimited ones."""

    def __init__(self, data: memoryview, budget: list[int]) -> None:
        self.data = data
        self.budget = budget

    def fields(self, start: int, stop: int) -> list[tuple[int, int, int, int]]:
        data, out, pos = self.data, [], start
        while pos < stop:
            tag, pos = self._varint(pos, stop)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise OnnxWireError("a field numbered 0")
            self.budget[0] -= 1
            if self.budget[0] < 0:
                raise OnnxWireError(f"more than {MAX_FIELDS:,} fields")
            if wire == 0:
                value, pos = self._varint(pos, stop)
                out.append((number, wire, value, 0))
            elif wire == 2:
                length, pos = self._varint(pos, stop)
                if length > stop - pos:
                    raise OnnxWireError("a field longer than its message")
                out.append((number, wire, pos, pos + length))
                pos += length
            elif wire in (1, 5):
                width = 8 if wire == 1 else 4
                if width > stop - pos:
                    raise OnnxWireError("a field longer than its message")
                value = int.from_bytes(data[pos : pos + width], "little")
                out.append((number, wire, value, 0))
                pos += width
            else:  # 3, 4: groups, which ONNX never uses; 6, 7: invalid
                raise OnnxWireError(f"wire type {wire}")
        return out

    def _varint(self, pos: int, stop: int) -> tuple[int, int]:
        data, value, shift = self.data, 0, 0
        while True:
            if pos >= stop or shift > 63:
                raise OnnxWireError("a truncated or overlong number")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7


def _signed(value: int) -> int:
    """An int64 field's value (protobuf writes negatives as 10-byte two's complement)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def scan_onnx(data: bytes) -> OnnxFacts:
    """The facts of the serialised ``ModelProto`` ``data``.

    Raises:
        OnnxWireError: the bytes are not well-formed protobuf along the walked paths.
    """
    reader = _Reader(memoryview(data), [MAX_FIELDS])
    facts = OnnxFacts()
    # (message, start, stop, depth, main): main marks the model's own graph(s)
    stack: list[tuple[str, int, int, int, bool]] = [("ModelProto", 0, len(data), 0, False)]
    while stack:
        message, start, stop, depth, main = stack.pop()
        if depth > MAX_DEPTH:
            raise OnnxWireError(f"messages nested more than {MAX_DEPTH} deep")
        children = TENSOR_PATHS[message]
        found = reader.fields(start, stop)
        if message == "TensorProto":
            facts.external |= any(
                (n == _EXTERNAL_DATA and w == 2) or (n == _DATA_LOCATION and w == 0 and a == 1)
                for n, w, a, _ in found
            )
            continue
        pending = []
        for number, wire, a, b in found:
            if number in children:
                if wire != 2:
                    raise OnnxWireError(f"{message} field {number} is not a message")
                child = children[number]
                top = message == "ModelProto" and child == "GraphProto"
                pending.append((child, a, b, depth + 1, top))
            if main and wire == 2 and number == _GRAPH_INPUT:
                facts.inputs.append(_value_info(reader, a, b))
            if main and wire == 2 and number == _GRAPH_INITIALIZER:
                facts.initializers.add(_tensor_name(reader, a, b))
        stack.extend(reversed(pending))
    return facts


def _tensor_name(reader: _Reader, start: int, stop: int) -> bytes:
    name = b""
    for number, wire, a, b in reader.fields(start, stop):
        if number == _TENSOR_NAME and wire == 2:
            name = bytes(reader.data[a:b])
    return name


def _value_info(reader: _Reader, start: int, stop: int) -> OnnxInput:
    """A ``ValueInfoProto``: name (1), type (2) → ``TypeProto.tensor_type`` (1) →
    elem_type (1), shape (2) → dim (1) → dim_value (1) or dim_param (2)."""
    value = OnnxInput()
    tensor = False
    for number, wire, a, b in reader.fields(start, stop):
        if number == 1 and wire == 2:
            value.name = bytes(reader.data[a:b])
        elif number == 2 and wire == 2:
            for t_number, t_wire, ta, tb in reader.fields(a, b):
                if t_wire != 2 or t_number not in _TYPE_ONEOF:
                    continue
                if t_number != 1:  # another kind of TypeProto's oneof replaces a tensor
                    tensor = False
                    value = OnnxInput(name=value.name)
                    continue
                tensor = True
                _tensor_type(reader, ta, tb, value)
    if not tensor:
        value.elem_type = 0
    return value


def _tensor_type(reader: _Reader, start: int, stop: int, value: OnnxInput) -> None:
    for number, wire, a, b in reader.fields(start, stop):
        if number == 1 and wire == 0:
            value.elem_type = _signed(a)
        elif number == 2 and wire == 2:
            for d_number, d_wire, da, db in reader.fields(a, b):
                if d_number == 1 and d_wire == 2:
                    value.dims.append(_dimension(reader, da, db))


def _dimension(reader: _Reader, start: int, stop: int) -> int | None:
    size: int | None = None
    for number, wire, a, _ in reader.fields(start, stop):
        if number == 1 and wire == 0:  # dim_value
            size = _signed(a)
        elif number == 2:  # dim_param, the other member of the oneof
            size = None
    return size if size is not None and size > 0 else None
