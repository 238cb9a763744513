"""Span records encoded straight into OTLP protobuf: checked by decoding the bytes with
the generated classes of opentelemetry-proto, the collector's own view of them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry.otlp import TraceRequest, encode_span, scope_of
from gateway.telemetry.records import WORKER_SCOPE
from gateway.telemetry.spans import SpanBatch, gateway_tracer

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
HAS_IS_REMOTE, IS_REMOTE = 0x100, 0x200


def decode(request: TraceRequest) -> Any:
    return ExportTraceServiceRequest.FromString(request.take())


def value_of(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in any_value.array_value.values]
    return getattr(any_value, kind)


def attributes(message: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in message.attributes}


def gateway_records() -> list[dict[str, Any]]:
    """What the gateway's tracer records for a traced call that failed: a server span
    continuing a caller's trace, and a child span; as the exporter process receives
    them (through JSON)."""
    batches: list[list[dict[str, Any]]] = []
    batch = SpanBatch(batches.append)
    tracer = gateway_tracer(batch, TracerSampler())
    caller = TraceContextTextMapPropagator().extract(
        {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )
    with pytest.raises(RuntimeError):
        failing_call(tracer, caller)
    batch.flush()
    return [orjson.loads(orjson.dumps(record)) for found in batches for record in found]


def failing_call(tracer: Any, caller: Any) -> None:
    with tracer.start_as_current_span(
        "invoke",
        context=caller,
        kind=SpanKind.SERVER,
        attributes={"faas.trigger": "http", "faas.max_memory": 2 << 30},
    ) as server:
        server.set_attribute("faas.coldstart", False)
        with tracer.start_as_current_span("admission") as admission:
            admission.set_attribute("coldbrew.tokens", "endpoint,region")
        raise RuntimeError("boom")


class TracerSampler:
    """Keeps every trace (the SDK sampler's interface, as the gateway asks it)."""

    def should_sample(self, *args: Any) -> Any:
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        return ALWAYS_ON.should_sample(*args)


def test_records_decode_as_the_spans_they_describe() -> None:
    admission, server = gateway_records()
    worker_span = {
        "trace_id": server["trace_id"],
        "span_id": "1111111111111111",
        "parent_span_id": server["span_id"],
        "parent_remote": True,
        "name": "preprocess",
        "kind": 0,
        "status": 1,
        "start": 10,
        "end": 20,
        "attributes": {"sizes": [1, 2, 3], "ratio": 0.5},
    }
    request = TraceRequest({"service.name": "coldbrew-test"})
    for record in (admission, server, worker_span):
        request.add(scope_of(record, WORKER_SCOPE), encode_span(record))
    assert request.spans == 3
    (resource_spans,) = decode(request).resource_spans
    assert attributes(resource_spans.resource) == {"service.name": "coldbrew-test"}
    scopes = {found.scope.name: list(found.spans) for found in resource_spans.scope_spans}
    assert sorted(scopes) == ["coldbrew.gateway", WORKER_SCOPE]
    decoded_admission, decoded_server = scopes["coldbrew.gateway"]
    (decoded_worker,) = scopes[WORKER_SCOPE]

    assert decoded_server.trace_id.hex() == CALLER_TRACE
    assert decoded_server.parent_span_id.hex() == CALLER_SPAN
    assert decoded_server.name == "invoke"
    assert decoded_server.kind == 2  # SPAN_KIND_SERVER
    assert decoded_server.flags == HAS_IS_REMOTE | IS_REMOTE
    assert decoded_server.start_time_unix_nano == server["start"]
    assert decoded_server.end_time_unix_nano == server["end"] >= server["start"]
    assert attributes(decoded_server) == {
        "faas.trigger": "http",
        "faas.max_memory": 2 << 30,
        "faas.coldstart": False,
    }
    assert decoded_server.status.code == 2  # STATUS_CODE_ERROR
    assert decoded_server.status.message == "RuntimeError: boom"
    (event,) = decoded_server.events
    assert event.name == "exception"
    assert attributes(event) == {"exception.type": "RuntimeError", "exception.message": "boom"}

    assert decoded_admission.trace_id == decoded_server.trace_id
    assert decoded_admission.parent_span_id == decoded_server.span_id
    assert decoded_admission.kind == 1  # SPAN_KIND_INTERNAL
    assert decoded_admission.flags == HAS_IS_REMOTE
    assert decoded_admission.status.code == 0
    assert attributes(decoded_admission) == {"coldbrew.tokens": "endpoint,region"}

    assert decoded_worker.span_id.hex() == "1111111111111111"
    assert decoded_worker.status.code == 1  # STATUS_CODE_OK
    assert attributes(decoded_worker) == {"sizes": [1, 2, 3], "ratio": 0.5}


def test_a_request_starts_over_once_taken() -> None:
    request = TraceRequest({})
    (record, _) = gateway_records()
    request.add("coldbrew.gateway", encode_span(record))
    assert len(decode(request).resource_spans[0].scope_spans[0].spans) == 1
    assert request.spans == 0
    assert list(decode(request).resource_spans[0].scope_spans) == []


def test_attributes_otlp_cannot_hold_are_left_out() -> None:
    (record, _) = gateway_records()
    record["attributes"] = {
        "kept": "yes",
        "huge": 1 << 70,
        "none": None,
        "mapping": {"a": 1},
        "mixed": [1, "two"],
        "nested": [[1]],
        "negative": -5,
    }
    request = TraceRequest({})
    request.add("s", encode_span(record))
    (span,) = decode(request).resource_spans[0].scope_spans[0].spans
    assert attributes(span) == {"kept": "yes", "negative": -5}


def test_true_and_one_stay_different_attributes() -> None:
    # Encodings of repeated pairs are kept; True == 1 must not share one.
    (record, _) = gateway_records()
    request = TraceRequest({})
    for value in (True, 1, 1.0):
        request.add("s", encode_span({**record, "attributes": {"x": value}}))
    spans = decode(request).resource_spans[0].scope_spans[0].spans
    assert [span.attributes[0].value.WhichOneof("value") for span in spans] == [
        "bool_value",
        "int_value",
        "double_value",
    ]


VALID = {
    "trace_id": "1" * 32,
    "span_id": "2" * 16,
    "name": "x",
    "start": 1,
    "end": 2,
    "kind": 0,
    "status": 0,
}


def test_a_minimal_record_is_a_span() -> None:
    request = TraceRequest({})
    request.add("s", encode_span(VALID))
    (span,) = decode(request).resource_spans[0].scope_spans[0].spans
    assert (span.name, span.parent_span_id, span.end_time_unix_nano) == ("x", b"", 2)


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {**VALID, "trace_id": "zz"},
        {**VALID, "trace_id": "0" * 32},
        {**VALID, "span_id": "2" * 15},
        {**VALID, "parent_span_id": 7},
        {**VALID, "start": "1"},
        {**VALID, "start": 3},
        {**VALID, "end": True},
        {**VALID, "kind": 9},
        {**VALID, "kind": -1},
        {**VALID, "status": 3},
        {**VALID, "events": [["e", "not a time", {}]]},
        {**VALID, "events": [["too short"]]},
    ],
)
def test_a_malformed_record_is_refused(broken: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        encode_span(broken)
