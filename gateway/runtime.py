"""The runtime API: ``POST /endpoints/{EndpointName}/invocations`` (spec §3.1).

The path of one invocation: authenticate, validate, resolve the endpoint, take admission
tokens (or throttle at once), run on a worker, give the tokens back exactly once, answer.
Failures are raised; the router maps them to the wire.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from aiohttp import web
from opentelemetry.trace import Span, SpanKind

from gateway.admission import AdmissionStore, Grant, Refusal
from gateway.auth import authenticate
from gateway.clock import Clock
from gateway.deployments import Deployment, Deployments
from gateway.errors import ServiceError, model_error, throttling, validation_error
from gateway.sigv4 import Verifier
from gateway.telemetry.instruments import Invoked
from gateway.telemetry.invocation import record_call_spans, server_attributes
from gateway.telemetry.recorder import Telemetry
from workers import Invocation, InvocationResult, PoolManager, WorkerError, WorkerTimeout
from workers.spans import LightSpan

ENDPOINT_NAME: Final = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
ENDPOINT_NAME_PATTERN: Final = "^[a-zA-Z0-9](-*[a-zA-Z0-9])*"
MAX_HEADER_VALUE: Final = 1024

# Request headers passed to the model, with the member name their errors use (spec §3.1).
CONTENT_TYPE: Final = "Content-Type"
ACCEPT: Final = "Accept"
CUSTOM_ATTRIBUTES: Final = "X-Amzn-SageMaker-Custom-Attributes"
COLD_START: Final = "X-Coldbrew-Cold-Start"
# One debug line per invocation (structured fields in JSON log mode).
INVOCATIONS_LOG: Final = logging.getLogger("coldbrew.invocations")
_MEMBERS: Final = {
    CONTENT_TYPE: "contentType",
    ACCEPT: "accept",
    CUSTOM_ATTRIBUTES: "customAttributes",
}


@dataclass(slots=True)
class InvocationContext:
    """What the error mapping needs to know about the invocation so far."""

    request_id: str
    endpoint_name: str | None = None
    account_id: str | None = None
    region: str | None = None


def _constraint(value: str, member: str, constraint: str) -> ServiceError:
    return validation_error(
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: {constraint}"
    )


def check_endpoint_name(name: str) -> None:
    """Raise ValidationError unless ``name`` is a valid endpoint name (spec §5.1)."""
    if len(name) > 63:
        raise _constraint(name, "endpointName", "Member must have length less than or equal to 63")
    if not ENDPOINT_NAME.fullmatch(name):
        raise _constraint(
            name,
            "endpointName",
            f"Member must satisfy regular expression pattern: {ENDPOINT_NAME_PATTERN}",
        )


def model_header(request: web.Request, name: str) -> str | None:
    """A request header passed to the model, checked against its constraint (max 1024,
    ASCII); None when absent."""
    value = request.headers.get(name)
    if value is None:
        return None
    if len(value) > MAX_HEADER_VALUE:
        raise _constraint(
            value[:64] + "...",
            _MEMBERS[name],
            f"Member must have length less than or equal to {MAX_HEADER_VALUE}",
        )
    if not value.isascii():
        raise _constraint(
            value, _MEMBERS[name], "Member must satisfy regular expression pattern: \\p{ASCII}*"
        )
    return value


class Runtime:
    """Serves invocations. Owns nothing: its collaborators are passed in."""

    def __init__(
        self,
        *,
        deployments: Deployments,
        pools: PoolManager,
        admission: AdmissionStore,
        verifier: Verifier,
        clock: Clock,
        region_concurrency: int,
        max_payload_bytes: int,
        body_timeout_s: float,
        telemetry: Telemetry,
    ) -> None:
        self._telemetry = telemetry
        self._deployments = deployments
        self._pools = pools
        self._admission = admission
        self._verifier = verifier
        self._clock = clock
        self._region_concurrency = region_concurrency
        self._max_payload_bytes = max_payload_bytes
        self._body_timeout_s = body_timeout_s

    async def invoke(
        self, request: web.Request, raw_name: str, ctx: InvocationContext
    ) -> web.Response:
        """Handle one InvokeEndpoint request.

        Raises ServiceError, SigV4Error or a worker error; the caller maps them. The
        admission tokens taken here are released on every path, cancellation included.
        One SERVER span covers it, continuing the caller's trace (``traceparent``).
        """
        started = time.perf_counter()
        if not self._telemetry.tracing:
            # No span at all, rather than a no-op one: its context handling is ~5% of
            # the gateway's CPU per invocation.
            return await self._invoke(request, raw_name, ctx, None, started)
        with self._telemetry.tracer.start_as_current_span(
            "invoke",
            context=self._telemetry.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes=server_attributes(request, ctx.request_id),
        ) as span:
            return await self._invoke(request, raw_name, ctx, span, started)

    async def _invoke(
        self,
        request: web.Request,
        raw_name: str,
        ctx: InvocationContext,
        span: Span | None,
        started: float,
    ) -> web.Response:
        principal, body = await authenticate(
            request,
            self._verifier,
            now=self._clock.wall(),
            body_limit=self._max_payload_bytes,
            body_timeout_s=self._body_timeout_s,
        )
        ctx.account_id = principal.account_id
        ctx.region = principal.region
        name = unquote(raw_name)
        check_endpoint_name(name)
        ctx.endpoint_name = name
        content_type = model_header(request, CONTENT_TYPE)
        accept = model_header(request, ACCEPT)
        custom_attributes = model_header(request, CUSTOM_ATTRIBUTES)
        if span is not None:
            span.update_name(name)
            span.set_attributes(
                {
                    "faas.name": name,
                    "cloud.account.id": principal.account_id,
                    "cloud.region": principal.region,
                }
            )
        deployment = self._deployments.resolve(principal.account_id, principal.region, name)
        if deployment is None:
            raise validation_error(f"Endpoint {name} of account {principal.account_id} not found.")
        traceparent = None
        if span is not None:
            span.set_attribute("faas.max_memory", deployment.variant.memory_mb * 1024 * 1024)
            traceparent = self._telemetry.traceparent(span)
        invocation = Invocation(
            request_id=ctx.request_id,
            body=body,
            content_type=content_type,
            accept=accept,
            custom_attributes=custom_attributes,
            traceparent=traceparent,
        )
        return await self._admit_and_run(deployment, invocation, ctx, span, started)

    def _admit(self, deployment: Deployment, labels: dict[str, str], span: Span | None) -> Grant:
        """Take the endpoint's and the region's tokens, or throttle (and count it). The
        outcome is an attribute of the invocation's span: a span of its own would time
        a few microseconds, for a third more spans per invocation."""
        grant = self._try_acquire(deployment)
        if grant is Refusal.ENDPOINT or grant is Refusal.REGION:
            quota = grant.value
            if span is not None:
                span.set_attribute("coldbrew.throttled", quota)
            self._telemetry.instruments.throttles.add(1, {**labels, "quota": quota})
            if grant is Refusal.ENDPOINT:
                raise throttling(
                    f"Endpoint {deployment.name} is at its limit of "
                    f"{deployment.admission_limit} concurrent invocations."
                )
            raise throttling(
                f"The account is at its total serverless concurrency of "
                f"{self._region_concurrency} in {deployment.scope.region}."
            )
        return grant

    def _try_acquire(self, deployment: Deployment) -> Grant | Refusal:
        scope = deployment.scope
        if deployment.serverless:
            region_key: tuple[str, ...] = ("region", scope.account_id, scope.region)
            # What other endpoints reserve with provisioned concurrency is theirs alone.
            others = self._deployments.reserved(scope.account_id, scope.region)
            region_limit = self._region_concurrency - (others - deployment.provisioned)
        else:
            # Instance-based endpoints are not serverless: the region's serverless
            # concurrency quota does not apply to them.
            region_key = ("instances", scope.account_id, scope.region)
            region_limit = sys.maxsize
        return self._admission.try_acquire(
            endpoint_key=("endpoint", *deployment.key),
            endpoint_limit=deployment.admission_limit,
            region_key=region_key,
            region_limit=region_limit,
            now=self._clock.monotonic(),
        )

    async def _admit_and_run(
        self,
        deployment: Deployment,
        invocation: Invocation,
        ctx: InvocationContext,
        span: Span | None,
        started: float,
    ) -> web.Response:
        instruments = self._telemetry.instruments
        labels = {
            "faas.name": deployment.name,
            "cloud.account.id": deployment.scope.account_id,
            "cloud.region": deployment.scope.region,
        }
        grant = self._admit(deployment, labels, span)
        self._deployments.count_invocation(deployment)
        pool_started_ns = time.time_ns()
        try:
            pool = self._pools.pool(deployment.pool_key, deployment.spec, deployment.limits)
            result = await pool.invoke(invocation)
        except WorkerError as error:
            if isinstance(error, WorkerTimeout):
                instruments.timeouts.add(1, labels)
            instruments.errors.add(1, {**labels, "error.type": type(error).__name__})
            raise
        finally:
            self._admission.release(grant, now=self._clock.monotonic())
        if span is not None:
            span.set_attribute("faas.coldstart", result.cold_start)
            if 200 <= result.status < 300:
                span.set_attribute("http.response.status_code", 200)
        self._record(deployment, invocation, result, labels, started)
        if type(span) is LightSpan:  # not when the trace is not sampled
            record_call_spans(span, result, pool_started_ns)
        if not 200 <= result.status < 300:
            instruments.errors.add(1, {**labels, "error.type": "ModelError"})
            raise model_error(
                original_status=result.status,
                original_message=result.body.decode("utf-8", "replace"),
                endpoint=deployment.name,
                account=deployment.scope.account_id,
                region=deployment.scope.region,
            )
        headers = {
            "x-amzn-RequestId": ctx.request_id,
            "x-Amzn-Invoked-Production-Variant": deployment.variant.name,
        }
        if result.custom_attributes is not None:
            headers[CUSTOM_ATTRIBUTES] = result.custom_attributes
        if result.cold_start:
            # Not a SageMaker header (clients ignore it): which warm tier started the
            # worker this request waited for, and how long that took.
            headers[COLD_START] = f"tier={result.tier}; init-ms={result.init_ms or 0.0:.1f}"
        response = web.Response(body=result.body, headers=headers)
        # Set after construction: aiohttp would otherwise append a charset the model
        # did not ask for.
        response.headers["Content-Type"] = result.content_type or "application/octet-stream"
        return response

    def _record(
        self,
        deployment: Deployment,
        invocation: Invocation,
        result: InvocationResult,
        labels: dict[str, str],
        started: float,
    ) -> None:
        """Metrics of one answered invocation; the spans its worker made go to the
        exporter (when tracing)."""
        init_s = (result.init_ms or 0.0) / 1000.0 if result.cold_start else None
        if INVOCATIONS_LOG.isEnabledFor(logging.DEBUG):
            INVOCATIONS_LOG.debug(
                "invocation of %s: %d",
                deployment.name,
                result.status,
                extra={
                    "endpoint": deployment.name,
                    "request_id": invocation.request_id,
                    "status": result.status,
                    "cold_start": result.cold_start,
                    "tier": result.tier,
                    "model_ms": round(result.model_ms, 3),
                },
            )
        # SageMaker bills model time rounded up to the millisecond.
        self._deployments.count_usage(
            deployment, math.ceil(result.model_ms), len(invocation.body), len(result.body)
        )
        self._telemetry.instruments.record(
            Invoked(
                attributes=labels,
                total_s=time.perf_counter() - started,
                model_s=result.model_ms / 1000.0,
                init_s=init_s,
                tier=result.tier,
                cpu_s=result.cpu_s,
                max_rss_bytes=result.max_rss_bytes,
            )
        )
        self._telemetry.export_worker_spans(result.spans)
