"""The benchmark's OTLP/HTTP collector, in a process of its own.

``python loadtests/collector.py`` listens on 127.0.0.1 at a free port and prints
``accepting invocations on http://127.0.0.1:PORT`` (the line every bench server prints)
once it serves. It accepts POST on ``/v1/traces`` and ``/v1/metrics``, counts requests and
body bytes without decoding them, and answers 200 with an empty protobuf body (an empty
export response: everything accepted); bodies over ``MAX_BODY`` get 413. ``GET /counts``
answers the counts so far as JSON. Runs until SIGINT or SIGTERM.

Its own process, so that receiving telemetry never runs on the load generator's event
loop: the bench measures what tracing costs the gateway, not its collector's share of the
client.
"""

from __future__ import annotations

from aiohttp import web
from loopback import serve_until_stopped

PATHS = ("/v1/traces", "/v1/metrics")
PROTOBUF = "application/x-protobuf"
# One export is at most a batch of spans or one metrics snapshot; far below this.
MAX_BODY = 64 * 1024 * 1024


def collector_app() -> web.Application:
    counts = {path: {"requests": 0, "bytes": 0} for path in PATHS}

    async def receive(request: web.Request) -> web.Response:
        size = len(await request.read())
        seen = counts[request.path]
        seen["requests"] += 1
        seen["bytes"] += size
        return web.Response(body=b"", content_type=PROTOBUF)

    async def report(request: web.Request) -> web.Response:
        return web.json_response(counts)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_routes([web.post(path, receive) for path in PATHS])
    app.router.add_get("/counts", report)
    return app


if __name__ == "__main__":
    serve_until_stopped(collector_app())
