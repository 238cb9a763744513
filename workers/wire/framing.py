"""The framed protocol between the gateway and the processes it starts.

A frame is an 8-byte prelude, ``>II`` (header length, body length), then the header as an
orjson-encoded object, then the body as raw bytes. The header always carries ``"t"``, the
message type; the messages and their shapes are declared in ``workers.wire.messages``.
Bodies are never JSON-encoded, so model payloads cross unchanged.
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    # Only for annotations: a worker process does not import the message types.
    from workers.wire.messages import Message

PRELUDE: Final = struct.Struct(">II")
# A header is a handful of fields; the longest are lists of module names (what a model's
# handler imported, what a zygote pre-imports), thousands of names for a deep-learning
# stack, a few hundred KB. The bound keeps a corrupt prelude from allocating gigabytes.
MAX_HEADER_BYTES: Final = 16 * 1024 * 1024
# Payloads are capped far lower by the gateway (6 MiB at most); this bound only keeps a
# corrupt prelude from making the reader allocate gigabytes.
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
# The error of a frame cut short by the end of the connection (``recv_frame`` says how
# many bytes came instead when the cut is inside one of the frame's parts).
CLOSED_INSIDE_A_FRAME: Final = "connection closed inside a frame"


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def encode_frame(header: Message, body: bytes = b"") -> bytes:
    """Return one frame as bytes, ready to write."""
    head = orjson.dumps(header)
    return PRELUDE.pack(len(head), len(body)) + head + body


def decode_prelude(prelude: bytes) -> tuple[int, int]:
    """Return (header length, body length) from the 8-byte prelude.

    Raises ProtocolError when either length is out of bounds.
    """
    head_len, body_len = PRELUDE.unpack(prelude)
    if head_len == 0 or head_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"header length {head_len} out of bounds")
    if body_len > MAX_BODY_BYTES:
        raise ProtocolError(f"body length {body_len} out of bounds")
    return head_len, body_len


def decode_header(raw: bytes) -> dict[str, Any]:
    """Parse a frame header; raises ProtocolError unless it is an object with a type."""
    try:
        header = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("t"), str):
        raise ProtocolError("header is not an object with a message type")
    return header


def recv_exactly(sock: socket.socket, size: int, torn: str = "") -> bytes | None:
    """Blocking read of exactly ``size`` bytes; None on EOF before the first byte.

    Raises ProtocolError on EOF after some of them (saying ``torn`` when given, else how
    many came) and OSError on socket errors.
    """
    if size == 0:
        return b""
    view = bytearray(size)
    got = 0
    while got < size:
        n = sock.recv_into(memoryview(view)[got:], size - got)
        if n == 0:
            if got == 0:
                return None
            raise ProtocolError(torn or f"connection closed after {got} of {size} bytes")
        got += n
    return bytes(view)


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    """Blocking read of one frame (used inside the worker).

    Returns None on a clean EOF between frames. Raises ProtocolError on a torn or invalid
    frame and OSError on socket errors.
    """
    prelude = recv_exactly(sock, PRELUDE.size)
    if prelude is None:
        return None
    head_len, body_len = decode_prelude(prelude)
    head = recv_exactly(sock, head_len)
    if head is None:
        raise ProtocolError(CLOSED_INSIDE_A_FRAME)
    header = decode_header(head)
    body = recv_exactly(sock, body_len)
    if body is None:
        raise ProtocolError(CLOSED_INSIDE_A_FRAME)
    return header, body


def send_frame(sock: socket.socket, header: Message, body: bytes = b"") -> None:
    """Blocking write of one frame (used inside the worker)."""
    sock.sendall(encode_frame(header, body))
