"""The framed protocol between the gateway and a worker process.

A frame is an 8-byte prelude, ``>II`` (header length, body length), then the header as an
orjson-encoded object, then the body as raw bytes. The header always carries ``"t"``, the
message type. Bodies are never JSON-encoded, so model payloads cross unchanged.

Messages, in the order a worker's life uses them:

- worker -> gateway ``ready``   ``{"t": "ready", "pid": int, "load_ms": float}``, no body.
- worker -> gateway ``failed``  ``{"t": "failed", "message": str}``, body: the traceback text.
  Sent instead of ``ready`` when loading the model raised; the worker then exits.
- gateway -> worker ``invoke``  ``{"t": "invoke", "id": str, "content_type": str|None,
  "accept": str|None, "custom_attributes": str|None}``, body: the request payload.
- worker -> gateway ``result``  ``{"t": "result", "status": int, "content_type": str|None,
  "custom_attributes": str|None}``, body: the response payload (or the error text when
  ``status`` is not 2xx, as the inference toolkit answers a handler exception).

The gateway ends a worker by closing its end of the socket; the worker exits on EOF.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Final

import orjson

PRELUDE: Final = struct.Struct(">II")
# A header is a handful of fields; the longest are lists of module names (what a model's
# handler imported, what a zygote pre-imports), thousands of names for a deep-learning
# stack, a few hundred KB. The bound keeps a corrupt prelude from allocating gigabytes.
MAX_HEADER_BYTES: Final = 16 * 1024 * 1024
# Payloads are capped far lower by the gateway (6 MiB at most); this bound only keeps a
# corrupt prelude from making the reader allocate gigabytes.
MAX_BODY_BYTES: Final = 64 * 1024 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def encode_frame(header: dict[str, Any], body: bytes = b"") -> bytes:
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


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    """Blocking read of exactly ``size`` bytes; None on EOF before the first byte."""
    if size == 0:
        return b""
    view = bytearray(size)
    got = 0
    while got < size:
        n = sock.recv_into(memoryview(view)[got:], size - got)
        if n == 0:
            if got == 0:
                return None
            raise ProtocolError(f"connection closed after {got} of {size} bytes")
        got += n
    return bytes(view)


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    """Blocking read of one frame (used inside the worker).

    Returns None on a clean EOF between frames. Raises ProtocolError on a torn or invalid
    frame and OSError on socket errors.
    """
    prelude = _recv_exactly(sock, PRELUDE.size)
    if prelude is None:
        return None
    head_len, body_len = decode_prelude(prelude)
    head = _recv_exactly(sock, head_len)
    if head is None:
        raise ProtocolError("connection closed inside a frame")
    header = decode_header(head)
    body = _recv_exactly(sock, body_len)
    if body is None:
        raise ProtocolError("connection closed inside a frame")
    return header, body


def send_frame(sock: socket.socket, header: dict[str, Any], body: bytes = b"") -> None:
    """Blocking write of one frame (used inside the worker)."""
    sock.sendall(encode_frame(header, body))
