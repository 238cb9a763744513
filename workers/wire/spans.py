"""Spans that are cheap to make: the OpenTelemetry trace API implemented directly, each
finished span one plain record.

The OpenTelemetry SDK's spans validate and copy every attribute, take a lock per change
and hand each finished span to a processor; in the gateway, with its exporter encoding
protobuf on a thread of the same process, tracing cost half the throughput. Here the
trace API (``Tracer``, ``Span``, the current-span context that logs read) is implemented
directly: a span is a small object, and a finished span is one record (the format the
gateway's span exporter takes: ids as hex digits, the API's enum values, times in ns
since the epoch, ``attributes``, ``scope``; see ``gateway/telemetry/records.py``) handed
to an ``emit`` callable. The gateway uses it for its own spans, and a worker for the
spans model code makes, so neither needs the SDK's span machinery.

Attribute values are stored as given. Not thread-safe: one thread makes and ends them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
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

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
INTERNAL: Final[int] = SpanKind.INTERNAL.value

Record = dict[str, Any]


# Whether to keep a trace entering the process: asked with the parent's SpanContext
# (invalid for a new trace), then an SDK Sampler's own arguments (context, trace_id,
# name, kind, attributes, links).
Sample = Callable[..., bool]


class LightSpan(trace.Span):
    """A recording span whose end hands its record (made when it starts) to ``emit``."""

    __slots__ = ("_attributes", "_context", "_emit", "_record", "_span_id", "_trace_id")

    def __init__(
        self, emit: Callable[[Record], None], trace_id: int, span_id: int, record: Record
    ) -> None:
        self._emit = emit
        self._trace_id = trace_id
        self._span_id = span_id
        self._context: SpanContext | None = None
        self._record = record
        self._attributes: dict[str, Any] = record["attributes"]

    def get_span_context(self) -> SpanContext:
        # Made when first asked for (a traceparent, a log line): most spans never are.
        if self._context is None:
            self._context = SpanContext(
                self._trace_id, self._span_id, is_remote=False, trace_flags=SAMPLED
            )
        return self._context

    def traceparent(self) -> str:
        """This span's W3C traceparent (it is sampled: it records)."""
        return f"00-{self._record['trace_id']}-{self._record['span_id']}-01"

    def is_recording(self) -> bool:
        return self._record["end"] is None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        self._attributes.update(attributes)

    def update_name(self, name: str) -> None:
        self._record["name"] = name

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        event = [name, timestamp or time.time_ns(), dict(attributes) if attributes else {}]
        self._record.setdefault("events", []).append(event)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        # As the SDK: OK is final, and UNSET never overrides a status.
        if self._record["status"] == StatusCode.OK.value or code is StatusCode.UNSET:
            return
        self._record["status"] = code.value
        if code is StatusCode.ERROR and description:
            self._record["status_message"] = description
        else:
            self._record.pop("status_message", None)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        # Type and message, without a stack trace: every error crossing the gateway's
        # spans is its own answer (a throttle, a model error), whose trace says nothing
        # to the operator and would cost a formatted traceback per throttled request.
        # Model code's spans get the same (an exception leaving the handler is logged
        # with its traceback by the worker).
        details = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            **(dict(attributes) if attributes else {}),
        }
        self.add_event("exception", details, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._record["end"] is not None:
            return
        self._record["end"] = end_time or time.time_ns()
        self._emit(self._record)

    def record_child(
        self,
        name: str,
        start: int,
        end: int,
        attributes: dict[str, Any] | None = None,
        under: Record | None = None,
    ) -> Record:
        """Emit the record of a span that has already happened, from ``start`` to ``end``
        (ns since the epoch): an INTERNAL child of this span, or of ``under``, a record an
        earlier call returned. No span object is made and no context is read: the gateway
        places a call's cold start and model time after the fact, several spans a call.
        ``attributes`` is kept as given. Returns the record."""
        parent = self._record if under is None else under
        record = new_record(
            parent["trace_id"],
            format(random.getrandbits(64) or 1, "016x"),
            parent["span_id"],
            name,
            INTERNAL,
            start,
            end,
            {} if attributes is None else attributes,
            parent["scope"],
        )
        self._emit(record)
        return record


class CurrentSpan:
    """``start_as_current_span``'s context manager: the span is the current one inside
    the block; an exception leaving it is recorded on the span and sets its status
    (unless told otherwise), as the API's ``use_span`` does, and the span ends on exit."""

    __slots__ = ("_end_on_exit", "_record_exception", "_set_status", "_span", "_token")

    def __init__(
        self, span: trace.Span, end_on_exit: bool, record_exception: bool, set_status: bool
    ) -> None:
        self._span = span
        self._end_on_exit = end_on_exit
        self._record_exception = record_exception
        self._set_status = set_status

    def __enter__(self) -> trace.Span:
        self._token = context_api.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        context_api.detach(self._token)
        span = self._span
        # Exception, not BaseException: cancellation and GeneratorExit are not errors.
        if isinstance(exc, Exception) and span.is_recording():
            if self._record_exception:
                span.record_exception(exc)
            if self._set_status:
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        if self._end_on_exit:
            span.end()


class LightTracer(trace.Tracer):
    """Makes ``LightSpan``s whose records go to ``emit``, under the instrumentation scope
    ``scope``. ``sample`` decides for each trace that enters the process (a root span,
    or one continuing another process's span); child spans follow their parent."""

    def __init__(self, emit: Callable[[Record], None], scope: str, sample: Sample) -> None:
        self._emit = emit
        self._scope = scope
        self._sample = sample

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
        current = trace.get_current_span(context)
        span_id = random.getrandbits(64) or 1
        if type(current) is LightSpan:  # not isinstance: Span is an ABC, and slow to check
            # A child of our own span (the common case): its ids are already text.
            record = self._record(
                name, kind, attributes, start_time, current._record["trace_id"], span_id
            )
            record["parent_span_id"] = current._record["span_id"]
            return LightSpan(self._emit, current._trace_id, span_id, record)
        parent = current.get_span_context()
        trace_id = parent.trace_id if parent.is_valid else random.getrandbits(128) or 1
        if not parent.is_valid or parent.is_remote:
            sampled = self._sample(parent, context, trace_id, name, kind, attributes, links)
        else:
            sampled = parent.trace_flags.sampled
        if not sampled:
            return NonRecordingSpan(
                SpanContext(trace_id, span_id, is_remote=False, trace_flags=NOT_SAMPLED)
            )
        record = self._record(name, kind, attributes, start_time, format(trace_id, "032x"), span_id)
        if parent.is_valid:
            record["parent_span_id"] = format(parent.span_id, "016x")
            if parent.is_remote:
                record["parent_remote"] = True
        return LightSpan(self._emit, trace_id, span_id, record)

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
    ) -> CurrentSpan:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        return CurrentSpan(span, end_on_exit, record_exception, set_status_on_exception)

    def _record(
        self,
        name: str,
        kind: SpanKind,
        attributes: types.Attributes,
        start_time: int | None,
        trace_hex: str,
        span_id: int,
    ) -> Record:
        return new_record(
            trace_hex,
            format(span_id, "016x"),
            None,
            name,
            kind._value_,  # the plain attribute: .value is a descriptor call
            start_time or time.time_ns(),
            None,
            dict(attributes) if attributes else {},
            self._scope,
        )


