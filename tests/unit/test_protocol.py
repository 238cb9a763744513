"""The frame protocol between the gateway and its workers and zygotes, over real
connected sockets."""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from workers.child.zygote import recv_frame_with_fds
from workers.wire.framing import (
    MAX_HEADER_BYTES,
    PRELUDE,
    ProtocolError,
    decode_header,
    decode_prelude,
    encode_frame,
    recv_frame,
    send_frame,
)

FOUR_MIB = random.Random(7).randbytes(4 * 1024 * 1024)
# Where a torn frame ends: a frame of 99 body bytes cut at these offsets.
CUTS = [
    pytest.param(3, id="mid-prelude"),
    pytest.param(PRELUDE.size, id="after-prelude"),
    pytest.param(PRELUDE.size + 4, id="mid-header"),
    pytest.param(-1, id="mid-body"),
    pytest.param(-99, id="body-missing"),
]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    writer, reader = socket.socketpair()
    # A bound on every blocking call, so a protocol bug fails instead of hanging.
    writer.settimeout(10)
    reader.settimeout(10)
    with writer, reader:
        yield writer, reader


def send_in_background(
    sock: socket.socket, frames: list[tuple[dict[str, Any], bytes]], *, close: bool
) -> threading.Thread:
    """Write frames from another thread, since large bodies exceed the socket buffer."""

    def run() -> None:
        for header, body in frames:
            send_frame(sock, header, body)
        if close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def torn(raw: bytes, writer: socket.socket) -> None:
    """Send raw bytes then EOF; they are small enough to fit the socket buffer."""
    writer.sendall(raw)
    writer.shutdown(socket.SHUT_WR)


def test_encode_frame_layout() -> None:
    """A frame is the >II prelude, the orjson header, then the body unchanged."""
    header = {"t": "result", "status": 200, "content_type": None}
    frame = encode_frame(header, b"\x00body")
    head = orjson.dumps(header)
    assert frame[: PRELUDE.size] == PRELUDE.pack(len(head), 5)
    assert frame[PRELUDE.size : PRELUDE.size + len(head)] == head
    assert frame[PRELUDE.size + len(head) :] == b"\x00body"


def test_frames_round_trip_with_binary_bodies(pair: tuple[socket.socket, socket.socket]) -> None:
    """Headers and binary bodies (empty, every byte value, 4 MiB) arrive unchanged, in order."""
    writer, reader = pair
    frames: list[tuple[dict[str, Any], bytes]] = [
        ({"t": "ready", "pid": 1234, "load_ms": 12.5}, b""),
        (
            {"t": "invoke", "id": "r-1", "content_type": "application/x-npy", "accept": None},
            bytes(range(256)) * 3,
        ),
        ({"t": "result", "status": 200, "custom_attributes": "é/ü ☕"}, FOUR_MIB),
        ({"t": "invoke", "id": "r-2", "content_type": None}, b""),
        ({"t": "result", "status": 500, "content_type": "text/plain"}, b"\r\n\x00{not json"),
    ]
    thread = send_in_background(writer, frames, close=True)
    received = [recv_frame(reader) for _ in frames]
    thread.join()
    assert received == frames
    assert recv_frame(reader) is None


def test_clean_eof_between_frames_is_none(pair: tuple[socket.socket, socket.socket]) -> None:
    """EOF before any byte of a frame is a clean end, not an error."""
    writer, reader = pair
    writer.shutdown(socket.SHUT_WR)
    assert recv_frame(reader) is None


@pytest.mark.parametrize("cut", CUTS)
def test_torn_frame_raises(pair: tuple[socket.socket, socket.socket], cut: int) -> None:
    """EOF inside a frame (prelude, header or body) is a ProtocolError, not a clean end."""
    writer, reader = pair
    frame = encode_frame({"t": "result", "status": 200}, b"x" * 99)
    torn(frame[:cut], writer)
    with pytest.raises(ProtocolError, match="closed"):
        recv_frame(reader)


