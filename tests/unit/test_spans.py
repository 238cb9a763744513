"""The gateway's own spans: what a finished span records, how traces are continued and
sampled, and how records become the SDK's spans again in the exporter process."""

from __future__ import annotations

import io
import struct
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry import spans as spans_module
from gateway.telemetry.exporter import exporter_environment, read_frames
from gateway.telemetry.records import HashedResource, to_readable
from gateway.telemetry.spans import LightTracer, SpanBatch

CALLER = "4bf92f3577b34da6a3ce929d0e0e4736"


def tracer(sampler: Any = DEFAULT_ON) -> tuple[LightTracer, list[list[dict[str, Any]]]]:
    batches: list[list[dict[str, Any]]] = []
    batch = SpanBatch(batches.append)
    return LightTracer(batch, sampler), batches


def flushed(found: LightTracer, batches: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    found._batch.flush()
    return [record for batch in batches for record in batch]


def caller_context(flags: str) -> Any:
    header = {"traceparent": f"00-{CALLER}-00f067aa0ba902b7-{flags}"}
    return TraceContextTextMapPropagator().extract(header)


def test_nested_spans_record_parent_kind_times_and_attributes() -> None:
    found, batches = tracer()
    with found.start_as_current_span(
        "invoke", kind=SpanKind.SERVER, attributes={"faas.trigger": "http"}
    ) as root:
        root.set_attribute("faas.coldstart", False)
        root.update_name("behave")
        with found.start_as_current_span("admission") as child:
            child.set_attributes({"coldbrew.tokens": "endpoint,region"})
        found.start_span("model call", start_time=5, attributes={"a": 1}).end(end_time=9)
    admission, call, server = flushed(found, batches)
    assert server["name"] == "behave"
    assert server["kind"] == SpanKind.SERVER.value
    assert server["parent_span_id"] is None
    assert server["attributes"] == {"faas.trigger": "http", "faas.coldstart": False}
    assert admission["parent_span_id"] == call["parent_span_id"] == server["span_id"]
    assert admission["trace_id"] == call["trace_id"] == server["trace_id"]
    assert (call["start"], call["end"]) == (5, 9)
    assert server["start"] <= admission["start"] <= admission["end"] <= server["end"]
    assert server["scope"] == "coldbrew.gateway"
    assert server["status"] == StatusCode.UNSET.value


def test_a_callers_trace_is_continued() -> None:
    found, batches = tracer()
    with found.start_as_current_span("invoke", context=caller_context("01")):
        pass
    (record,) = flushed(found, batches)
    assert record["trace_id"] == CALLER
    assert record["parent_span_id"] == "00f067aa0ba902b7"


def test_a_caller_that_does_not_sample_gets_no_span_recorded() -> None:
    found, batches = tracer()
    with found.start_as_current_span("invoke", context=caller_context("00")) as span:
        assert not span.is_recording()
        assert format(span.get_span_context().trace_id, "032x") == CALLER
        with found.start_as_current_span("admission") as child:
            assert isinstance(child, NonRecordingSpan)
    assert flushed(found, batches) == []


def test_the_sampler_decides_for_new_traces() -> None:
    found, batches = tracer(ALWAYS_OFF)
    with found.start_as_current_span("invoke") as span:
        assert span.get_span_context().trace_flags == TraceFlags(TraceFlags.DEFAULT)
    assert flushed(found, batches) == []


def test_an_error_sets_the_status_and_records_the_exception_once() -> None:
    found, batches = tracer()
    with pytest.raises(ValueError, match="no such endpoint"):  # noqa: SIM117
        with found.start_as_current_span("invoke"):
            raise ValueError("no such endpoint")
    (record,) = flushed(found, batches)
    assert record["status"] == StatusCode.ERROR.value
    assert record["status_message"] == "ValueError: no such endpoint"
    ((name, when, attributes),) = record["events"]
    assert name == "exception"
    assert isinstance(when, int)
    assert attributes == {"exception.type": "ValueError", "exception.message": "no such endpoint"}


def test_ending_twice_records_once_and_the_current_span_is_restored() -> None:
    found, batches = tracer()
    span = found.start_span("once")
    span.end()
    span.end()
    assert len(flushed(found, batches)) == 1
    with found.start_as_current_span("outer") as outer:
        assert trace.get_current_span() is outer
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_a_full_batch_goes_to_the_sink_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spans_module, "BATCH_SIZE", 3)
    batches: list[list[dict[str, Any]]] = []
    batch = SpanBatch(batches.append)
    for number in range(7):
        batch.add({"n": number})
    assert [len(b) for b in batches] == [3, 3]
    batch.flush()
    batch.flush()
    assert [len(b) for b in batches] == [3, 3, 1]


def test_records_become_sdk_spans_with_events_status_and_scope() -> None:
    found, batches = tracer()
    with (
        pytest.raises(RuntimeError),
        found.start_as_current_span("invoke", context=caller_context("01")),
    ):
        raise RuntimeError("boom")
    (record,) = flushed(found, batches)
    record = orjson.loads(orjson.dumps(record))  # as the exporter process receives it
    resource = HashedResource(Resource.create({"service.name": "test"}))
    span = to_readable(record, resource)
    assert format(span.context.trace_id, "032x") == CALLER
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].name == "exception"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "coldbrew.gateway"
    assert span.resource is resource
    assert hash(resource) == hash(resource)


VALID = {
    "trace_id": "1",
    "span_id": "1",
    "name": "x",
    "start": 1,
    "end": 2,
    "kind": 0,
    "status": 0,
}


def test_a_valid_minimal_record_is_accepted() -> None:
    assert to_readable(VALID, Resource.get_empty()).name == "x"


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {**VALID, "trace_id": "zz"},
        {**VALID, "start": "1"},
        {**VALID, "kind": 99},
        {**VALID, "events": [["e", "not a time", {}]]},
    ],
)
def test_a_malformed_record_is_refused(broken: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        to_readable(broken, Resource.get_empty())


def test_frames_are_read_until_end_of_input_and_a_torn_frame_ends_them() -> None:
    def frame(value: Any) -> bytes:
        payload = orjson.dumps(value)
        return struct.pack(">I", len(payload)) + payload

    stream = io.BytesIO(frame([{"a": 1}]) + frame([]) + frame([{"b": 2}])[:-1])
    assert list(read_frames(stream)) == [[{"a": 1}], []]


def test_the_exporter_gets_otel_settings_but_no_secrets() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer x",
        "HTTPS_PROXY": "http://proxy:3128",
        "PATH": "/usr/bin",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "COLDBREW_TOKEN": "secret",
    }
    assert exporter_environment(environ) == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer x",
        "HTTPS_PROXY": "http://proxy:3128",
        "PATH": "/usr/bin",
    }
