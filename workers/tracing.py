"""Spans that model code makes inside a worker, joined to the invocation's trace.

The gateway passes the invocation's W3C ``traceparent``; on the first such request the
worker installs an OpenTelemetry SDK tracer provider that keeps finished spans in memory,
so code like ``trace.get_tracer(__name__).start_as_current_span("preprocess")`` in a
handler records real spans. They go back to the gateway in the result frame, and the
gateway exports them with its own. A worker never talks to a collector itself (it has no
collector settings, and no credentials a collector might need).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# What a worker imports to trace; a zygote pre-imports these when the gateway traces, so
# the first traced request of a forked worker does not pay for importing the SDK.
TRACING_MODULES = (
    "workers.tracing",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk.trace.export.in_memory_span_exporter",
    "opentelemetry.trace.propagation.tracecontext",
)


class WorkerTracing:
    """Runs handler calls inside the caller's trace and collects the spans they make."""

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from opentelemetry.trace.propagation.tracecontext import (
            TraceContextTextMapPropagator,
        )

        self._exporter = InMemorySpanExporter()
        # No resource detection (2 ms of the first traced call, on the cold path): the
        # gateway exports these spans under its own resource.
        provider = TracerProvider(resource=Resource.get_empty())
        provider.add_span_processor(SimpleSpanProcessor(self._exporter))
        trace.set_tracer_provider(provider)
        self._propagator = TraceContextTextMapPropagator()

    def run(self, traceparent: str, call: Callable[[], T]) -> T:
        """``call()`` with the caller's span as the current one (exceptions propagate;
        the spans finished meanwhile wait for ``drain``)."""
        from opentelemetry import context

        token = context.attach(self._propagator.extract({"traceparent": traceparent}))
        try:
            return call()
        finally:
            context.detach(token)

    def drain(self) -> list[dict[str, Any]]:
        """The spans finished since the last drain, as plain data for the result frame."""
        spans = [_plain(span) for span in self._exporter.get_finished_spans()]
        self._exporter.clear()
        return spans


def _plain(span: Any) -> dict[str, Any]:
    parent = span.parent
    attributes = {
        key: value
        for key, value in (span.attributes or {}).items()
        if isinstance(value, str | bool | int | float)
    }
    return {
        "name": span.name,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_span_id": format(parent.span_id, "016x") if parent else None,
        "start": span.start_time,
        "end": span.end_time,
        "kind": span.kind.value,
        "status": span.status.status_code.value,
        "attributes": attributes,
    }
