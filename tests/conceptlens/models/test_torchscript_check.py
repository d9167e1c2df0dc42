"""TorchScript models may only compute on tensors: file reads, printing and load-time code
are refused wherever they hide; the architectures people upload still load."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from torch import nn

from conceptlens.models import DigitCNN, ModelLoadError, load_model, loaders
from conceptlens.models.torchscript_check import (
    ALLOWED_OPS,
    check_torchscript_module,
    is_allowed,
)
from tests.conceptlens.models.architectures_zoo import MLP, ResNet, ViT

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]

REFUSAL = "not a pure tensor operation; ConceptLens refuses models that can read files"


def _save(module: nn.Module | torch.jit.ScriptModule, path: Path) -> Path:
    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
    torch.jit.save(scripted, str(path))
    return path


# --------------------------------------------------------------------------- hostile models


class ReadsAFile(nn.Module):
    """Returns the first ten bytes of a file as its "logits"."""

    def __init__(self, path: str = "/etc/passwd") -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        secret = torch.from_file(self.path, shared=False, size=10, dtype=torch.uint8)
        return x.flatten(1)[:, :10] * 0 + secret.float()


class Prints(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("hello from the model")
        return x.flatten(1)[:, :10]


class HidesInAMethod(nn.Module):
    """The submodule's forward is harmless; the exported method forward calls is not."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.scale(x.flatten(1)[:, :10])


