"""``POST /endpoints/{EndpointName}/invocations`` over HTTP (spec §3.1): the SERVER span,
SigV4 over the exact body, the input members from the path and headers, and the answer
as the REST-JSON binding writes it. What an invocation means is ``gateway.runtime``.
"""

from __future__ import annotations

import time
from typing import Final
from urllib.parse import unquote

from aiohttp import web
from opentelemetry.trace import Span, SpanKind

from gateway.clock import Clock
from gateway.edge.auth import authenticate
from gateway.edge.sigv4 import Verifier
from gateway.runtime.invoke import Answer, InvocationContext, Runtime
from gateway.telemetry.invocation import server_attributes
from gateway.telemetry.recorder import Telemetry

# Request headers passed to the model (spec §3.1).
CONTENT_TYPE: Final = "Content-Type"
ACCEPT: Final = "Accept"
CUSTOM_ATTRIBUTES: Final = "X-Amzn-SageMaker-Custom-Attributes"
COLD_START: Final = "X-Coldbrew-Cold-Start"


class InvokeEndpoint:
    """The runtime API on the wire. Owns nothing: its collaborators are passed in."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        verifier: Verifier,
        clock: Clock,
        telemetry: Telemetry,
        max_payload_bytes: int,
        body_timeout_s: float,
    ) -> None:
        self._runtime = runtime
        self._verifier = verifier
        self._clock = clock
        self._telemetry = telemetry
        self._max_payload_bytes = max_payload_bytes
        self._body_timeout_s = body_timeout_s

    async def handle(
        self, request: web.Request, raw_name: str, ctx: InvocationContext
    ) -> web.Response:
        """Serve one InvokeEndpoint request.

        Raises ServiceError, SigV4Error or a worker error; the router maps them. One
        SERVER span covers it, continuing the caller's trace (``traceparent``).
        """
        started = time.perf_counter()
        if not self._telemetry.tracing:
            # No span at all, rather than a no-op one: its context handling is ~5% of
            # the gateway's CPU per invocation.
            return await self._handle(request, raw_name, ctx, None, started)
        with self._telemetry.tracer.start_as_current_span(
            "invoke",
            context=self._telemetry.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes=server_attributes(request, ctx.request_id),
        ) as span:
            return await self._handle(request, raw_name, ctx, span, started)

    async def _handle(
        self,
        request: web.Request,
        raw_name: str,
        ctx: InvocationContext,
        span: Span | None,
        started: float,
    ) -> web.Response:
        caller, body = await authenticate(
            request,
            self._verifier,
            now=self._clock.wall(),
            body_limit=self._max_payload_bytes,
            body_timeout_s=self._body_timeout_s,
        )
        ctx.account_id = caller.account_id
        ctx.region = caller.region
        headers = request.headers
        answer = await self._runtime.invoke(
            caller,
            unquote(raw_name),
            body,
            content_type=headers.get(CONTENT_TYPE),
            accept=headers.get(ACCEPT),
            custom_attributes=headers.get(CUSTOM_ATTRIBUTES),
            ctx=ctx,
            span=span,
            started=started,
        )
        return answer_response(answer, ctx.request_id)


def answer_response(answer: Answer, request_id: str) -> web.Response:
    """The HTTP response that carries ``answer``."""
    result = answer.result
    headers = {
        "x-amzn-RequestId": request_id,
        "x-Amzn-Invoked-Production-Variant": answer.variant_name,
    }
    if result.custom_attributes is not None:
        headers[CUSTOM_ATTRIBUTES] = result.custom_attributes
    if result.cold_start:
        # Not a SageMaker header (clients ignore it): which warm tier started the
        # worker this request waited for, how long that took, and the worker's pid on
        # the host (as the gateway's log names it).
        headers[COLD_START] = (
            f"tier={result.tier}; init-ms={result.init_ms or 0.0:.1f}; worker={result.worker_pid}"
        )
    response = web.Response(body=result.body, headers=headers)
    # Set after construction: aiohttp would otherwise append a charset the model
    # did not ask for.
    response.headers["Content-Type"] = result.content_type or "application/octet-stream"
    return response
