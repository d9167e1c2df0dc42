"""Messages between a worker and its model sandbox: JSON headers, arrays in shared memory.

One message is one packet on a ``SOCK_SEQPACKET`` Unix socket pair: a JSON object, and
with it the file descriptors of anonymous shared-memory files (``memfd``), one per array.
Arrays never travel through a pipe and nothing is pickled — the sandbox runs uploaded
model code, so what it sends back is read as plain JSON and raw numbers only:

* a header names each array's dtype (from a short list) and shape; the receiver checks
  that the shared file holds exactly that many bytes before reading it;
* the receiver copies the bytes out with ``preadv`` (one copy, no shared mapping), so a
  sender that later shrinks or rewrites its file cannot crash or change what was read.

A JSON header larger than one packet travels the same way as an array of bytes.
"""

from __future__ import annotations

import json
import math
import os
import socket
from typing import Any

import numpy as np

#: dtypes an array may have on the wire.
DTYPES = ("float32", "float64", "int64", "int32", "uint8", "bool")
#: JSON headers above this many bytes go through shared memory instead of the packet.
MAX_PACKET = 32 * 1024
#: At most this many arrays per message.
MAX_ARRAYS = 32
_LARGE_JSON = "__json__"

Arrays = dict[str, np.ndarray]


class WireError(Exception):
    """The peer sent something that is not a well-formed message (or went away)."""


def send(sock: socket.socket, header: dict[str, Any], arrays: Arrays | None = None) -> None:
    """Send ``header`` (JSON-able) and ``arrays`` as one message."""
    arrays = dict(arrays or {})
    body = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_PACKET:
        arrays[_LARGE_JSON] = np.frombuffer(body, dtype=np.uint8)
        body = b"{}"
    specs = []
    fds = []
    try:
        for name, array in arrays.items():
            data = np.ascontiguousarray(array)
            if data.dtype.name not in DTYPES:
                raise TypeError(f"array {name!r} has dtype {data.dtype}, not one of {DTYPES}")
            specs.append({"name": name, "dtype": data.dtype.name, "shape": list(data.shape)})
            fds.append(_shared_file(data))
        packet = json.dumps({"h": body.decode(), "a": specs}, separators=(",", ":")).encode()
        socket.send_fds(sock, [packet], fds)
    finally:
        for fd in fds:
            os.close(fd)


def receive(
    sock: socket.socket, *, max_bytes: int = 1 << 34
) -> tuple[dict[str, Any], Arrays] | None:
    """The next message, or ``None`` when the peer closed its end.

    Raises :class:`WireError` on anything malformed; ``max_bytes`` bounds the total size of
    the arrays (checked before any is read).
    """
    try:
        data, fds, flags, _ = socket.recv_fds(sock, MAX_PACKET + 4096, MAX_ARRAYS + 1)
    except ConnectionResetError:
        return None
    try:
        if not data and not fds:
            return None
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise WireError("message truncated")
        outer = _json_object(data)
        specs = outer.get("a")
        if not isinstance(specs, list) or len(specs) != len(fds):
            raise WireError("array list does not match the shared files sent")
        shapes = [_spec(spec) for spec in specs]
        if sum(_nbytes(dtype, shape) for _, dtype, shape in shapes) > max_bytes:
            raise WireError(f"arrays larger than {max_bytes} bytes")
        arrays = {
            name: _read(fd, dtype, shape)
            for (name, dtype, shape), fd in zip(shapes, fds, strict=True)
        }
    finally:
        for fd in fds:
            os.close(fd)
    body = outer.get("h")
    if not isinstance(body, str):
        raise WireError("no header")
    header = _json_object(arrays.pop(_LARGE_JSON).tobytes() if _LARGE_JSON in arrays else body)
    return header, arrays


def _shared_file(data: np.ndarray) -> int:
    fd = os.memfd_create("conceptlens-array", os.MFD_CLOEXEC)
    try:
        view = _bytes_of(data)
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read(fd: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=dtype)
    view = _bytes_of(out)
    if os.fstat(fd).st_size != len(view):
        raise WireError("shared file size does not match the array's header")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], done)
        if got <= 0:
            raise WireError("shared file ended early")
        done += got
    return out


def _bytes_of(array: np.ndarray) -> memoryview:
    """A writable byte view of a C-contiguous array (no copy)."""
    return memoryview(array.reshape(-1).view(np.uint8).data)


def _spec(spec: Any) -> tuple[str, str, tuple[int, ...]]:
    if not isinstance(spec, dict):
        raise WireError("bad array header")
    name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if not isinstance(name, str) or dtype not in DTYPES or not isinstance(shape, list):
        raise WireError("bad array header")
    if len(shape) > 8 or not all(isinstance(d, int) and 0 <= d < 1 << 40 for d in shape):
        raise WireError("bad array shape")
    return name, str(dtype), tuple(shape)


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def _json_object(raw: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WireError("header is not JSON") from None
    if not isinstance(value, dict):
        raise WireError("header is not a JSON object")
    return value
