"""Finished spans as plain records: what the gateway batches for its span exporter, and
what workers report for the spans model code makes.

A record is a dict of JSON values: ``trace_id`` (32 hex digits), ``span_id`` and
``parent_span_id`` (16 hex digits, or None for a root), ``name``, ``kind`` and ``status``
(the OpenTelemetry enum values), ``start`` and ``end`` (ns since the epoch),
``attributes``; optionally ``status_message``, ``events`` (``[name, time_ns,
attributes]`` each) and ``scope`` (the instrumentation scope's name).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

WORKER_SCOPE = "coldbrew.worker"
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def to_readable(record: Mapping[str, object], resource: Resource) -> ReadableSpan:
    """The SDK's ReadableSpan for ``record``. Raises KeyError, TypeError or ValueError
    for a malformed one."""
    trace_id = int(str(record["trace_id"]), 16)
    parent_id = record.get("parent_span_id")
    parent = (
        SpanContext(trace_id, int(str(parent_id), 16), is_remote=True, trace_flags=SAMPLED)
        if parent_id
        else None
    )
    start, end, kind, status = record["start"], record["end"], record["kind"], record["status"]
    if not isinstance(start, int) or not isinstance(end, int):
        raise TypeError("span times must be integers")
    if not isinstance(kind, int) or not isinstance(status, int):
        raise TypeError("span kind and status must be integers")
    attributes = record.get("attributes")
    message = record.get("status_message")
    return ReadableSpan(
        name=str(record["name"]),
        context=SpanContext(
            trace_id, int(str(record["span_id"]), 16), is_remote=False, trace_flags=SAMPLED
        ),
        parent=parent,
        resource=resource,
        attributes=dict(attributes) if isinstance(attributes, dict) else {},
        events=_events(record.get("events")),
        kind=SpanKind(kind),
        instrumentation_scope=_scope(str(record.get("scope") or WORKER_SCOPE)),
        status=Status(StatusCode(status), str(message) if message else None),
        start_time=start,
        end_time=end,
    )


@functools.lru_cache(maxsize=64)
def _scope(name: str) -> InstrumentationScope:
    # One object per scope name: the encoder compares every span's scope.
    return InstrumentationScope(name)


class HashedResource(Resource):
    """A Resource that hashes once. The OTLP encoder groups spans by resource, and a
    Resource hashes by serialising its attributes to JSON, once per span otherwise."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(dict(resource.attributes), resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or super().__eq__(other)


def _events(value: object) -> list[Event]:
    if not isinstance(value, list):
        return []
    events = []
    for name, timestamp, attributes in value:
        if not isinstance(timestamp, int):
            raise TypeError("event times must be integers")
        events.append(
            Event(str(name), dict(attributes) if isinstance(attributes, dict) else {}, timestamp)
        )
    return events
