"""Forwarding what a worker or zygote prints to the gateway log, line by line."""

from __future__ import annotations

import asyncio
import logging
import os
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


class _PipeProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that closes its pipe at end of file.

    StreamReaderProtocol asks to keep the transport open after EOF (a socket may still be
    written to), and uvloop honours that for pipes too: the read end of a dead worker's log
    pipe would stay open until the garbage collector found it, a few descriptors more with
    every reaped worker. A log pipe has nothing after EOF, so it is closed at once."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False


async def pipe_reader(read_fd: int) -> asyncio.StreamReader:
    """An asyncio stream over the read end of a pipe (taking ownership of the fd; it is
    closed once the stream reaches end of file)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LOG_LINE)
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    try:
        await loop.connect_read_pipe(lambda: _PipeProtocol(reader), pipe)
    except BaseException:
        pipe.close()
        raise
    return reader
