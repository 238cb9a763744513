"""The runtime's InvokeEndpoint (spec §3.1), after the edge has authenticated the caller
and read the body: validate the input members, resolve the endpoint, take admission
tokens (or throttle at once), run on a worker, give the tokens back exactly once, and
return the model's answer. Plain values in and out; the edge speaks HTTP. Failures are
raised, and the edge maps them to the wire.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Final

from opentelemetry.trace import Span

from gateway.runtime.admission import AdmissionStore, Grant, Refusal, invocation_quotas
from gateway.runtime.deployments import Deployment, Deployments
from gateway.sagemaker.errors import ServiceError, model_error, throttling, validation_error
from gateway.sagemaker.names import (
    MAX_NAME_LENGTH,
    RUNTIME_NAME_PATTERN,
    Scope,
    is_endpoint_name,
)
from gateway.telemetry.instruments import Invoked
from gateway.telemetry.invocation import record_call_spans
from gateway.telemetry.recorder import Telemetry
from workers import (
    Invocation,
    InvocationResult,
    LightSpan,
    PoolManager,
    WorkerError,
    WorkerTimeout,
)

# ContentType, Accept and CustomAttributes: at most this long, and ASCII (spec §3.1).
MAX_MEMBER_LENGTH: Final = 1024
# One debug line per invocation (structured fields in JSON log mode).
INVOCATIONS_LOG: Final = logging.getLogger("coldbrew.invocations")


@dataclass(slots=True)
class InvocationContext:
    """What the error mapping needs to know about the invocation so far."""

    request_id: str
    endpoint_name: str | None = None
    account_id: str | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """The model's answer to an invocation, and the variant that served it."""

    result: InvocationResult
    variant_name: str


def _constraint(value: str, member: str, constraint: str) -> ServiceError:
    return validation_error(
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: {constraint}"
    )


def check_endpoint_name(name: str) -> None:
    """Raise ValidationError unless ``name`` is a valid endpoint name (spec §5.1)."""
    if len(name) > MAX_NAME_LENGTH:
        raise _constraint(
            name,
            "endpointName",
            f"Member must have length less than or equal to {MAX_NAME_LENGTH}",
        )
    if not is_endpoint_name(name):
        raise _constraint(
            name,
            "endpointName",
            f"Member must satisfy regular expression pattern: {RUNTIME_NAME_PATTERN}",
        )


def check_member(value: str | None, member: str) -> str | None:
    """An input member passed to the model (``contentType``, ``accept``,
    ``customAttributes``), checked against its constraint: at most 1024 characters,
    ASCII. None when absent."""
    if value is None:
        return None
    if len(value) > MAX_MEMBER_LENGTH:
        raise _constraint(
            value[:64] + "...",
            member,
            f"Member must have length less than or equal to {MAX_MEMBER_LENGTH}",
        )
    if not value.isascii():
        raise _constraint(
            value, member, "Member must satisfy regular expression pattern: \\p{ASCII}*"
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
        region_concurrency: int,
        telemetry: Telemetry,
    ) -> None:
        self._telemetry = telemetry
        self._deployments = deployments
        self._pools = pools
        self._admission = admission
        self._region_concurrency = region_concurrency

    async def invoke(
        self,
        caller: Scope,
        name: str,
        body: bytes,
        *,
        content_type: str | None,
        accept: str | None,
        custom_attributes: str | None,
        ctx: InvocationContext,
        span: Span | None,
        started: float,
    ) -> Answer:
        """Run one invocation of endpoint ``name`` for ``caller``.

        Raises ServiceError (bad input, unknown endpoint, throttled, the model's own
        error) or a worker error; the caller maps them. The admission tokens taken here
        are released on every path, cancellation included. ``span`` is the invocation's
        SERVER span (None when not traced); ``started`` the ``perf_counter`` time the
        request arrived.
        """
        check_endpoint_name(name)
        ctx.endpoint_name = name
        content_type = check_member(content_type, "contentType")
        accept = check_member(accept, "accept")
        custom_attributes = check_member(custom_attributes, "customAttributes")
        if span is not None:
            span.update_name(name)
            span.set_attributes(
                {
                    "faas.name": name,
                    "cloud.account.id": caller.account_id,
                    "cloud.region": caller.region,
                }
            )
        deployment = self._deployments.resolve(caller.account_id, caller.region, name)
        if deployment is None:
            raise validation_error(f"Endpoint {name} of account {caller.account_id} not found.")
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
        result = await self._admit_and_run(deployment, invocation, span, started)
        return Answer(result, deployment.variant.name)

    def _admit(self, deployment: Deployment, labels: dict[str, str], span: Span | None) -> Grant:
        """Take the endpoint's and the region's tokens, or throttle (and count it). The
        outcome is an attribute of the invocation's span: a span of its own would time
        a few microseconds, for a third more spans per invocation."""
        scope = deployment.scope
        grant = self._admission.try_acquire(
            invocation_quotas(
                endpoint_key=deployment.key,
                endpoint_limit=deployment.admission_limit,
                account_id=scope.account_id,
                region=scope.region,
                serverless=deployment.serverless,
                provisioned=deployment.provisioned,
                reserved_in_region=self._deployments.reserved(scope.account_id, scope.region),
                region_concurrency=self._region_concurrency,
            )
        )
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
                f"{self._region_concurrency} in {scope.region}."
            )
        return grant

    async def _admit_and_run(
        self,
        deployment: Deployment,
        invocation: Invocation,
        span: Span | None,
        started: float,
    ) -> InvocationResult:
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
            self._admission.release(grant)
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
        return result

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