@pytest.mark.parametrize("head_len", [0, MAX_HEADER_BYTES + 1, 2**32 - 1])
def test_header_length_out_of_bounds_raises(
    pair: tuple[socket.socket, socket.socket], head_len: int
) -> None:
    """A header length of 0 or above MAX_HEADER_BYTES is refused before reading it."""
    writer, reader = pair
    torn(PRELUDE.pack(head_len, 0), writer)
    with pytest.raises(ProtocolError, match="out of bounds"):
        recv_frame(reader)


def test_header_length_limits_are_inclusive() -> None:
    """Header lengths 1 and exactly MAX_HEADER_BYTES are accepted."""
    assert decode_prelude(PRELUDE.pack(1, 7)) == (1, 7)
    assert decode_prelude(PRELUDE.pack(MAX_HEADER_BYTES, 0)) == (MAX_HEADER_BYTES, 0)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'"ready"', id="string"),
        pytest.param(b"42", id="number"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"pid": 1}', id="no-type"),
        pytest.param(b'{"t": 7}', id="type-not-string"),
        pytest.param(b'{"t": "ready"', id="not-json"),
        pytest.param(b'{"t": "\xff"}', id="not-utf8"),
    ],
)
def test_invalid_header_raises(pair: tuple[socket.socket, socket.socket], raw: bytes) -> None:
    """A header that is not a JSON object with a string "t" is a ProtocolError."""
    writer, reader = pair
    torn(PRELUDE.pack(len(raw), 0) + raw, writer)
    with pytest.raises(ProtocolError):
        recv_frame(reader)


def test_decode_header_returns_the_object() -> None:
    """A valid header decodes to the same dict."""
    header = {"t": "failed", "message": "boom", "extra": [1, None]}
    assert decode_header(orjson.dumps(header)) == header


def test_body_length_over_the_bound_is_refused() -> None:
    """A prelude announcing a body over MAX_BODY_BYTES is a protocol error, so a corrupt
    prelude cannot make the reader allocate gigabytes."""
    from workers.wire.framing import MAX_BODY_BYTES, PRELUDE, ProtocolError, decode_prelude

    assert decode_prelude(PRELUDE.pack(1, MAX_BODY_BYTES)) == (1, MAX_BODY_BYTES)
    with pytest.raises(ProtocolError):
        decode_prelude(PRELUDE.pack(1, MAX_BODY_BYTES + 1))


def test_zygote_reader_takes_the_descriptors_that_ride_with_a_frame(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A fork request arrives with its header, body and both descriptors, which still
    work; the next frame comes without any; EOF between frames is a clean end."""
    writer, reader = pair
    fork = {"role": "worker", "model_dir": "/m", "placement": None, "t": "fork"}
    pipe_r, pipe_w = os.pipe()
    try:
        socket.send_fds(writer, [encode_frame(fork, b"body")], [pipe_r, pipe_w])
    finally:
        os.close(pipe_r)
        os.close(pipe_w)
    writer.sendall(encode_frame({"t": "preload", "modules": ["json"]}))
    writer.shutdown(socket.SHUT_WR)
    received = recv_frame_with_fds(reader)
    assert received is not None
    header, body, fds = received
    try:
        assert (header, body, len(fds)) == (fork, b"body", 2)
        os.write(fds[1], b"through")
        assert os.read(fds[0], 16) == b"through"
    finally:
        for fd in fds:
            os.close(fd)
    assert recv_frame_with_fds(reader) == ({"t": "preload", "modules": ["json"]}, b"", [])
    assert recv_frame_with_fds(reader) is None


@pytest.mark.parametrize("cut", CUTS)
def test_zygote_reader_refuses_a_torn_frame(
    pair: tuple[socket.socket, socket.socket], cut: int
) -> None:
    """EOF anywhere inside a frame is the same ProtocolError for the zygote's reader."""
    writer, reader = pair
    torn(encode_frame({"t": "preload", "modules": []}, b"x" * 99)[:cut], writer)
    with pytest.raises(ProtocolError, match=r"^connection closed inside a frame$"):
        recv_frame_with_fds(reader)
