"""Read the pickles inside an uploaded torch zip without unpickling them; refuse any that
holds more than tensors.

A ``torch.save`` zip keeps its object tree in ``data.pkl``; a TorchScript archive
(``torch.jit.save``) keeps its module tree in ``data.pkl`` and ``constants.pkl`` (and
source ranges in ``*.debug_pkl``). Unpickling is running a small program: ``GLOBAL``
imports any callable (``os.system``, ``builtins.eval``) and ``REDUCE`` calls it. The
workers load these files with restricted unpicklers (``torch.load(weights_only=True)``,
TorchScript's own), but the API does not rely on that: :func:`check_torch_zip_pickles`
walks every pickle's opcodes with :func:`pickletools.genops` — which only *parses* —
and simulates the stack just enough to know which global each ``REDUCE``, ``NEWOBJ`` and
``BUILD`` applies to. A file is refused, naming the offending global or opcode, unless

* every ``GLOBAL``/``STACK_GLOBAL`` is on the allowlist derived from what torch writes
  (and from ``torch._weights_only_unpickler``'s own list, narrowed to plain tensors):
  ``torch._utils._rebuild_tensor_v2`` and ``_rebuild_parameter`` (tensors and
  parameters), ``collections.OrderedDict`` (``state_dict()``), the storage classes
  (``torch.FloatStorage``…) and dtypes (arguments, never called); in TorchScript
  archives also ``torch.jit._pickle.*`` (typed lists) and the archive's own
  ``__torch__.*`` classes (its modules; ``__torch__.torch.classes.*``, C++ classes with
  native ``__setstate__``, are refused);
* only the rebuild functions, ``OrderedDict`` and ``torch.jit._pickle.*`` are *called*
  (``REDUCE``); storage classes and dtypes are only passed as arguments;
* ``BUILD`` (which calls ``__setstate__`` or fills ``__dict__``) only applies to an
  ``OrderedDict`` (its ``_metadata``) or, in TorchScript archives, to a ``__torch__``
  object made with ``NEWOBJ``;
* there is no ``INST``, ``OBJ``, ``EXT*``, text ``PERSID`` or out-of-band buffer.

The stack simulation is conservative: anything it cannot follow (a string it cannot see,
a memo entry never stored, a mark missing) refuses the file as damaged.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass

from backend.errors import ClientError

__all__ = ["PickleRefused", "check_pickle", "check_torch_zip_pickles"]

_DTYPES = (
    *("float64", "float32", "float16", "bfloat16", "complex32", "complex64", "complex128"),
    *("uint8", "int8", "int16", "int32", "int64", "bool", "uint16", "uint32", "uint64"),
    *("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"),
)
_STORAGES = (
    *("Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool"),
    *("ComplexFloat", "ComplexDouble"),
)
_VALUE_GLOBALS = frozenset(
    {f"torch.{name}Storage" for name in _STORAGES}
    | {f"torch.{name}" for name in _DTYPES}
    | {"torch.UntypedStorage", "torch.storage.UntypedStorage", "torch.storage.TypedStorage"}
)
"""Globals that may appear as values (persistent ids, dtype arguments), never be called."""
_TENSOR_CALLS = frozenset(
    {
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "collections.OrderedDict",
    }
)
"""What a state dict's pickle may call: rebuild a dense tensor or parameter, make a dict."""
_SCRIPT_CALLS = frozenset(
    {
        f"torch.jit._pickle.{name}"
        for name in (
            "build_intlist",
            "build_doublelist",
            "build_boollist",
            "build_tensorlist",
            "build_tensor_from_id",
            "restore_type_tag",
        )
    }
)
"""What TorchScript's pickles may call besides :data:`_TENSOR_CALLS`: typed-list helpers."""
_SCRIPT_CLASS_PREFIX = "__torch__."
_NATIVE_CLASS_PREFIX = "__torch__.torch.classes."
_NEVER = {
    "INST": "INST (build an instance of any class)",
    "OBJ": "OBJ (build an instance of any class)",
    "EXT1": "EXT1 (a global from the extension registry)",
    "EXT2": "EXT2 (a global from the extension registry)",
    "EXT4": "EXT4 (a global from the extension registry)",
    "PERSID": "PERSID (a text persistent id)",
    "NEXT_BUFFER": "NEXT_BUFFER (an out-of-band buffer)",
    "READONLY_BUFFER": "READONLY_BUFFER (an out-of-band buffer)",
}
_STRINGS = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
}
_SPECIAL = {
    *_NEVER,
    *_STRINGS,
    *("GLOBAL", "STACK_GLOBAL", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD", "MARK", "STOP"),
    *("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET", "DUP"),
    *("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"),
}
_EFFECTS: dict[str, tuple[bool, int, int]] = {
    op.name: (
        pickletools.markobject in op.stack_before,
        op.stack_before.index(pickletools.markobject)
        if pickletools.markobject in op.stack_before
        else len(op.stack_before),
        len(op.stack_after),
    )
    for op in pickletools.opcodes
    if op.name not in _SPECIAL
}
"""Every other opcode's stack effect, from pickletools' description: (pops to a mark,
items popped below it, items pushed). None of them imports or calls anything."""
_MAX_PICKLE_BYTES = 16 * 2**20
"""All pickles of one archive together, uncompressed: a state dict needs ~200 bytes a tensor."""


class PickleRefused(ClientError):
    """A pickle in an uploaded zip holds more than tensors (415) or cannot be parsed (400)."""


@dataclass(frozen=True)
class _Item:
    """What the simulation knows about one stack entry."""

    kind: str  # "global" | "str" | "object" | "other"
    name: str = ""  # the global's dotted name, the string, or the class an object was made by


_OTHER = _Item("other")


def _refuse(entry: str, what: str) -> PickleRefused:
    return PickleRefused(
        f"The model file's {entry} {what}. Unpickling it could run code, and ConceptLens "
        "only accepts tensors and plain containers there: save model.state_dict() (or "
        "export to ONNX or TorchScript) rather than Python objects.",
        status=415,
    )


def _damaged(entry: str, detail: str) -> PickleRefused:
    return PickleRefused(f"The model file's {entry} is damaged ({detail}). Save it again.")


class _Simulation:
    def __init__(self, entry: str, torchscript: bool) -> None:
        self.entry = entry
        self.torchscript = torchscript
        self.stack: list[_Item] = []
        self.marks: list[int] = []
        self.memo: dict[int, _Item] = {}

    # ------------------------------------------------------------------ helpers

    def pop(self, n: int = 1) -> list[_Item]:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) - n < floor:
            raise _damaged(self.entry, "stack underflow")
        popped = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        return popped

    def pop_mark(self) -> list[_Item]:
        if not self.marks:
            raise _damaged(self.entry, "no mark")
        mark = self.marks.pop()
        items = self.stack[mark:]
        del self.stack[mark:]
        return items

    def allowed_global(self, name: str) -> bool:
        if name in _VALUE_GLOBALS or name in _TENSOR_CALLS:
            return True
        if not self.torchscript:
            return False
        if name in _SCRIPT_CALLS:
            return True
        return name.startswith(_SCRIPT_CLASS_PREFIX) and not name.startswith(_NATIVE_CLASS_PREFIX)

    def push_global(self, module: str, name: str) -> None:
        dotted = f"{module}.{name}"
        if not self.allowed_global(dotted):
            raise _refuse(self.entry, f"refers to {dotted}, which is not a tensor or a container")
        self.stack.append(_Item("global", dotted))

    def callable_name(self, item: _Item, opcode: str) -> str:
        calls = _TENSOR_CALLS | (_SCRIPT_CALLS if self.torchscript else frozenset())
        if item.kind != "global" or item.name not in calls:
            what = item.name if item.kind == "global" else f"a computed {item.kind}"
            raise _refuse(self.entry, f"calls {what} ({opcode})")
        return item.name

    # ------------------------------------------------------------------ opcodes

    def step(self, name: str, arg: object) -> None:
        effect = _EFFECTS.get(name)
        if effect is not None:  # constants, tuples, lists, dicts: only the stack's shape matters
            uses_mark, n_before, n_after = effect
            if uses_mark:
                self.pop_mark()
            if n_before:
                self.pop(n_before)
            if n_after:
                self.stack.extend((_OTHER,) * n_after)
            return
        if name in _NEVER:
            raise _refuse(self.entry, f"uses the opcode {_NEVER[name]}")
        if name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            self.push_global(module, attr)
        elif name == "STACK_GLOBAL":
            module_item, name_item = self.pop(2)
            if module_item.kind != "str" or name_item.kind != "str":
                raise _refuse(self.entry, "builds a global from computed names (STACK_GLOBAL)")
            self.push_global(module_item.name, name_item.name)
        elif name == "REDUCE":
            function, _args = self.pop(2)
            self.stack.append(_Item("object", self.callable_name(function, "REDUCE")))
        elif name in ("NEWOBJ", "NEWOBJ_EX"):
            items = self.pop(2 if name == "NEWOBJ" else 3)
            cls = items[0]
            if not (
                self.torchscript
                and cls.kind == "global"
                and cls.name.startswith(_SCRIPT_CLASS_PREFIX)
                and cls.name not in _SCRIPT_CALLS
            ):
                what = cls.name if cls.kind == "global" else f"a computed {cls.kind}"
                raise _refuse(self.entry, f"creates a {what} object ({name})")
            self.stack.append(_Item("object", cls.name))
        elif name == "BUILD":
            (target,) = self.pop(2)[:1]
            buildable = target.kind == "object" and (
                target.name == "collections.OrderedDict"
                or (self.torchscript and target.name.startswith(_SCRIPT_CLASS_PREFIX))
            )
            if not buildable:
                made = f"an object made by {target.name}" if target.name else f"a {target.kind}"
                raise _refuse(self.entry, f"sets the state of {made} (BUILD)")
            self.stack.append(target)
        elif name == "MARK":
            self.marks.append(len(self.stack))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[int(arg)] = self.top()  # type: ignore[call-overload]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            key = int(arg)  # type: ignore[call-overload]
            if key not in self.memo:
                raise _damaged(self.entry, f"memo entry {key} read before it was written")
            self.stack.append(self.memo[key])
        elif name == "DUP":
            self.stack.append(self.top())
        elif name in _STRINGS:
            text = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
            self.stack.append(_Item("str", text))
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            self.pop_mark()
            self.top()  # the container stays
        elif name in ("APPEND", "SETITEM"):
            self.pop(1 if name == "APPEND" else 2)
            self.top()
        elif name == "STOP":
            self.pop(1)
        else:  # every opcode is in _EFFECTS or handled above
            raise _damaged(self.entry, f"unknown opcode {name}")

    def top(self) -> _Item:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) <= floor:
            raise _damaged(self.entry, "stack underflow")
        return self.stack[-1]


