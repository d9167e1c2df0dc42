"""The pickles of an uploaded torch zip are read, never run: tensors pass, anything else is
refused naming what it would import or call."""

from __future__ import annotations

import io
import os
import zipfile
from collections import OrderedDict
from typing import Any

import pytest
import torch
from torch import nn

from backend.pickle_scan import PickleRefused, check_pickle, check_torch_zip_pickles
from tests.conceptlens.models.architectures_zoo import MLP, ResNet, ViT

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


def torch_save(obj: object, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def jit_save(module: torch.jit.ScriptModule) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    return buffer.getvalue()


def check_zip(data: bytes, *, torchscript: bool) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        check_torch_zip_pickles(archive, torchscript=torchscript)


class Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo never runs",))


class Plain:
    def __init__(self) -> None:
        self.value = 1


# --------------------------------------------------------------------------- what torch writes


@pytest.mark.parametrize(
    "obj",
    [
        MLP().state_dict(),  # an OrderedDict with _metadata (BUILD)
        ResNet().state_dict(),  # BatchNorm's int64 num_batches_tracked
        dict(ViT().named_parameters()),  # Parameters
        {"architecture": "digit_cnn", "epoch": 3, "lr": 0.1, "tags": ["a"], "x": (1, None, True)},
        {"half": torch.zeros(2, dtype=torch.half), "bf16": torch.zeros(2, dtype=torch.bfloat16)},
        {"grad": torch.zeros(2, requires_grad=True), "view": torch.zeros(4, 4)[1:, ::2]},
    ],
    ids=["mlp", "resnet", "vit-parameters", "containers", "dtypes", "grad-and-view"],
)
@pytest.mark.parametrize("protocol", [2, 4])
def test_state_dicts_pass(obj: object, protocol: int) -> None:
    check_zip(torch_save(obj, pickle_protocol=protocol), torchscript=False)


@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize("make", [MLP, ResNet, lambda: ViT("torch")], ids=["mlp", "resnet", "vit"])
def test_torchscript_archives_pass(make: Any, how: str) -> None:
    model = make().eval()
    x = torch.zeros(1, 1 if isinstance(model, MLP) else 3, 16, 16)
    program = (
        torch.jit.script(model) if how == "script" else torch.jit.trace(model, x, check_trace=False)
    )
    check_zip(jit_save(program), torchscript=True)


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("obj", "named"),
    [
        ({"w": torch.zeros(2), "evil": Payload()}, "refers to posix.system"),
        (Plain(), "refers to tests.backend.test_pickle_scan.Plain"),
        (nn.Linear(2, 2), "refers to torch.nn.modules.linear.Linear"),
        ({"s": {1, 2}}, "refers to __builtin__.set"),
    ],
    ids=["os.system", "object", "module", "set"],
)
def test_anything_but_tensors_is_refused_naming_the_global(obj: object, named: str) -> None:
    with pytest.raises(PickleRefused, match=named) as refused:
        check_zip(torch_save(obj), torchscript=False)
    assert refused.value.status == 415


@pytest.mark.parametrize(
    ("pickle", "torchscript", "message"),
    [
        # a storage class may be passed to a rebuild function, never called
        (b"\x80\x02ctorch\nFloatStorage\n)R.", False, r"calls torch\.FloatStorage \(REDUCE\)"),
        # BUILD on a rebuilt tensor is the legacy set_() path
        (
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)R}b.",
            False,
            r"sets the state of an object made by torch\._utils\._rebuild_tensor_v2 \(BUILD\)",
        ),
        # TorchScript classes are fine in a TorchScript archive only
        (b"\x80\x02c__torch__\nNet\n)\x81.", False, r"refers to __torch__\.Net"),
        (b"\x80\x02c__torch__.torch.classes.x\nY\n)\x81.", True, r"refers to __torch__\.torch\."),
        (b"\x80\x02cbuiltins\neval\nX\x03\x00\x00\x001+1\x85R.", True, r"refers to builtins\.eval"),
        (b"(i__main__\nC\n.", False, r"opcode INST"),
        (b"\x80\x02}(ctorch\nFloatStorage\no.", False, r"opcode OBJ"),
        (b"\x80\x02\x82\x01.", False, r"opcode EXT1"),
        # protocol 4 names a global by two strings on the stack; computed ones are refused
        (b"\x80\x04K\x01K\x02\x93.", False, r"computed names \(STACK_GLOBAL\)"),
        (b"\x80\x04\x8c\x02os\x8c\x06system\x93.", False, r"refers to os\.system"),
    ],
    ids=[
        "call-storage",
        "build-tensor",
        "script-class-in-state-dict",
        "native-class",
        "eval-in-torchscript",
        "inst",
        "obj",
        "ext1",
        "stack-global-computed",
        "stack-global",
    ],
)
def test_handcrafted_pickles_are_refused(pickle: bytes, torchscript: bool, message: str) -> None:
    with pytest.raises(PickleRefused, match=message):
        check_pickle(pickle, "data.pkl", torchscript=torchscript)


@pytest.mark.parametrize(
    "pickle",
    [b"\x80\x02}(X\x01\x00\x00\x00a", b"\x80\x02h\x05.", b"\x80\x02u.", b"\x80\x02\xff."],
    ids=["truncated", "unknown-memo", "no-mark", "bad-opcode"],
)
def test_damaged_pickles_are_400(pickle: bytes) -> None:
    with pytest.raises(PickleRefused, match="damaged") as refused:
        check_pickle(pickle, "data.pkl", torchscript=False)
    assert refused.value.status == 400


def test_every_pickle_in_the_archive_is_read_whatever_its_folder() -> None:
    data = torch_save(OrderedDict(w=torch.zeros(2)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as archive:
        for info in source.infolist():
            archive.writestr(info, source.read(info))
        archive.writestr("other/data.pkl", b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R.")
    with pytest.raises(PickleRefused, match=r"data\.pkl refers to posix\.system"):
        check_zip(buffer.getvalue(), torchscript=False)
