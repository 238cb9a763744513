"""The request path's one handle on telemetry: a tracer, the instruments, and trace
context propagation (W3C ``traceparent``), built from providers passed in."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer, TracerProvider
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
    ) -> None:
        self.tracing = tracer_provider is not None
        self.tracer: Tracer = (
            tracer_provider.get_tracer(SCOPE) if tracer_provider else trace.NoOpTracer()
        )
        self.instruments = Instruments(meter_provider.get_meter(SCOPE), dict(gauges or {}))
        self._propagator = TraceContextTextMapPropagator()

    def extract(self, headers: Mapping[str, str]) -> Context | None:
        """The caller's trace context from a ``traceparent`` header, if any."""
        if not self.tracing or "traceparent" not in headers:
            return None
        return self._propagator.extract(headers)
