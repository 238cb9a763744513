"""Spans that are cheap on the request path.

The OpenTelemetry SDK's spans validate and copy every attribute, take a lock per change
and hand each finished span to a processor; with its exporter encoding protobuf on a
thread of the same process, tracing cost the gateway half its throughput. Here the
trace API (``Tracer``, ``Span``, ``use_span``, the current-span context that logs read)
is implemented directly: a span is a small object of our own, and a finished span is one
plain record (see ``records``) appended to a ``SpanBatch``, which hands whole batches to
a sink (the span exporter process). Sampling is the SDK's sampler (``OTEL_TRACES_SAMPLER``)
asked once per trace entering the gateway; child spans follow their parent.

Attribute values are the gateway's own (strings, numbers, booleans), so they are stored
as given. Not thread-safe: spans are made and ended on the event loop.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util import types

from gateway.telemetry.records import SAMPLED

GATEWAY_SCOPE = "coldbrew.gateway"
# Records handed to the sink at once; a timer flushes a partial batch.
BATCH_SIZE = 128
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)

Record = dict[str, Any]


class SpanBatch:
    """Finished span records, handed to ``sink`` a batch at a time (``BATCH_SIZE``, or
    whatever ``flush`` finds). The sink must not block: it runs on the event loop."""

    def __init__(self, sink: Callable[[list[Record]], None]) -> None:
        self._sink = sink
        self._records: list[Record] = []

    def add(self, record: Record) -> None:
        self._records.append(record)
        if len(self._records) >= BATCH_SIZE:
            self.flush()

    def extend(self, records: Sequence[Record]) -> None:
        self._records.extend(records)
        if len(self._records) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        if self._records:
            batch, self._records = self._records, []
            self._sink(batch)


class LightSpan(trace.Span):
    """A recording span whose end appends one record to its batch."""

    __slots__ = (
        "_attributes",
        "_batch",
        "_context",
        "_end",
        "_events",
        "_kind",
        "_name",
        "_parent",
        "_start",
        "_status",
        "_status_message",
    )

    def __init__(
        self,
        batch: SpanBatch,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: types.Attributes,
        start_ns: int,
    ) -> None:
        self._batch = batch
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self._start = start_ns
        self._end: int | None = None
        self._status = StatusCode.UNSET
        self._status_message: str | None = None
        self._events: list[list[Any]] | None = None

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        self._attributes.update(attributes)

    def update_name(self, name: str) -> None:
        self._name = name

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        event = [name, timestamp or time.time_ns(), dict(attributes) if attributes else {}]
        if self._events is None:
            self._events = []
        self._events.append(event)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        # As the SDK: OK is final, and UNSET never overrides a status.
        if self._status is StatusCode.OK or code is StatusCode.UNSET:
            return
        self._status = code
        self._status_message = description if code is StatusCode.ERROR else None

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        # Type and message, without a stack trace: every error crossing these spans is
        # the gateway's own answer (a throttle, a model error), whose trace says nothing
        # to the operator and would cost a formatted traceback per throttled request.
        details = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            **(dict(attributes) if attributes else {}),
        }
        self.add_event("exception", details, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time or time.time_ns()
        parent = self._parent
        record: Record = {
            "trace_id": format(self._context.trace_id, "032x"),
            "span_id": format(self._context.span_id, "016x"),
            "parent_span_id": format(parent.span_id, "016x") if parent else None,
            "name": self._name,
            "kind": self._kind.value,
            "start": self._start,
            "end": self._end,
            "attributes": self._attributes,
            "status": self._status.value,
            "scope": GATEWAY_SCOPE,
        }
        if self._status_message:
            record["status_message"] = self._status_message
        if self._events:
            record["events"] = self._events
        self._batch.add(record)


class LightTracer(trace.Tracer):
    """Makes ``LightSpan``s into ``batch``; ``sampler`` decides for each trace that
    enters the gateway (a root span, or one continuing a remote caller's span)."""

    def __init__(self, batch: SpanBatch, sampler: Sampler) -> None:
        self._batch = batch
        self._sampler = sampler

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        span_id = random.getrandbits(64) or 1
        trace_id = parent.trace_id if parent.is_valid else random.getrandbits(128) or 1
        if not parent.is_valid or parent.is_remote:
            decision = self._sampler.should_sample(
                context, trace_id, name, kind, attributes, links
            ).decision
            sampled = decision is Decision.RECORD_AND_SAMPLE
        else:
            sampled = parent.trace_flags.sampled
        flags = SAMPLED if sampled else NOT_SAMPLED
        own = SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)
        if not sampled:
            return NonRecordingSpan(own)
        return LightSpan(
            self._batch,
            name,
            own,
            parent if parent.is_valid else None,
            kind,
            attributes,
            start_time or time.time_ns(),
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current
