"""Telemetry of a real gateway: the Prometheus page after a known sequence of calls, and
spans exported over OTLP/HTTP to a real receiver on loopback."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support import (
    Gateway,
    children_of,
    clean_env,
    is_running,
    running_gateway,
    scrape,
    toml_config,
    value,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def traces_to(url: str, **extra: str) -> dict[str, str]:
    """A gateway environment exporting spans to ``url`` quickly, and no metrics."""
    return clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=url,
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_METRICS_EXPORTER="none",
        **extra,
    )


def sending_traceparent(gw: Gateway, traceparent: str) -> Any:
    """A runtime client of ``gw`` whose every InvokeEndpoint carries ``traceparent``."""
    client = gw.runtime()

    def add_header(request: Any, **_: Any) -> None:
        request.headers["traceparent"] = traceparent

    client.meta.events.register("before-sign.sagemaker-runtime.InvokeEndpoint", add_header)
    return client


def throttle_one_call(gw: Gateway, endpoint: str) -> None:
    """With a 1 s call to ``endpoint`` (max_concurrency 1) in flight, one more call is
    throttled by the endpoint's quota; returns once the slow call has answered."""
    slow, rt = gw.runtime(), gw.runtime()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(
            lambda: slow.invoke_endpoint(EndpointName=endpoint, Body=b"sleep:1")["Body"].read()
        )
        wait_until(
            lambda: value(scrape(gw), "coldbrew_concurrency", faas_name=endpoint) == 1,
            timeout=30,
            what="the slow call to be in flight",
        )
        with pytest.raises(ClientError) as caught:
            rt.invoke_endpoint(EndpointName=endpoint, Body=b"x")
        assert caught.value.response["Error"]["Code"] == "ThrottlingException"
        busy.result(timeout=30)


def test_metrics_page_counts_a_known_sequence_exactly(tmp_path: Path) -> None:
    """After 1 cold and 3 warm invocations, one of them a model error, and 1 throttled
    call, /metrics shows exactly those counts."""
    config = toml_config(tmp_path / "state", endpoints={"behave": {"max_concurrency": 1}})
    with running_gateway(tmp_path, config) as gw:
        rt = gw.runtime()
        rt.invoke_endpoint(EndpointName="behave", Body=b"pid")
        rt.invoke_endpoint(EndpointName="behave", Body=b"pid")
        with pytest.raises(ClientError):
            rt.invoke_endpoint(EndpointName="behave", Body=b"raise")
        throttle_one_call(gw, "behave")
        samples = scrape(gw)
    endpoint = {"faas_name": "behave", "cloud_region": "us-east-1"}
    assert value(samples, "faas_invocations_total", **endpoint) == 4
    assert value(samples, "faas_coldstarts_total", **endpoint) == 1
    assert value(samples, "faas_coldstarts_total", coldbrew_tier="runtime-zygote") == 1
    assert value(samples, "faas_init_duration_seconds_count", **endpoint) == 1
    assert value(samples, "faas_errors_total", error_type="ModelError", **endpoint) == 1
    assert value(samples, "coldbrew_throttles_total", quota="endpoint", **endpoint) == 1
    assert value(samples, "faas_invoke_duration_seconds_count", **endpoint) == 4
    assert value(samples, "coldbrew_concurrency", **endpoint) == 0
    assert value(samples, "coldbrew_concurrency_limit", scope="endpoint", **endpoint) == 1
    assert value(samples, "coldbrew_request_bytes_total", **endpoint) == len(b"pidpidraisesleep:1")
    assert value(samples, "coldbrew_billed_duration_milliseconds_total", **endpoint) >= 1000
    assert value(samples, "coldbrew_zygotes", kind="runtime") == 1
    # Not tracing: no span is made, so none is dropped, and no such series.
    assert "coldbrew_spans_dropped_total" not in {name for name, _, _ in samples}


