"""Spans that model code makes inside a worker, joined to the invocation's trace.

The gateway passes the invocation's W3C ``traceparent``. Model code can make spans only
through the OpenTelemetry API, so a worker does nothing for tracing until that API is
imported (``workers.child.serve`` checks before each call); then it installs a tracer provider
of its own (``workers.wire.spans``: no SDK to import, or to fork with) that keeps finished
spans, and runs each traced call with the caller's span as the current one. Code like
``trace.get_tracer(__name__).start_as_current_span("preprocess")`` in a handler then
records spans of the invocation's trace, under the scope its tracer was named for. They
go back to the gateway in the result frame, and the gateway exports them with its own. A
worker never talks to a collector itself (it has no collector settings, and no
credentials a collector might need).

Model code that imports the API only inside a call joins traces from its next call on.
A call keeps at most ``MAX_SPANS_PER_CALL`` spans, as the SDK's batch processor keeps at
most its queue's worth; the rest are dropped and counted on the worker's stderr (the
gateway's log).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Final, TypeVar

from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from workers.wire.spans import LightTracer, Record, follow_parent, json_safe

T = TypeVar("T")

# Spans one call may hand back: the default of the SDK's OTEL_BSP_MAX_QUEUE_SIZE. A span
# per token or per row of a batch would otherwise make a reply of any size.
MAX_SPANS_PER_CALL: Final = 2048


class RecordingTracerProvider(trace.TracerProvider):
    """Tracers whose finished spans go to ``emit``, scoped by the tracer's name."""

    def __init__(self, emit: Callable[[Record], None]) -> None:
        self._emit = emit

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return LightTracer(self._emit, instrumenting_module_name, follow_parent)


class WorkerTracing:
    """Runs handler calls inside the caller's trace and collects the spans they make."""

    def __init__(self) -> None:
        self._finished: list[Record] = []
        self._dropped = 0
        trace.set_tracer_provider(RecordingTracerProvider(self._keep))

    def _keep(self, record: Record) -> None:
        if len(self._finished) < MAX_SPANS_PER_CALL:
            self._finished.append(record)
        else:
            self._dropped += 1

    def run(self, traceparent: str, call: Callable[[], T]) -> T:
        """``call()`` with the caller's span as the current one (exceptions propagate;
        the spans finished meanwhile wait for ``drain``). A ``traceparent`` that does not
        parse runs ``call()`` outside any trace."""
        parent = parse_traceparent(traceparent)
        if parent is None:
            return call()
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
        try:
            return call()
        finally:
            context.detach(token)

    def drain(self) -> list[Record]:
        """The spans finished since the last drain, as JSON data for the result frame
        (``MAX_SPANS_PER_CALL`` at most; how many more were dropped goes to stderr)."""
        if self._dropped:
            sys.stderr.write(
                f"worker: dropped {self._dropped} spans the model made beyond "
                f"{MAX_SPANS_PER_CALL} in one call\n"
            )
            self._dropped = 0
        if not self._finished:
            return []
        spans = [_plain(record) for record in self._finished]
        self._finished.clear()
        return spans


def parse_traceparent(header: str) -> SpanContext | None:
    """The remote SpanContext a W3C ``traceparent`` names, or None if it is malformed.
    The gateway wrote it, so this is the version 00 form only, parsed without the
    propagator's regular expressions (a worker pays this on every traced call)."""
    parts = header.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id or len(parts[3]) != 2:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


def _plain(record: Record) -> Record:
    """``record`` with only what JSON and OTLP attributes can hold: model code may set
    any value as an attribute, and any string."""
    plain = {**record, "name": str(record["name"]), "attributes": _attributes(record["attributes"])}
    events = record.get("events")
    if events:
        plain["events"] = [[str(name), time, _attributes(found)] for name, time, found in events]
    return json_safe(plain)  # type: ignore[no-any-return]


def _attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {str(key): value for key, value in attributes.items() if _is_attribute(value)}


def _is_attribute(value: object) -> bool:
    if isinstance(value, str | bool | float):
        return True
    if isinstance(value, int):
        return -(1 << 63) <= value < 1 << 63
    if isinstance(value, list | tuple):
        return all(isinstance(item, str | bool | int | float) for item in value)
    return False
