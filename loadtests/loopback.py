"""Run one aiohttp app as a bench server process: on 127.0.0.1 at a free port, printing
``accepting invocations on http://127.0.0.1:PORT`` (the gateway's own line, which the
bench waits for) once it serves, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket

import uvloop
from aiohttp import web


async def _serve(app: web.Application) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        await web.SockSite(runner, sock).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(f"accepting invocations on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def serve_until_stopped(app: web.Application) -> None:
    """Serve ``app`` on uvloop until a stop signal."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(app))