def new_record(
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    name: str,
    kind: int,
    start: int,
    end: int | None,
    attributes: dict[str, Any],
    scope: str,
) -> Record:
    """A span's record (see ``gateway/telemetry/records.py``), its status unset; ``end``
    None while the span runs."""
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent_span_id,
        "name": name,
        "kind": kind,
        "start": start,
        "end": end,
        "attributes": attributes,
        "status": 0,
        "scope": scope,
    }


def follow_parent(parent: SpanContext, *sampler_arguments: Any) -> bool:
    """The default sampling (the SDK's ``parentbased_always_on``): a trace continued from
    another process is kept when that process kept it; a new trace is kept."""
    return not parent.is_valid or parent.trace_flags.sampled


def json_safe(value: Any) -> Any:
    """``value`` with every string one UTF-8 can encode: a lone surrogate (what aiohttp
    keeps of a header's undecodable byte, or what model code may set) becomes U+FFFD.
    Dicts, lists and tuples are copied; other values pass as they are."""
    if isinstance(value, str):
        return value if value.isascii() else _utf8_safe(value)
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _utf8_safe(text: str) -> str:
    try:
        # A surrogate escape stands for the byte it kept; undecodable bytes become U+FFFD.
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        # Other lone surrogates: each becomes U+FFFD.
        return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)
