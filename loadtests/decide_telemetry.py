"""Rows 3 and 4 of ``decisions.py``: the gateway's telemetry beside the OpenTelemetry
SDK's own routes.

- OTLP span encoding: our encoder (``gateway/telemetry/otlp.py``, what the span exporter
  process runs) beside the SDK's protobuf encoder over ReadableSpans, for batches of
  spans shaped like an invocation's.
- The Prometheus page: ours (``gateway/telemetry/prometheus.py`` over the one reader of
  ``gateway/telemetry/readers.py``) beside the SDK's Prometheus reader with
  prometheus_client's ``generate_latest``, for the series of ``ENDPOINTS`` endpoints;
  and what each invocation's metrics cost with one reader and with two.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from decisionlib import USER_AGENT, interleaved, per_call, progress, ratio, side_by_side
from google.protobuf.internal import api_implementation
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from gateway.telemetry import catalog
from gateway.telemetry.instruments import GaugeSource, Instruments, Invoked
from gateway.telemetry.otlp import TraceRequest, encode_span, scope_of
from gateway.telemetry.prometheus import PrometheusReader
from gateway.telemetry.readers import cumulative_reader
from gateway.telemetry.records import WORKER_SCOPE
from gateway.telemetry.setup import histogram_views
from gateway.telemetry.spans import GATEWAY_SCOPE
from workers.wire.spans import Record, new_record

# Endpoints whose series fill the page.
ENDPOINTS = 50


def server_attributes(endpoint: str, request_id: str) -> dict[str, object]:
    """An invocation's SERVER span attributes, as the gateway sets them."""
    return {
        "faas.trigger": "http",
        "faas.invocation_id": request_id,
        "http.request.method": "POST",
        "http.route": "/endpoints/{EndpointName}/invocations",
        "url.path": f"/endpoints/{endpoint}/invocations",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "user_agent.original": USER_AGENT,
        "server.address": "127.0.0.1",
        "server.port": 8080,
        "faas.name": endpoint,
        "cloud.account.id": "123456789012",
        "cloud.region": "us-east-1",
        "faas.max_memory": 2048 * 1024 * 1024,
        "faas.coldstart": True,
        "http.response.status_code": 200,
    }


def invocation_records(invocations: int, seed: int = 7) -> list[dict[str, Any]]:
    """Span records shaped like the gateway's for ``invocations`` cold invocations: a
    SERVER span with 16 attributes and 3 to 5 children (the cold start, one to three of
    its phases, the model call), with unique ids and request ids."""
    rng = random.Random(seed)
    ms = 1_000_000

    def span_id() -> str:
        return f"{rng.getrandbits(64) | 1:016x}"

    def child(parent: Record, name: str, begin: int, end: int, attributes: Record) -> Record:
        """An INTERNAL child of ``parent`` from ``begin`` to ``end`` (ns)."""
        trace_id, parent_id = parent["trace_id"], parent["span_id"]
        return new_record(
            trace_id, span_id(), parent_id, name, 0, begin, end, attributes, GATEWAY_SCOPE
        )

    records: list[Record] = []
    start = time.time_ns()
    for number in range(invocations):
        endpoint = f"endpoint-{number % ENDPOINTS:02d}"
        trace_id = f"{rng.getrandbits(128) | 1:032x}"
        attributes = server_attributes(endpoint, f"{rng.getrandbits(128):032x}")
        server = new_record(
            trace_id, span_id(), None, endpoint, 1, start, start + 9 * ms, attributes, GATEWAY_SCOPE
        )
        tier = {"coldbrew.tier": "runtime-zygote", "faas.coldstart": True}
        cold = child(server, "cold start", start, start + 5 * ms, tier)
        phases = ("fork", "imports", "ready")[: number % 3 + 1]
        records += [server, cold]
        records += [
            child(cold, phase, start + n * ms, start + (n + 1) * ms, {})
            for n, phase in enumerate(phases)
        ]
        status = {"http.response.status_code": 200}
        records.append(child(server, "model call", start + 6 * ms, start + 8 * ms, status))
        start += 10 * ms
    return records


def readable_span(record: Mapping[str, Any], resource: Any) -> Any:
    """The SDK's ReadableSpan for one record: what an exporter built on the SDK's encoder
    would make of each record that crosses to it."""
    trace_id = int(record["trace_id"], 16)
    flags = TraceFlags(TraceFlags.SAMPLED)
    parent = record["parent_span_id"]
    return ReadableSpan(
        name=record["name"],
        context=SpanContext(trace_id, int(record["span_id"], 16), False, flags),
        parent=SpanContext(trace_id, int(parent, 16), False, flags) if parent else None,
        resource=resource,
        attributes=record["attributes"],
        kind=SpanKind(record["kind"]),
        status=Status(StatusCode(record["status"])),
        start_time=record["start"],
        end_time=record["end"],
        instrumentation_scope=InstrumentationScope(record["scope"]),
    )


