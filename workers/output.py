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


async def pipe_reader(read_fd: int) -> asyncio.StreamReader:
    """An asyncio stream over the read end of a pipe (taking ownership of the fd)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LOG_LINE)
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except BaseException:
        pipe.close()
        raise
    return reader