class _Inner(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def scale(self, x: torch.Tensor) -> torch.Tensor:
        secret = torch.from_file("/etc/passwd", shared=False, size=10, dtype=torch.uint8)
        return x + secret.float()


class HidesInABranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.flatten(1)[:, :10]
        for _ in range(2):
            if bool(out.sum() > 1e30):  # never taken on real inputs
                out = out + torch.from_file("/etc/passwd", False, 10, dtype=torch.uint8)
        return out


class HidesInAnUnusedChild(nn.Module):
    """``forward`` never calls ``side``, but the components analysis calls children."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Flatten()
        self.side = ReadsAFile()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[:, :10]


@torch.jit.script
def _shout(x: torch.Tensor) -> torch.Tensor:
    print("from a script function")
    return x


class CallsAFunction(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _shout(x.flatten(1)[:, :10])


class ReadsUninitialisedMemory(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.empty(x.shape[0], 10)


def _print_hook(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
    print("hook")


class SetsStateOnLoad(nn.Module):
    """``torch.jit.load`` itself calls ``__setstate__``, before any check of the module."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.ones(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        print("ran while loading")
        self.weight = state[0]
        self.training = state[1]


@pytest.mark.parametrize(
    ("module", "operator", "where"),
    [
        (ReadsAFile(), "aten::from_file", "forward"),
        (Prints(), "prim::Print", "forward"),
        (HidesInAMethod(), "aten::from_file", "forward"),
        (HidesInABranch(), "aten::from_file", "forward"),
        (HidesInAnUnusedChild(), "aten::from_file", "forward of submodule 'side'"),
        (CallsAFunction(), "prim::Print", "forward"),
        (ReadsUninitialisedMemory(), "aten::empty", "forward"),
    ],
    ids=[
        "from_file",
        "print",
        "submodule-method",
        "if-in-loop",
        "unused-child",
        "function",
        "empty",
    ],
)
def test_models_that_do_more_than_compute_are_refused(
    module: nn.Module, operator: str, where: str, tmp_path: Path
) -> None:
    path = _save(module, tmp_path / "model.pt")
    with pytest.raises(ModelLoadError, match=rf"calls {operator} \(in {where}\), which is"):
        load_model(path, input_shape=(1, 4, 4))


def test_refusal_message_reads_as_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as refused:
        load_model(_save(ReadsAFile(), tmp_path / "m.pt"), input_shape=(1, 4, 4))
    assert str(refused.value) == (
        "This TorchScript model calls aten::from_file (in forward), which is not a pure tensor "
        "operation; ConceptLens refuses models that can read files, print or run other code."
    )


def test_hooks_of_the_root_module_are_checked(tmp_path: Path) -> None:
    model = MLP(16)
    model.register_forward_hook(_print_hook)
    path = _save(model, tmp_path / "hooked.pt")
    with pytest.raises(ModelLoadError, match=r"calls prim::Print \(in hook _print_hook\)"):
        load_model(path, input_shape=(1, 4, 4))


def test_setstate_is_refused_before_it_runs(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = _save(SetsStateOnLoad(), tmp_path / "setstate.pt")
    capfd.readouterr()
    with pytest.raises(ModelLoadError, match=r"defines __setstate__ .*run code when loaded"):
        load_model(path, input_shape=(1, 4, 4))
    assert "ran while loading" not in capfd.readouterr().out


def test_without_the_check_a_model_returns_a_files_bytes_as_logits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The threat is real: what ConceptLens did before the check (and what the check stops)."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"TOP-SECRET")
    path = _save(ReadsAFile(str(secret)), tmp_path / "leak.pt")
    with pytest.raises(ModelLoadError, match="aten::from_file"):
        load_model(path, input_shape=(1, 4, 4))
    monkeypatch.setattr(loaders, "check_torchscript_module", lambda module: None)
    leaked = load_model(path, input_shape=(1, 4, 4)).predict(torch.zeros(1, 1, 4, 4))
    assert bytes(leaked[0].to(torch.uint8).tolist()) == b"TOP-SECRET"


# --------------------------------------------------------------------------- typical models


ZOO: dict[str, tuple[type[nn.Module], tuple[int, int, int], dict[str, str]]] = {
    "digit_cnn": (DigitCNN, (1, 16, 16), {}),
    "mlp": (MLP, (1, 16, 16), {}),
    "resnet": (ResNet, (3, 16, 16), {}),
    "vit-manual-attention": (ViT, (3, 16, 16), {"attention": "manual"}),
    "vit-multihead-attention": (ViT, (3, 16, 16), {"attention": "torch"}),
    "vit-sdpa": (ViT, (3, 16, 16), {"attention": "fused"}),
}


@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize("name", list(ZOO))
def test_typical_architectures_pass(name: str, how: str, tmp_path: Path) -> None:
    cls, shape, kwargs = ZOO[name]
    torch.manual_seed(0)
    model = cls(**kwargs).eval()
    x = torch.rand(3, *shape)
    if how == "script":
        program = torch.jit.script(model)
    else:
        program = torch.jit.trace(model, (x,), check_trace=False)
    loaded = load_model(_save(program, tmp_path / f"{name}.pt"), input_shape=shape)
    with torch.inference_mode():
        expected = model(x)
    torch.testing.assert_close(loaded.predict(x), expected, rtol=1e-5, atol=1e-5)


def test_demo_torchscript_file_passes(demo_dir: Path) -> None:
    module = torch.jit.load(str(demo_dir / "digit_cnn.torchscript.pt"))
    check_torchscript_module(module)


def test_the_allowlist_is_names_not_patterns() -> None:
    assert is_allowed("aten::conv2d") and is_allowed("aten::add_")
    for kind in (
        "aten::from_file",
        "aten::save",
        "prim::Print",
        "prim::CallMethod",
        "prim::CallFunction",
        "prim::SetAttr",
        "aten::set_",
        "aten::empty",
        "aten::resize_",
        "aten::data_ptr",
        "debugprims::load_tensor",
    ):
        assert not is_allowed(kind), kind
    assert all(kind.split("::")[0] in ("aten", "prim") for kind in ALLOWED_OPS)


def test_scripted_state_survives_a_round_trip() -> None:
    """Sanity: the checks look at a loaded module, not at the Python one."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(ResNet().eval()), buffer)
    buffer.seek(0)
    check_torchscript_module(torch.jit.load(buffer))
