"""Weights of a project architecture as a safetensors file, byte for byte reproducible.

``safetensors.torch.save`` writes its metadata from a hash map whose order changes from one
call to the next, so the same weights give different bytes — and, in a content-addressed
store, different keys: a retried training run would store its final model twice and the
analysis cache would not know the two are one model. :func:`weights_bytes` rewrites the
header with sorted keys; the tensors' bytes are untouched.
"""

from __future__ import annotations

import json
import struct

import torch

from .architectures import ARCHITECTURES

__all__ = ["canonical_safetensors", "weights_bytes"]


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted (padded with spaces to a
    multiple of 8 bytes, as the format asks); tensors and their offsets unchanged.

    Example:
        >>> import safetensors.torch
        >>> raw = safetensors.torch.save({"w": torch.zeros(2)}, {"b": "1", "a": "2"})
        >>> canonical_safetensors(raw)[8:61]
        b'{"__metadata__":{"a":"2","b":"1"},"w":{"data_offsets"'
    """
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + size :]


def weights_bytes(model: torch.nn.Module, architecture: str) -> bytes:
    """``model``'s weights as a safetensors file recording its architecture (the metadata
    :func:`~conceptlens.models.loaders.load_model` reads back); same weights → same bytes."""
    import safetensors.torch

    spec = ARCHITECTURES[architecture]
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    metadata = {
        "conceptlens_architecture": architecture,
        "input_shape": json.dumps(list(spec.input_shape)),
        "num_classes": str(spec.num_classes),
    }
    return canonical_safetensors(safetensors.torch.save(state, metadata))
