"""Refuse TorchScript programs that do more than compute on tensors.

A TorchScript file is a *program*. ``torch.jit.load`` runs no Python, but the TorchScript
code inside can call any registered operator: ``aten::from_file`` reads a file of the
worker's disk into a tensor (whose values the model can then return as "logits"),
``prim::Print`` writes to the worker's output, ``prim::CallFunction`` and friends run other
code. :func:`check_torchscript_archive` and :func:`check_torchscript_module` make sure a
model can do none of that, before it is ever called.

What runs, and when — and what is checked:

* **At load time** ``torch.jit.load`` compiles the ``code/`` files (compiling executes
  nothing), unpickles ``data.pkl`` with TorchScript's own restricted unpickler, and calls
  the TorchScript ``__setstate__`` of every object whose class defines one. That call
  happens *inside* ``torch.jit.load``, before any check on the loaded module could run, so
  :func:`check_torchscript_archive` reads the archive's code first and refuses any file
  that mentions ``__setstate__``. (No ``torch.nn`` module defines one; only quantized
  modules do, and they are refused anyway.)
* **At call time** a module runs its forward pre-hooks, ``forward`` and its forward hooks;
  ConceptLens also calls submodules directly (the components analysis runs the top-level
  children in turn). :func:`check_torchscript_module` therefore checks *every* method and
  every hook of *every* submodule, not only what ``forward`` reaches. Each method's graph
  is copied and inlined (``torch._C._jit_pass_inline``: calls into submodule methods,
  hooks and script functions are replaced by their bodies), then every node — including
  those in the nested blocks of ``prim::If`` and ``prim::Loop`` — must be of an allowed
  kind. A call that inlining could not resolve (``prim::CallMethod`` on an interface,
  ``prim::CallFunction`` on a function value) is not allowed, so nothing is left
  unchecked.

The allowlist (:data:`ALLOWED_OPS`) is a finite set of operator *names*, not a denylist:
an operator nobody thought about is refused, with its name in the message, and can be
added here after a look at what it does. A node's kind carries no overload
(``aten::add`` covers tensor, scalar, list and string additions alike), so an operator is
listed only if *every* overload of that name is pure. It holds

* ``prim::`` structure: constants, attribute reads, lists, tuples and dicts, ``If`` and
  ``Loop``, casts, raising an exception (harmless: the test pass fails), queries of a
  tensor's dtype, device and flags;
* ``aten::`` operators that compute tensors from tensors: arithmetic and comparisons,
  reductions, matrix products, convolutions, normalisation, activations, pooling,
  resampling and padding, attention, dropout, shape and indexing operations, creation of
  filled tensors (``zeros``, ``ones``, ``full``, ``arange``…), conversions (``to``,
  ``contiguous``, ``clone``), and the scalar, list and string helpers that scripted
  ``torch.nn`` code uses (``size``, ``len``, ``__getitem__``, ``format``…);
* ``aten::warn`` (scripted ``nn.MultiheadAttention`` calls it): it goes through Python's
  ``warnings`` (deduplicated, into the worker's log) and cannot choose where it writes.

The one family rule: the in-place form ``aten::X_`` of an allowed ``aten::X`` (``relu_``,
``add_``, ``masked_fill_``) is allowed — it computes the same values into an existing
tensor.

Deliberately left out (so refused), besides everything not listed: file and process
access (``aten::from_file``, ``aten::save``, ``aten::_load_for_mobile``…), output
(``prim::Print``), other code (``prim::CallMethod``, ``prim::CallFunction``,
``prim::PythonOp``, ``prim::fork``, ``aten::wait``, ``prim::rpc_*``, ``prim::CreateObject``,
``prim::SetAttr``, ``prim::Enter``/``prim::Exit``), raw memory (``aten::set_``,
``aten::data_ptr``, ``aten::as_strided``, ``aten::resize_``), and **uninitialised
memory** (``aten::empty``, ``empty_like``, ``new_empty``, ``empty_strided``): a tensor
that is allocated but not written holds whatever the worker's memory held before —
possibly another workspace's images or logits — and a model could return it as logits.
Random numbers (``rand``, ``randn``, ``bernoulli``) are not listed either: a model whose
output changes between calls has no Harsanyi interactions to compute.

Not checked here: how much memory or time a model takes (the worker's limits apply), and
whether ``torch.jit.load`` itself has bugs on a hostile archive (the archive's pickles are
checked at upload; run workers with the least privilege that works).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator

import torch

__all__ = [
    "ALLOWED_OPS",
    "TorchScriptRefused",
    "check_torchscript_archive",
    "check_torchscript_module",
    "is_allowed",
]

_REFUSAL = (
    "which is not a pure tensor operation; ConceptLens refuses models that can read files, "
    "print or run other code."
)

_PRIM = {
    "Constant",
    "GetAttr",
    "ListConstruct",
    "ListUnpack",
    "TupleConstruct",
    "TupleUnpack",
    "TupleIndex",
    "TupleSlice",
    "DictConstruct",
    "If",
    "Loop",
    "RaiseException",
    "Uninitialized",
    "unchecked_cast",
    "unchecked_unwrap_optional",
    "NumToTensor",
    "ImplicitTensorToNum",
    "StringIndex",
    "isinstance",
    "min",
    "max",
    "abs",
    "dtype",
    "device",
    "layout",
    "type",
    "requires_grad",
    "data",
    "tolist",
    "is_cuda",
    "is_cpu",
    "is_nested",
    "is_sparse",
    "is_sparse_csr",
    "is_quantized",
    "is_meta",
    "is_mkldnn",
    "is_xpu",
    "is_mps",
    "is_vulkan",
    "is_ipu",
    "is_maia",
}

_ATEN = {
    # arithmetic and elementwise math
    "add", "sub", "rsub", "mul", "div", "true_divide", "floor_divide", "floordiv",
    "remainder", "fmod", "neg", "abs", "pow", "float_power", "square", "sqrt", "rsqrt",
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "asin",
    "acos", "atan", "atan2", "sinh", "cosh", "tanh", "erf", "erfc", "reciprocal", "sign",
    "sgn", "floor", "ceil", "round", "trunc", "frac", "clamp", "clamp_min", "clamp_max",
    "clip", "minimum", "maximum", "fmin", "fmax", "lerp", "addcmul", "addcdiv", "hypot",
    "logaddexp", "nan_to_num", "copysign", "cumsum", "cumprod", "diff",
    # comparison and logic
    "eq", "ne", "lt", "le", "gt", "ge", "equal", "isnan", "isinf", "isfinite", "where",
    "logical_and", "logical_or", "logical_not", "logical_xor", "bitwise_and", "bitwise_or",
    "bitwise_xor", "bitwise_not", "__and__", "__or__", "__xor__", "__not__", "__is__",
    "__isnot__", "__contains__", "masked_fill", "all", "any",
    # reductions and sorting
    "sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin", "std", "var",
    "std_mean", "var_mean", "norm", "frobenius_norm", "linalg_vector_norm", "logsumexp",
    "topk", "sort", "argsort", "median", "count_nonzero", "aminmax",
    # products
    "matmul", "mm", "bmm", "addmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "outer",
    "einsum", "linear", "bilinear", "tensordot", "t",
    # convolution, normalisation, activation, pooling
    "conv1d", "conv2d", "conv3d", "convolution", "_convolution", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "batch_norm", "instance_norm", "group_norm",
    "layer_norm", "rms_norm", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu",
    "silu", "mish", "hardswish", "hardsigmoid", "hardtanh", "hardshrink", "softshrink",
    "softplus", "sigmoid", "log_sigmoid", "prelu", "rrelu", "glu", "threshold",
    "softmax", "log_softmax", "_softmax", "_log_softmax", "dropout", "feature_dropout",
    "alpha_dropout", "feature_alpha_dropout", "max_pool1d", "max_pool2d", "max_pool3d",
    "max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "pixel_shuffle", "pixel_unshuffle",
    "channel_shuffle", "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
    "upsample_linear1d", "upsample_bilinear2d", "upsample_bicubic2d",
    "upsample_trilinear3d", "_upsample_nearest_exact1d", "_upsample_nearest_exact2d",
    "_upsample_nearest_exact3d", "_upsample_bilinear2d_aa", "_upsample_bicubic2d_aa",
    "pad", "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
    "replication_pad1d", "replication_pad2d", "replication_pad3d", "embedding",
    "scaled_dot_product_attention", "_native_multi_head_attention", "cosine_similarity",
    "pairwise_distance", "cdist", "one_hot",
    # shape and indexing
    "size", "dim", "numel", "stride", "view", "view_as", "reshape", "reshape_as",
    "_unsafe_view", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose",
    "swapaxes", "swapdims", "movedim", "moveaxis", "contiguous", "expand", "expand_as",
    "repeat", "repeat_interleave", "tile", "cat", "concat", "concatenate", "stack", "hstack",
    "vstack", "split", "split_with_sizes", "tensor_split", "chunk", "unbind", "narrow",
    "select", "slice", "index", "index_select", "gather", "scatter", "scatter_add",
    "index_put", "index_add", "masked_select", "masked_scatter", "take_along_dim", "flip",
    "roll", "rot90", "tril", "triu", "diagonal", "diag", "nonzero", "unfold", "im2col",
    "col2im", "broadcast_to", "broadcast_tensors", "meshgrid", "alias", "detach", "clone",
    "copy", "fill", "zero", "numpy_T", "mT", "mH",
    # filled tensors (never uninitialised memory) and conversions
    "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "new_zeros", "new_ones",
    "new_full", "arange", "linspace", "logspace", "eye", "tensor", "scalar_tensor",
    "as_tensor", "to", "type_as", "item", "_cast_Float", "_cast_Long", "_cast_Int",
    # scalars, lists, dicts and strings, as scripted torch.nn code uses them
    "Int", "Float", "Bool", "ComplexImplicit", "IntImplicit", "FloatImplicit",
    "ScalarImplicit", "len", "__getitem__", "_set_item", "append", "extend", "insert",
    "pop", "list", "dict", "keys", "values", "items", "get", "reverse", "__range_length",
    "__derive_index", "format", "str", "join", "startswith", "endswith", "lower", "upper",
    "strip", "__upsample_nearest", "__interpolate", "_infer_size", "_size_if_not_equal",
    "_shape_as_tensor", "is_floating_point", "is_complex", "is_contiguous",
    "is_grad_enabled", "is_autocast_enabled", "is_autocast_cpu_enabled", "is_scripting",
    "element_size", "get_device", "warn",
}  # fmt: skip

ALLOWED_OPS: frozenset[str] = frozenset(
    {f"prim::{name}" for name in _PRIM} | {f"aten::{name}" for name in _ATEN}
)
"""Node kinds a TorchScript model may contain (see the module docstring for the choice)."""

_SETSTATE = re.compile(rb"__setstate__")
_MAX_CODE_BYTES = 64 * 2**20  # all code files together, uncompressed


class TorchScriptRefused(ValueError):
    """A TorchScript model uses something other than pure tensor operations; for a person."""


def is_allowed(kind: str) -> bool:
    """Whether a node kind is allowed: listed, or the in-place form of a listed ``aten::`` op.

    Example:
        >>> is_allowed("aten::relu_"), is_allowed("aten::from_file"), is_allowed("prim::Print")
        (True, False, False)
    """
    if kind in ALLOWED_OPS:
        return True
    base = kind[:-1]
    return (
        kind.startswith("aten::")
        and kind.endswith("_")
        and not kind.endswith("__")
        and not base.endswith("_")
        and base in ALLOWED_OPS
    )


def check_torchscript_archive(data: bytes) -> None:
    """Refuse an archive whose TorchScript code defines ``__setstate__``, before loading it.

    ``torch.jit.load`` calls such methods while it loads, so they cannot be checked
    afterwards. Reads every ``.py`` entry of the zip (at most 64 MiB uncompressed in all);
    a mention anywhere (even in a comment or string) refuses the file.

    Raises:
        TorchScriptRefused: the file defines or mentions ``__setstate__``.
        zipfile.BadZipFile: the bytes are not a readable zip archive.
    """
    budget = _MAX_CODE_BYTES
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".py"):
                continue
            with archive.open(info) as handle:
                text = handle.read(budget + 1)
            budget -= len(text)
            if budget < 0:
                raise TorchScriptRefused(
                    "The TorchScript code in this file is larger than 64 MiB; ConceptLens "
                    "does not load it."
                )
            if _SETSTATE.search(text):
                raise TorchScriptRefused(
                    f"This TorchScript model defines __setstate__ (in {info.filename}), code "
                    "that torch.jit.load would run while loading the file; ConceptLens "
                    "refuses models that run code when loaded. Script a plain nn.Module."
                )


def _graphs(module: torch.jit.ScriptModule) -> Iterator[tuple[str, str, torch.Graph]]:
    """``(submodule name, method or hook name, graph)`` of every method and hook of every
    submodule (the root is named ``''``)."""
    for name, submodule in module.named_modules():
        c_module = submodule._c
        for method in c_module._method_names():
            yield name, method, c_module._get_method(method).graph
        for hook in (*c_module._get_forward_pre_hooks(), *c_module._get_forward_hooks()):
            yield name, f"hook {hook.name}", hook.graph


def _node_kinds(block: torch.Block) -> Iterator[str]:
    """Kinds of every node of a block and, recursively, of the blocks nested in its nodes."""
    for node in block.nodes():
        yield node.kind()
        for inner in node.blocks():
            yield from _node_kinds(inner)


def check_torchscript_module(module: torch.jit.ScriptModule) -> None:
    """Refuse a loaded TorchScript module that calls an operator outside :data:`ALLOWED_OPS`.

    Checks every method and forward (pre-)hook of every submodule, inlined, nested blocks
    included (see the module docstring). Runs nothing in the model. Cost: one graph copy
    and inlining per method — milliseconds for a ResNet.

    Raises:
        TorchScriptRefused: naming the first refused operator and where it was found.
    """
    for name, method, graph in _graphs(module):
        inlined = graph.copy()
        torch._C._jit_pass_inline(inlined)
        for kind in _node_kinds(inlined.block()):
            if not is_allowed(kind):
                where = f"{method} of submodule '{name}'" if name else method
                raise TorchScriptRefused(
                    f"This TorchScript model calls {kind} (in {where}), {_REFUSAL}"
                )
