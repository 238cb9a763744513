"""Forwarding what a worker or zygote prints to the gateway log, line by line."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Final

# A longer run of output without a newline is logged in pieces of this size.
MAX_LOG_LINE: Final = 16 * 1024


async def forward_output(
    stream: asyncio.StreamReader,
    log: logging.Logger,
    prefix: str,
    fields: Callable[[], dict[str, object]] | None = None,
) -> None:
    """Log each line of ``stream`` as ``<prefix>: <line>`` until EOF; ``fields`` gives
    the structured fields of each line (endpoint, worker, the request it served)."""

    def emit(line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        log.info("%s: %s", prefix, text, extra=fields() if fields else None)

    pending = b""
    while chunk := await stream.read(65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_LOG_LINE:
            lines.append(pending)
            pending = b""
        for line in lines:
            emit(line)
    if pending:
        emit(pending)


class _LogProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that closes its connection at end of file.

    StreamReaderProtocol asks to keep a transport open after EOF (the peer may still read
    what we write); a log channel is one-way, so it is closed at once and a reaped
    worker's descriptor goes with it, not whenever the garbage collector gets to it."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False


def log_channel() -> tuple[socket.socket, socket.socket]:
    """A one-way channel for a child's stdout and stderr: (our end, the child's end).

    A socket pair rather than a pipe: uvloop closes a pipe transport's descriptor twice
    (libuv closes it, then the attached file object does), and the second close can hit
    a descriptor another thread has just opened under the same number; a socket object
    is detached instead, so its descriptor is closed exactly once."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.shutdown(socket.SHUT_WR)
    return ours, theirs


async def channel_reader(sock: socket.socket) -> asyncio.StreamReader:
    """An asyncio stream over our end of a ``log_channel`` (taking ownership of it; it is
    closed once the stream reaches end of file, or here if it cannot be read)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LOG_LINE)
    try:
        await loop.create_unix_connection(lambda: _LogProtocol(reader), sock=sock)
    except BaseException:
        sock.close()
        raise
    return reader
