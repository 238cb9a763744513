"""The request path's one handle on telemetry: a tracer, the instruments, and trace
context propagation (W3C ``traceparent``), built from providers passed in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry.instruments import GaugeSource, Instruments

SCOPE = "coldbrew.gateway"


class Telemetry:
    """Tracing and metrics for the gateway.

    ``tracer_provider`` None means tracing is off: a no-op tracer, so spans cost
    nothing. ``gauges`` maps catalogue names of observable gauges to their sources.
    """

    def __init__(
        self,
        *,
        meter_provider: MeterProvider,
        tracer_provider: TracerProvider | None,
        gauges: Mapping[str, GaugeSource] | None = None,
        span_sink: Callable[[ReadableSpan], None] | None = None,
    ) -> None:
        self.tracing = tracer_provider is not None
        self.tracer: Tracer = (
            tracer_provider.get_tracer(SCOPE) if tracer_provider else trace.NoOpTracer()
        )
        self.instruments = Instruments(meter_provider.get_meter(SCOPE), dict(gauges or {}))
        self._span_sink = span_sink
        self._resource = getattr(tracer_provider, "resource", None) or Resource.get_empty()
        self._propagator = TraceContextTextMapPropagator()

    def traceparent(self, span: Span) -> str | None:
        """The W3C traceparent of ``span``, for a worker to join its trace; None when
        not tracing."""
        context = span.get_span_context()
        if not self.tracing or not context.is_valid:
            return None
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    def export_worker_spans(self, spans: Iterable[Mapping[str, object]]) -> None:
        """Hand spans a worker made (plain data) to the exporter. A malformed one is
        dropped: it came from model code's process, not from us."""
        if self._span_sink is None:
            return
        for data in spans:
            try:
                span = _readable(data, self._resource)
            except (KeyError, TypeError, ValueError):
                continue
            self._span_sink(span)

    def extract(self, headers: Mapping[str, str]) -> Context | None:
        """The caller's trace context from a ``traceparent`` header, if any."""
        if not self.tracing or "traceparent" not in headers:
            return None
        return self._propagator.extract(headers)


def _readable(data: Mapping[str, object], resource: Resource) -> ReadableSpan:
    """A span a worker reported (see workers.tracing) as the SDK's ReadableSpan."""
    trace_id = int(str(data["trace_id"]), 16)
    sampled = TraceFlags(TraceFlags.SAMPLED)
    parent_id = data.get("parent_span_id")
    parent = (
        SpanContext(trace_id, int(str(parent_id), 16), is_remote=True, trace_flags=sampled)
        if parent_id
        else None
    )
    attributes = data.get("attributes")
    start, end, kind, status = data["start"], data["end"], data["kind"], data["status"]
    if not isinstance(start, int) or not isinstance(end, int):
        raise TypeError("span times must be integers")
    if not isinstance(kind, int) or not isinstance(status, int):
        raise TypeError("span kind and status must be integers")
    return ReadableSpan(
        name=str(data["name"]),
        context=SpanContext(
            trace_id, int(str(data["span_id"]), 16), is_remote=False, trace_flags=sampled
        ),
        parent=parent,
        resource=resource,
        attributes=dict(attributes) if isinstance(attributes, dict) else {},
        kind=SpanKind(kind),
        instrumentation_scope=InstrumentationScope("coldbrew.worker"),
        status=Status(StatusCode(status)),
        start_time=start,
        end_time=end,
    )
