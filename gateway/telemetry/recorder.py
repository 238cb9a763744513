"""The request path's one handle on telemetry: a tracer, the instruments, and trace
context propagation (W3C ``traceparent``), built from providers passed in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Sampler
from opentelemetry.trace import Span, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry.instruments import GaugeSource, Instruments
from gateway.telemetry.spans import GATEWAY_SCOPE, SpanBatch, gateway_tracer
from workers import LightSpan

# The SDK's default: keep a trace unless the caller's traceparent says not sampled.
DEFAULT_SAMPLER: Sampler = DEFAULT_ON


class Telemetry:
    """Tracing and metrics for the gateway.

    ``spans`` None means tracing is off: a no-op tracer, so spans cost nothing. Otherwise
    spans are recorded cheaply (see ``spans``) into that batch, the worker spans with
    them, and ``sampler`` decides which traces are kept. ``gauges`` maps catalogue names
    of observable gauges to their sources.
    """

    def __init__(
        self,
        *,
        meter_provider: MeterProvider,
        spans: SpanBatch | None = None,
        sampler: Sampler | None = None,
        gauges: Mapping[str, GaugeSource] | None = None,
    ) -> None:
        self.tracing = spans is not None
        self._spans = spans
        self.tracer: Tracer = (
            gateway_tracer(spans, sampler or DEFAULT_SAMPLER)
            if spans is not None
            else trace.NoOpTracer()
        )
        self.instruments = Instruments(meter_provider.get_meter(GATEWAY_SCOPE), dict(gauges or {}))
        self._propagator = TraceContextTextMapPropagator()

    def traceparent(self, span: Span) -> str | None:
        """The W3C traceparent of ``span``, for a worker to join its trace; None when
        not tracing."""
        if type(span) is LightSpan:
            return span.traceparent()
        context = span.get_span_context()
        if not self.tracing or not context.is_valid:
            return None
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    def export_worker_spans(self, spans: Sequence[Mapping[str, object]]) -> None:
        """Hand spans a worker made (plain records, see ``records``) to the exporter,
        which drops a malformed one: it came from model code's process, not from us."""
        if self._spans is not None and spans:
            self._spans.extend([dict(span) for span in spans])

    def extract(self, headers: Mapping[str, str]) -> Context | None:
        """The caller's trace context from a ``traceparent`` header, if any."""
        if not self.tracing or "traceparent" not in headers:
            return None
        return self._propagator.extract(headers)