def measure_otlp(rounds: int, invocations: int) -> dict[str, object]:
    """Row 3: span records to ExportTraceServiceRequest bytes, our encoder (what the span
    exporter process runs) beside the SDK's (``encode_spans`` over ReadableSpans, then
    ``SerializeToString``, what the SDK's OTLP exporter runs). The SDK's side is timed
    from ReadableSpans made beforehand, and separately with making them from the
    records, which is what our exporter process would have to add to use it."""
    records = invocation_records(invocations)
    resource = Resource.create({"service.name": "coldbrew-gateway"})
    spans = [readable_span(record, resource) for record in records]

    def ours_bytes() -> bytes:
        request = TraceRequest(dict(resource.attributes))
        for record in records:
            request.add(scope_of(record, WORKER_SCOPE), encode_span(record))
        return request.take()

    def sdk_bytes() -> bytes:
        return bytes(encode_spans(spans).SerializeToString())

    def sdk_from_records() -> bytes:
        made = [readable_span(record, resource) for record in records]
        return bytes(encode_spans(made).SerializeToString())

    def per_span(fn: Callable[[], bytes]) -> Callable[[], float]:
        return lambda: per_call(fn, 10) / len(records)

    progress(f"OTLP encoding ({len(records)} spans a batch)")
    found = interleaved(
        {
            "ours": per_span(ours_bytes),
            "sdk": per_span(sdk_bytes),
            "sdk_from_records": per_span(sdk_from_records),
        },
        rounds,
    )
    decoded = [ExportTraceServiceRequest.FromString(data) for data in (ours_bytes(), sdk_bytes())]
    same = _span_summary(decoded[0]) == _span_summary(decoded[1])
    return {
        "compares": "µs per span to encode a batch of invocation-shaped spans into an "
        "OTLP request, ours vs the SDK's encoder",
        "spans_per_batch": len(records),
        "protobuf_backend": api_implementation.Type(),
        "same_spans_decoded": same,
        "encoder_only": side_by_side(found["ours"], found["sdk"], "SDK encode_spans", "µs", 1e6),
        "with_readable_spans_made_from_records": side_by_side(
            found["ours"], found["sdk_from_records"], "ReadableSpan + encode_spans", "µs", 1e6
        ),
    }


def _span_summary(request: Any) -> list[tuple[bytes, str, int, int]]:
    """(span id, name, attribute count, end time) of every span of a decoded request."""
    return sorted(
        (span.span_id, span.name, len(span.attributes), span.end_time_unix_nano)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    )


# ------------------------------------------------------------ 4. the Prometheus page


def _endpoint_labels() -> list[dict[str, str]]:
    return [
        {"cloud.account.id": "123456789012", "cloud.region": "us-east-1", "faas.name": f"ep-{n}"}
        for n in range(ENDPOINTS)
    ]


def _gauge_sources() -> dict[str, GaugeSource]:
    """What the gateway's observable instruments read, for ``ENDPOINTS`` endpoints."""
    endpoints = _endpoint_labels()

    def per_endpoint(value: float) -> GaugeSource:
        return lambda: [(value, labels) for labels in endpoints]

    def workers() -> list[tuple[float, dict[str, str]]]:
        states = ("starting", "idle", "busy")
        return [(1.0, {**labels, "state": state}) for labels in endpoints for state in states]

    def limits() -> list[tuple[float, dict[str, str]]]:
        region = {"cloud.account.id": "123456789012", "cloud.region": "us-east-1"}
        return [(10.0, {**labels, "scope": "endpoint"}) for labels in endpoints] + [
            (1000.0, {**region, "scope": "region"})
        ]

    return {
        catalog.WORKERS.name: workers,
        catalog.ZYGOTES.name: lambda: [(1.0, {"kind": "runtime"}), (20.0, {"kind": "model"})],
        catalog.CONCURRENCY_LIMIT.name: limits,
        catalog.CONCURRENCY.name: per_endpoint(2.0),
        catalog.INVOCATIONS.name: per_endpoint(1234.0),
        catalog.BILLED_DURATION.name: per_endpoint(56789.0),
        catalog.USAGE.name: per_endpoint(113.5),
        catalog.BYTES_IN.name: per_endpoint(1e6),
        catalog.BYTES_OUT.name: per_endpoint(2e6),
        catalog.SPANS_DROPPED.name: lambda: [(0.0, {})],
    }


