"""The benchmark's reference server: the least an aiohttp app on uvloop can do per request.

``python loadtests/bare_echo.py`` listens on 127.0.0.1 at a free port, prints
``accepting invocations on http://127.0.0.1:PORT`` (the gateway's own line) on stdout once
it serves, and answers ``POST /endpoints/{name}/invocations`` with the request body and
content type unchanged. No auth, no routing to workers: what the gateway adds to this is
Coldbrew's own cost. Runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import socket

import uvloop
from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=body, content_type=request.content_type)


async def serve() -> None:
    """Serve until a stop signal; the address is printed once connections are accepted."""
    app = web.Application()
    app.router.add_post("/endpoints/{name}/invocations", echo)
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


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())