class Receiver:
    """A real OTLP/HTTP receiver on 127.0.0.1 that decodes the spans, and the gauge and
    sum data points, it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.points: list[tuple[str, dict[str, str], float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    with receiver.lock:
                        for resource in request.resource_spans:
                            for scope in resource.scope_spans:
                                receiver.spans.extend(scope.spans)
                elif self.path == "/v1/metrics":
                    receiver.keep_points(ExportMetricsServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # Closing waits for the handler threads, so each closes its connection first
        # (the gateway, their only client, has exited by then).
        self.server.daemon_threads = False
        self.server.block_on_close = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def keep_points(self, request: ExportMetricsServiceRequest) -> None:
        with self.lock:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        kind = metric.WhichOneof("data")
                        for point in (
                            getattr(metric, kind).data_points if kind in ("gauge", "sum") else ()
                        ):
                            labels = {a.key: a.value.string_value for a in point.attributes}
                            number = point.as_int if point.HasField("as_int") else point.as_double
                            self.points.append((metric.name, labels, float(number)))

    def values(self, name: str, **labels: str) -> list[float]:
        """Every value exported for the metric ``name`` with ``labels`` among its own."""
        with self.lock:
            return [
                value
                for found, attributes, value in self.points
                if found == name and labels.items() <= attributes.items()
            ]

    def server_spans(self) -> list[Any]:
        with self.lock:
            return [span for span in self.spans if span.kind == 2]  # SPAN_KIND_SERVER


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def attributes(span: Any) -> dict[str, Any]:
    found = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        found[attribute.key] = getattr(attribute.value, kind)
    return found


# The HTTP server attributes of an invocation's SERVER span (semantic conventions 1.26).
REQUEST_ATTRIBUTES = (
    "http.request.method",
    "http.route",
    "url.path",
    "url.scheme",
    "server.address",
    "server.port",
    "network.protocol.version",
)


def test_cold_then_warm_invocations_arrive_as_spans(tmp_path: Path, receiver: Receiver) -> None:
    """Two calls to a zero-scaled endpoint, exported over OTLP/HTTP: two SERVER spans
    named after the endpoint, faas.coldstart true then false, the first with a cold-start
    child span naming its tier; a caller's traceparent is continued."""
    env = traces_to(receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    config = toml_config(tmp_path / "state", endpoints={"behave": {}})
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"

    with running_gateway(tmp_path, config, env=env) as gw:
        rt = sending_traceparent(gw, f"00-{trace_id}-00f067aa0ba902b7-01")
        rt.invoke_endpoint(EndpointName="behave", Body=b"pid")
        rt.invoke_endpoint(EndpointName="behave", Body=b"pid")
        servers = wait_until(
            lambda: len(receiver.server_spans()) >= 2 and receiver.server_spans(),
            timeout=30,
            what="two server spans at the receiver",
        )
    first, second = sorted(servers, key=lambda span: span.start_time_unix_nano)
    assert first.name == second.name == "behave"
    assert attributes(first)["faas.coldstart"] is True
    assert attributes(second)["faas.coldstart"] is False
    assert attributes(first)["faas.trigger"] == "http"
    assert attributes(first)["cloud.account.id"] == "000000000000"
    assert attributes(first)["faas.max_memory"] == 1024 * 1024 * 1024
    assert first.trace_id.hex() == trace_id
    port = urllib.parse.urlsplit(gw.url).port
    assert {key: attributes(first)[key] for key in REQUEST_ATTRIBUTES} == {
        "http.request.method": "POST",
        "http.route": "/endpoints/{EndpointName}/invocations",
        "url.path": "/endpoints/behave/invocations",
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "server.port": port,
        "network.protocol.version": "1.1",
    }
    children = [span for span in receiver.spans if span.parent_span_id == first.span_id]
    names = {span.name for span in children}
    assert names == {"cold start", "model call"}
    (cold,) = [span for span in children if span.name == "cold start"]
    assert attributes(cold)["coldbrew.tier"] == "runtime-zygote"
    phases = sorted(
        (span for span in receiver.spans if span.parent_span_id == cold.span_id),
        key=lambda span: span.start_time_unix_nano,
    )
    assert [span.name for span in phases] == ["fork", "imports", "model_fn", "ready"]
    assert phases[0].start_time_unix_nano == cold.start_time_unix_nano
    assert phases[-1].end_time_unix_nano <= cold.end_time_unix_nano


def test_a_throttled_call_is_traced_with_its_quota(tmp_path: Path, receiver: Receiver) -> None:
    """A call refused by the endpoint's quota has a SERVER span that names the quota and
    has no child (it reached no worker)."""
    env = traces_to(receiver.url)
    config = toml_config(tmp_path / "state", endpoints={"behave": {"max_concurrency": 1}})
    with running_gateway(tmp_path, config, env=env) as gw:
        throttle_one_call(gw, "behave")
        servers = wait_until(
            lambda: len(receiver.server_spans()) >= 2 and receiver.server_spans(),
            timeout=30,
            what="both calls' spans",
        )
    throttled = [span for span in servers if "coldbrew.throttled" in attributes(span)]
    assert [attributes(span)["coldbrew.throttled"] for span in throttled] == ["endpoint"]
    assert not [span for span in receiver.spans if span.parent_span_id == throttled[0].span_id]


def test_an_undecodable_header_byte_is_traced_not_fatal(tmp_path: Path, receiver: Receiver) -> None:
    """A User-Agent with bytes that are not UTF-8 (aiohttp keeps them as surrogates,
    which JSON cannot carry) reaches the collector with U+FFFD in their place; the call,
    the exporter and the calls after it are unaffected."""
    env = traces_to(receiver.url)
    config = toml_config(tmp_path / "state", endpoints={"echo": {}})

    def odd_agent(request: Any, **_: Any) -> None:
        request.headers["User-Agent"] = "probe-\xff\xfe"  # sent as Latin-1 bytes

    with running_gateway(tmp_path, config, env=env) as gw:
        odd = gw.runtime()
        odd.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", odd_agent)
        assert odd.invoke_endpoint(EndpointName="echo", Body=b"one")["Body"].read() == b"one"
        wait_until(receiver.server_spans, timeout=30, what="the odd call's span")
        plain = gw.runtime().invoke_endpoint(EndpointName="echo", Body=b"two")
        assert plain["Body"].read() == b"two"
        servers = wait_until(
            lambda: len(receiver.server_spans()) >= 2 and receiver.server_spans(),
            timeout=30,
            what="both calls' spans",
        )
    agents = [attributes(span)["user_agent.original"] for span in servers]
    assert "probe-\ufffd\ufffd" in agents


def test_cpu_and_memory_per_invocation(tmp_path: Path) -> None:
    """Each invocation records the CPU time its worker spent and the worker's peak
    memory: a call that allocates 200 MB shows up in faas_mem_usage."""
    config = toml_config(tmp_path / "state", endpoints={"behave": {}})
    with running_gateway(tmp_path, config) as gw:
        gw.runtime().invoke_endpoint(EndpointName="behave", Body=b"alloc:200")["Body"].read()
        samples = scrape(gw)
    assert value(samples, "faas_cpu_usage_seconds_count", faas_name="behave") == 1
    assert value(samples, "faas_cpu_usage_seconds_sum", faas_name="behave") > 0
    assert value(samples, "faas_mem_usage_bytes_sum", faas_name="behave") > 200 * 1024 * 1024


def test_json_logs_carry_trace_ids_and_worker_output_its_request(
    tmp_path: Path, receiver: Receiver
) -> None:
    """With log_format = json every log line is a JSON object; the invocation's debug
    line carries its trace and span ids, and what the model printed carries endpoint,
    worker and the request id the caller got back."""
    env = traces_to(receiver.url)
    config = toml_config(
        tmp_path / "state",
        endpoints={"behave": {}},
        server={"log_format": "json", "log_level": "debug"},
    )
    trace_id = "0af7651916cd43dd8448eb211c80319c"

    with running_gateway(tmp_path, config, env=env) as gw:
        rt = sending_traceparent(gw, f"00-{trace_id}-b7ad6b7169203331-01")
        answer = rt.invoke_endpoint(EndpointName="behave", Body=b"print:json-marker")
        answer["Body"].read()
        request_id = answer["ResponseMetadata"]["RequestId"]

        def entries() -> list[dict[str, Any]]:
            return [json.loads(line) for line in gw.log().splitlines() if line.strip()]

        printed = wait_until(
            lambda: [e for e in entries() if e["message"].endswith("json-marker")],
            timeout=15,
            what="the model's output in the log",
        )
        invocation = wait_until(
            lambda: [e for e in entries() if e["message"].startswith("invocation of behave")],
            timeout=15,
        )
    assert printed[0]["endpoint"] == "000000000000/us-east-1/behave"
    assert isinstance(printed[0]["worker"], int)
    assert printed[0]["request_id"] == request_id
    assert invocation[0]["trace_id"] == trace_id
    assert len(invocation[0]["span_id"]) == 16
    assert invocation[0]["request_id"] == request_id
    assert invocation[0]["cold_start"] is True


def test_the_span_exporter_logs_in_the_gateways_format(tmp_path: Path) -> None:
    """With log_format = json, what the span exporter process logs (here: a collector
    that refuses connections) is JSON lines too, in the gateway's log."""
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = refused.getsockname()[1]
    env = traces_to(f"http://127.0.0.1:{port}", OTEL_EXPORTER_OTLP_TIMEOUT="1")
    config = toml_config(
        tmp_path / "state", endpoints={"behave": {}}, server={"log_format": "json"}
    )
    with refused, running_gateway(tmp_path, config, env=env) as gw:
        gw.runtime().invoke_endpoint(EndpointName="behave", Body=b"pid")["Body"].read()

        def exporter_lines() -> list[dict[str, Any]]:
            entries = [json.loads(line) for line in gw.log().splitlines() if line.strip()]
            return [e for e in entries if e["logger"] == "coldbrew.span-exporter"]

        found = wait_until(exporter_lines, timeout=30, what="the exporter's warning")
    assert found[0]["level"] == "warning"
    assert "could not export" in found[0]["message"]


def test_spans_over_otlp_grpc(tmp_path: Path) -> None:
    """With OTEL_EXPORTER_OTLP_PROTOCOL=grpc the same spans reach a real OTLP/gRPC
    receiver on loopback."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[Any] = []

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    received.extend(scope.spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        env = traces_to(
            f"http://127.0.0.1:{port}",
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            OTEL_EXPORTER_OTLP_INSECURE="true",
        )
        config = toml_config(tmp_path / "state", endpoints={"echo": {}})
        with running_gateway(tmp_path, config, env=env) as gw:
            gw.runtime().invoke_endpoint(EndpointName="echo", Body=b"x")["Body"].read()
            wait_until(
                lambda: any(span.kind == 2 and span.name == "echo" for span in received),
                timeout=30,
                what="the server span at the gRPC receiver",
            )
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize("collector", ["down", "stuck"])
def test_a_bad_collector_loses_telemetry_not_invocations(tmp_path: Path, collector: str) -> None:
    """With the OTLP endpoint refusing connections, or accepting them and never
    answering, every invocation is still served: export runs beside the request path."""
    import socket as sockets

    listener = sockets.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if collector == "down":
        listener.close()  # nothing listens there any more: connections are refused
    try:
        env = clean_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_BSP_SCHEDULE_DELAY="50",
            OTEL_EXPORTER_OTLP_TIMEOUT="2",
            OTEL_METRIC_EXPORT_INTERVAL="200",
        )
        config = toml_config(tmp_path / "state", endpoints={"echo": {"max_concurrency": 4}})
        with running_gateway(tmp_path, config, env=env) as gw:
            rt = gw.runtime()
            for index in range(40):
                body = f"call-{index}".encode()
                assert rt.invoke_endpoint(EndpointName="echo", Body=body)["Body"].read() == body
    finally:
        listener.close()


def test_live_gauges_reach_an_otlp_collector(tmp_path: Path, receiver: Receiver) -> None:
    """Metrics exported over OTLP, collected on the SDK's thread (not the event loop's),
    carry the live gauges, read from the loop: the endpoint's limit and its invocation
    count; the gateway logs no collection that failed or went unanswered."""
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRIC_EXPORT_INTERVAL="100",
    )
    config = toml_config(tmp_path / "state", endpoints={"echo": {"max_concurrency": 3}})
    echo = {"faas.name": "echo"}
    with running_gateway(tmp_path, config, env=env) as gw:
        gw.runtime().invoke_endpoint(EndpointName="echo", Body=b"x")["Body"].read()
        wait_until(
            lambda: 1.0 in receiver.values("faas.invocations", **echo),
            timeout=30,
            what="the invocation count at the collector",
        )
        log = gw.log()
    assert set(receiver.values("coldbrew.concurrency_limit", scope="endpoint", **echo)) == {3.0}
    assert receiver.values("coldbrew.workers", state="idle", **echo)
    assert "Callback failed" not in log
    assert "did not answer" not in log


def test_spans_the_model_makes_join_the_trace(tmp_path: Path, receiver: Receiver) -> None:
    """A span the handler creates in its worker arrives at the collector in the same
    trace, as a child of the invocation's server span."""
    env = traces_to(receiver.url)
    config = toml_config(tmp_path / "state", endpoints={"traced": {}})
    with running_gateway(tmp_path, config, env=env) as gw:
        gw.runtime().invoke_endpoint(EndpointName="traced", Body=b"12345")["Body"].read()
        model_spans = wait_until(
            lambda: [span for span in receiver.spans if span.name == "preprocess"],
            timeout=30,
            what="the model's own span at the receiver",
        )
    (server,) = [span for span in receiver.server_spans() if span.name == "traced"]
    (model,) = model_spans
    assert model.trace_id == server.trace_id
    assert model.parent_span_id == server.span_id
    assert attributes(model)["model.input_bytes"] == 5


