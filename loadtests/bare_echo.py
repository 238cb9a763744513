"""The benchmark's reference server: the least an aiohttp app on uvloop can do per request.

``python loadtests/bare_echo.py`` listens on 127.0.0.1 at a free port, prints
``accepting invocations on http://127.0.0.1:PORT`` (the gateway's own line) on stdout once
it serves, and answers ``POST /endpoints/{name}/invocations`` with the request body and
content type unchanged. No auth, no routing to workers: what the gateway adds to this is
Coldbrew's own cost. Runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

from aiohttp import web
from loopback import serve_until_stopped


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=body, content_type=request.content_type)


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/endpoints/{name}/invocations", echo)
    serve_until_stopped(app)
