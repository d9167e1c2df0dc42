"""Messages to and from the model sandbox: arrays through shared memory, hostile replies refused."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import numpy as np
import pytest

from worker.sandbox import wire


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield a, b
    a.close()
    b.close()


def test_arrays_and_header_arrive_bit_identical(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    rng = np.random.default_rng(0)
    arrays = {
        "logits": rng.normal(size=(300, 10)).astype(np.float32),
        "mask": rng.random((7, 3)) > 0.5,
        "empty": np.zeros((0, 4), dtype=np.int64),
        "strided": rng.normal(size=(20, 20))[::2, ::3],  # not contiguous on the way in
    }
    wire.send(a, {"op": "x", "n": 3}, arrays)
    message = wire.receive(b)
    assert message is not None
    header, got = message
    assert header == {"op": "x", "n": 3}
    assert got.keys() == arrays.keys()
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype and np.array_equal(got[name], array)


def test_a_large_header_travels_through_shared_memory(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    big = {"values": list(range(50_000))}  # far more than one packet
    wire.send(a, big)
    message = wire.receive(b)
    assert message is not None and message[0] == big and message[1] == {}


def test_closed_peer_reads_as_none(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.close()
    assert wire.receive(b) is None


def _raw(sock: socket.socket, outer: dict[str, object], payloads: list[bytes]) -> None:
    """Send a hand-made message, as a hostile sandbox could."""
    fds = []
    for payload in payloads:
        fd = os.memfd_create("x")
        os.write(fd, payload)
        fds.append(fd)
    socket.send_fds(sock, [json.dumps(outer).encode()], fds)
    for fd in fds:
        os.close(fd)


@pytest.mark.parametrize(
    ("spec", "payload", "why"),
    [
        ({"name": "a", "dtype": "float32", "shape": [4]}, b"\0" * 8, "size does not match"),
        ({"name": "a", "dtype": "object", "shape": [1]}, b"\0" * 8, "bad array header"),
        ({"name": "a", "dtype": "float32", "shape": [-1]}, b"", "bad array shape"),
        ({"name": "a", "dtype": "float64", "shape": [1 << 20, 1 << 19]}, b"", "larger than"),
    ],
)
def test_hostile_array_headers_are_refused_before_reading(
    pair: tuple[socket.socket, socket.socket], spec: dict[str, object], payload: bytes, why: str
) -> None:
    a, b = pair
    _raw(a, {"h": "{}", "a": [spec]}, [payload])
    with pytest.raises(wire.WireError, match=why):
        wire.receive(b, max_bytes=1 << 30)


def test_a_header_that_is_not_an_object_is_refused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    _raw(a, {"h": "[1, 2]", "a": []}, [])
    with pytest.raises(wire.WireError, match="not a JSON object"):
        wire.receive(b)


def test_more_files_than_arrays_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    _raw(a, {"h": "{}", "a": []}, [b"x"])
    with pytest.raises(wire.WireError, match="does not match"):
        wire.receive(b)
