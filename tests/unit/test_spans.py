"""The gateway's own spans: what a finished span records, and how traces are continued
and sampled."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry import spans as spans_module
from gateway.telemetry.exporter import exporter_environment
from gateway.telemetry.spans import SpanBatch, gateway_tracer
from workers.wire.spans import LightSpan, LightTracer

CALLER = "4bf92f3577b34da6a3ce929d0e0e4736"


class Sink:
    """A span batch and the batches it handed over."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.batch = SpanBatch(self.batches.append)


def tracer(sampler: Any = DEFAULT_ON) -> tuple[LightTracer, Sink]:
    sink = Sink()
    return gateway_tracer(sink.batch, sampler), sink


def flushed(found: LightTracer, sink: Sink) -> list[dict[str, Any]]:
    sink.batch.flush()
    return [record for batch in sink.batches for record in batch]


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


def test_only_the_exporter_process_imports_an_http_client() -> None:
    """A tracing gateway (everything its process imports, and its providers built) has
    imported neither requests nor grpc; opening the transport, as the exporter process
    does, imports requests. (Metrics over OTLP/HTTP import it through the SDK's own
    exporter; this gateway exports none.)"""
    script = """
        import json, logging, sys
        import gateway.cli.main, gateway.edge.server
        from gateway.telemetry.setup import build_providers
        from gateway.telemetry.transport import export_settings, open_transport
        environ = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9"}
        providers = build_providers(environ, logging.getLogger("test"))
        assert providers.tracing
        providers.shutdown()
        gateway = sorted(name for name in ("requests", "grpc") if name in sys.modules)
        open_transport(export_settings(environ, "http/protobuf")).close()
        print(json.dumps([gateway, "requests" in sys.modules]))
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[], True]


def worker_tracer(finished: list[dict[str, Any]]) -> LightTracer:
    from workers.child.tracing import RecordingTracerProvider

    tracer = RecordingTracerProvider(finished.append).get_tracer("my-model")
    assert isinstance(tracer, LightTracer)
    return tracer


@pytest.mark.parametrize(("flags", "recorded"), [("01", True), ("00", False)])
def test_model_spans_follow_the_invocation_they_run_in(flags: str, recorded: bool) -> None:
    from opentelemetry import context

    from workers.child.tracing import parse_traceparent

    finished: list[dict[str, Any]] = []
    tracer = worker_tracer(finished)
    parent = parse_traceparent(f"00-{CALLER}-00f067aa0ba902b7-{flags}")
    assert parent is not None
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        with tracer.start_as_current_span("preprocess"):
            pass
    finally:
        context.detach(token)
    if not recorded:
        assert finished == []
        return
    (record,) = finished
    assert (record["trace_id"], record["parent_span_id"]) == (CALLER, "00f067aa0ba902b7")
    assert record["parent_remote"] is True
    assert record["scope"] == "my-model"


@pytest.mark.parametrize(
    "header",
    [
        "",
        "00-abc-def-01",
        f"01-{CALLER}-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",
        f"00-{CALLER}-{'0' * 16}-01",
        f"00-{CALLER}-00f067aa0ba902b7-1",
        f"00-{CALLER}-00f067aa0ba9zzzz-01",
    ],
)
def test_a_malformed_traceparent_names_no_parent(header: str) -> None:
    from workers.child.tracing import parse_traceparent

    assert parse_traceparent(header) is None


def test_model_span_attributes_json_cannot_carry_are_dropped() -> None:
    from workers.child.tracing import _plain

    finished: list[dict[str, Any]] = []
    tracer = worker_tracer(finished)
    with tracer.start_as_current_span("odd") as span:
        span.set_attribute("kept", 1)
        span.set_attribute("mapping", {"a": 1})  # type: ignore[arg-type]
        span.set_attribute("huge", 1 << 70)
        span.set_attribute("list", [1, 2])
        span.set_attribute("surrogate", "x\ud800y")
        span.add_event("e", {"object": object(), "ok": "yes"})  # type: ignore[dict-item]
    (record,) = (_plain(found) for found in finished)
    assert record["attributes"] == {"kept": 1, "list": [1, 2], "surrogate": "x\ufffdy"}
    assert record["events"][0][2] == {"ok": "yes"}
    orjson.dumps(record)


def test_a_span_that_already_happened_is_recorded_under_its_parent() -> None:
    """``record_child`` emits finished INTERNAL spans at the times given, under the span
    or under a record it returned before, in the span's trace and scope."""
    found, batches = tracer()
    with found.start_as_current_span("invoke", kind=SpanKind.SERVER) as root:
        assert isinstance(root, LightSpan)
        cold = root.record_child("cold start", 10, 20, {"coldbrew.tier": "model-zygote"})
        root.record_child("fork", 10, 14, under=cold)
        root.record_child("model call", 20, 25)
    cold_record, fork, call, server = flushed(found, batches)
    assert cold_record is cold
    assert [record["name"] for record in (cold, fork, call)] == ["cold start", "fork", "model call"]
    assert cold["parent_span_id"] == call["parent_span_id"] == server["span_id"]
    assert fork["parent_span_id"] == cold["span_id"]
    assert {record["trace_id"] for record in (cold, fork, call)} == {server["trace_id"]}
    assert len({record["span_id"] for record in (cold, fork, call, server)}) == 4
    assert [(record["start"], record["end"]) for record in (cold, fork, call)] == [
        (10, 20),
        (10, 14),
        (20, 25),
    ]
    assert {record["kind"] for record in (cold, fork, call)} == {SpanKind.INTERNAL.value}
    assert {record["scope"] for record in (cold, fork, call)} == {"coldbrew.gateway"}
    assert cold["attributes"] == {"coldbrew.tier": "model-zygote"}
    assert fork["attributes"] == call["attributes"] == {}
    # What the exporter process decodes: every record is valid JSON.
    assert orjson.loads(orjson.dumps([cold, fork, call]))[1]["parent_span_id"] == cold["span_id"]