def test_a_call_hands_back_at_most_the_sdks_queue_of_spans(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A call whose model makes 3,000 spans is answered; 2,048 of them (the SDK's default
    queue) reach the collector and the rest are counted in the gateway's log."""
    env = traces_to(receiver.url)
    config = toml_config(tmp_path / "state", endpoints={"traced": {}})
    with running_gateway(tmp_path, config, env=env) as gw:
        answer = gw.runtime().invoke_endpoint(EndpointName="traced", Body=b"spans:3000")
        assert answer["Body"].read() == b"spans:3000"
        wait_until(
            lambda: "dropped 952 spans the model made beyond 2048" in gw.log(),
            timeout=30,
            what="the dropped spans in the log",
        )

        def steps() -> list[Any]:
            return [span for span in receiver.spans if span.name == "step"]

        wait_until(lambda: len(steps()) >= 2048, timeout=30, what="the model's spans")
    # Counted once the gateway has stopped, which flushes every span it still held.
    assert sorted(attributes(span)["model.step"] for span in steps()) == list(range(2048))


def exporter_pids(gw: Gateway) -> list[int]:
    """The gateway's span exporter process (a child running gateway.telemetry.exporter_process)."""
    found = []
    for pid in children_of(gw.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"gateway.telemetry.exporter_process" in cmdline:
            found.append(pid)
    return found


def test_spans_are_exported_by_a_process_that_dies_with_the_gateway(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Tracing runs one exporter process beside the gateway, niced; a caller
    whose traceparent says not sampled gets no span; an exporter that dies is replaced;
    a SIGKILLed gateway takes the exporter with it."""
    env = traces_to(receiver.url)
    config = toml_config(tmp_path / "state", endpoints={"echo": {}})
    unsampled = "0af7651916cd43dd8448eb211c80319c"

    with running_gateway(tmp_path, config, env=env) as gw:
        (exporter,) = wait_until(lambda: exporter_pids(gw), timeout=30, what="the exporter")
        # None dropped so far, and the metric says so.
        assert ("coldbrew_spans_dropped_total", {}, 0.0) in scrape(gw)
        # At the lowest CPU priority, once it has started (it renices itself).
        wait_until(
            lambda: os.getpriority(os.PRIO_PROCESS, exporter) == 19,
            timeout=30,
            what="the exporter at nice 19",
        )
        rt = sending_traceparent(gw, f"00-{unsampled}-b7ad6b7169203331-00")
        rt.invoke_endpoint(EndpointName="echo", Body=b"unsampled")
        gw.runtime().invoke_endpoint(EndpointName="echo", Body=b"sampled")
        wait_until(receiver.server_spans, timeout=30, what="the sampled call's span")
        assert unsampled not in {span.trace_id.hex() for span in receiver.spans}
        assert len(receiver.server_spans()) == 1

        os.kill(exporter, signal.SIGKILL)
        (replacement,) = wait_until(
            lambda: [pid for pid in exporter_pids(gw) if pid != exporter and is_running(pid)],
            timeout=30,
            what="a new exporter",
        )
        gw.runtime().invoke_endpoint(EndpointName="echo", Body=b"after the crash")
        wait_until(
            lambda: len(receiver.server_spans()) == 2,
            timeout=30,
            what="the next call's span through the new exporter",
        )
        assert "the span exporter exited with status -9; starting a new one" in gw.log()

        gw.stop(signal.SIGKILL)
        wait_until(lambda: not is_running(replacement), timeout=10, what="the exporter to die")