def check_pickle(data: bytes, entry: str, *, torchscript: bool) -> None:
    """Refuse one pickle (``entry`` names it in messages) unless it only rebuilds tensors.

    Never unpickles: :func:`pickletools.genops` parses the opcodes, and a stack simulation
    checks which global each ``REDUCE``/``NEWOBJ``/``BUILD`` applies to (see the module
    docstring). ``torchscript`` also allows the ``__torch__`` classes and typed-list helpers
    of a ``torch.jit.save`` archive. Cost: linear in the pickle, about half a second per MiB.

    Raises:
        PickleRefused: status 415 naming the offending global or opcode, or 400 if damaged.
    """
    simulation = _Simulation(entry, torchscript)
    name = ""
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
            name = op.name
            simulation.step(name, arg)
    except PickleRefused:
        raise
    except Exception as error:  # genops: ValueError on bad opcodes, truncation
        raise _damaged(entry, str(error).splitlines()[0] if str(error) else "unreadable") from None
    if name != "STOP":
        raise _damaged(entry, "no STOP opcode")


def check_torch_zip_pickles(archive: zipfile.ZipFile, *, torchscript: bool) -> None:
    """Check every pickle in a torch zip: ``*.pkl`` entries (``data.pkl``, ``constants.pkl``…)
    and TorchScript's ``*.debug_pkl`` (whatever their folder — torch reads the first
    folder's, a hostile file may add others). At most 16 MiB of pickles, uncompressed.

    Raises:
        PickleRefused: for the first pickle refused, or if there are too many bytes of them.
    """
    budget = _MAX_PICKLE_BYTES
    for info in archive.infolist():
        if not info.filename.endswith((".pkl", ".debug_pkl")):
            continue
        with archive.open(info) as handle:
            data = handle.read(budget + 1)
        budget -= len(data)
        if budget < 0:
            raise PickleRefused(
                "The pickles in this model file are larger than 16 MiB; a state dict or "
                "TorchScript file needs far less. Save model.state_dict() or export to ONNX.",
                status=413,
            )
        check_pickle(data, info.filename.split("/", 1)[-1], torchscript=torchscript)