def _warm_invocations(count: int) -> list[Any]:
    endpoints = _endpoint_labels()
    return [
        Invoked(
            attributes=endpoints[n % ENDPOINTS],
            total_s=0.0021 + n % 7 * 1e-4,
            model_s=0.0015,
            init_s=None,
            tier=None,
            cpu_s=0.0012,
            max_rss_bytes=80_000_000,
        )
        for n in range(count)
    ]


def _record_traffic(instruments: Any) -> None:
    """Per endpoint: warm invocations, cold starts from two tiers, a model error, a
    throttle: every series the page shows in a busy gateway."""
    for invoked in _warm_invocations(20 * ENDPOINTS):
        instruments.record(invoked)
    for labels in _endpoint_labels():
        for tier in ("runtime-zygote", "model-zygote"):
            instruments.record(Invoked(labels, 0.3, 0.002, 0.25, tier, 0.01, 90_000_000))
        instruments.errors.add(1, {**labels, "error.type": "ModelError"})
        instruments.throttles.add(1, {**labels, "quota": "endpoint"})


def _meter_provider(readers: Sequence[Any]) -> Any:
    """A provider as the gateway builds one (its histogram buckets, exemplars off)."""
    return MeterProvider(
        metric_readers=readers,
        views=histogram_views(),
        exemplar_filter=AlwaysOffExemplarFilter(),
        shutdown_on_exit=False,
    )


def measure_prometheus(rounds: int, calls: int) -> dict[str, object]:
    """Row 4: rendering ``/metrics`` for ``ENDPOINTS`` endpoints' series, ours
    (``PrometheusReader`` over the gateway's one reader) beside the SDK's route
    (``PrometheusMetricReader`` and prometheus_client's ``generate_latest``), both
    reading the same provider; then what each invocation's metrics cost with one reader
    and with two (the SDK route, which cannot share its reader with OTLP export)."""
    row: dict[str, object] = {
        "compares": "ms to render the page; µs of metrics per invocation, one reader vs two",
        "endpoints": ENDPOINTS,
    }
    # As the gateway builds its page: one reader, attached to the provider.
    page_reader = cumulative_reader()
    ours = PrometheusReader(page_reader)
    readers: list[Any] = [page_reader]
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError:
        theirs = None
    else:
        registry = CollectorRegistry()
        theirs = PrometheusMetricReader(registry=registry)
        readers.append(theirs)
    provider = _meter_provider(readers)
    try:
        instruments = Instruments(provider.get_meter(GATEWAY_SCOPE), _gauge_sources())
        _record_traffic(instruments)
        page = ours.render()
        row["series"] = sum(1 for line in page.splitlines() if not line.startswith("#"))
        if theirs is None:
            row["render"] = {"skipped": "opentelemetry-exporter-prometheus is not installed"}
        else:
            progress("Prometheus page")
            found = interleaved(
                {
                    "ours": lambda: per_call(ours.render, 3),
                    "theirs": lambda: per_call(lambda: generate_latest(registry), 3),
                },
                rounds,
            )
            row["render"] = side_by_side(
                found["ours"],
                found["theirs"],
                "PrometheusMetricReader + generate_latest",
                "ms",
                1e3,
            )
            sdk_page = generate_latest(registry).decode()
            row["sdk_series"] = sum(1 for ln in sdk_page.splitlines() if not ln.startswith("#"))
    finally:
        provider.shutdown()
    row["metrics_per_invocation"] = _reader_cost(rounds, calls)
    return row


def _reader_cost(rounds: int, calls: int) -> dict[str, object]:
    """µs of metrics a warm invocation records (four histograms) into a provider with one
    cumulative reader and into one with two, interleaved. Any reader aggregates alike:
    the SDK keeps one aggregation per reader, whatever the reader does with it."""
    progress("metrics per invocation, one reader vs two")
    invocations = _warm_invocations(max(calls // 2, 50))
    providers = {
        "one": _meter_provider([cumulative_reader()]),
        "two": _meter_provider([cumulative_reader(), cumulative_reader()]),
    }
    try:
        recorders = {
            name: Instruments(provider.get_meter("decisions"), {}).record
            for name, provider in providers.items()
        }

        def block(record: Callable[[Any], None]) -> Callable[[], float]:
            def run() -> float:
                started = time.perf_counter()
                for invoked in invocations:
                    record(invoked)
                return (time.perf_counter() - started) / len(invocations)

            return run

        found = interleaved({name: block(record) for name, record in recorders.items()}, rounds)
    finally:
        for provider in providers.values():
            provider.shutdown()
    one, two = statistics.median(found["one"]), statistics.median(found["two"])
    return {
        "one_reader_us": round(one * 1e6, 2),
        "two_readers_us": round(two * 1e6, 2),
        "second_reader_us": round((two - one) * 1e6, 2),
        "ratio": ratio(one, two),
        "readme_says_second_reader_us": 30,
        "samples": len(found["one"]),
    }
