"""The span exporter process and its transport, against a real HTTP receiver on
loopback: where the OTEL_* variables say to send, through the proxy the environment
names, TLS with the certificates they name, batching, retries, compression, and a
process that always ends (at end of input, or on settings it cannot use)."""

from __future__ import annotations

import base64
import datetime
import gzip
import ipaddress
import os
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.telemetry.exporter_process import FrameDecoder, batching
from gateway.telemetry.transport import (
    Attempt,
    HttpTransport,
    Outcome,
    deliver,
    export_settings,
    open_transport,
    parse_headers,
)
from tests.support import REPO


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def spans(self) -> list[Any]:
        body = gzip.decompress(self.body) if self.headers.get("content-encoding") else self.body
        request = ExportTraceServiceRequest.FromString(body)
        return [
            span
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


class Collector:
    """An HTTP receiver that answers with the statuses it is given (then 200) and keeps
    every request. Asked for an absolute URL or a CONNECT, it plays a forward proxy."""

    def __init__(
        self, statuses: list[int] | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.received: list[Received] = []
        self.statuses = list(statuses or [])
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {key.lower(): value for key, value in self.headers.items()}
                collector.received.append(Received(self.path, headers, body))
                status = collector.statuses.pop(0) if collector.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_CONNECT(self) -> None:
                # As a proxy would open a tunnel; then closes it (no TLS behind).
                headers = {key.lower(): value for key, value in self.headers.items()}
                collector.received.append(Received(f"CONNECT {self.path}", headers, b""))
                self.send_response(200)
                self.end_headers()
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        if tls is not None:
            # A handshake that fails is an OSError the server drops with the connection.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"


@contextmanager
def serving(found: Collector) -> Iterator[Collector]:
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def collector() -> Iterator[Collector]:
    with serving(Collector()) as found:
        yield found


@pytest.fixture
def proxy() -> Iterator[Collector]:
    """A second receiver, to play the proxy when ``collector`` is the collector."""
    with serving(Collector()) as found:
        yield found


PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy_of_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxies a test names, and none of the machine's: the transport reads them
    from this process's environment, as the exporter process does from its own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


class FakeTime:
    """The retry loop's clock and sleep: sleeping advances the clock, instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def transport_to(url: str, **environ: str) -> HttpTransport:
    return HttpTransport(
        export_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": url, **environ}, "http/protobuf")
    )


def delivered(url: str, timeout_s: float, **environ: str) -> tuple[Attempt, FakeTime]:
    """``deliver`` of one body to ``url`` on fake time: its outcome, and the pauses."""
    time = FakeTime()
    transport = transport_to(url, **environ)
    try:
        return deliver(transport, b"spans", timeout_s, clock=time.clock, sleep=time.sleep), time
    finally:
        transport.close()


def test_settings_follow_the_otel_variables() -> None:
    http = export_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http/protobuf")
    assert http.endpoint == "http://c:4318/v1/traces"
    assert http.timeout_s == 10.0
    own = export_settings(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t:443/custom",
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20x, tenant = a",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-only=traces",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
        },
        "http/protobuf",
    )
    assert own.endpoint == "https://t:443/custom"
    assert own.headers == {"x-only": "traces"}
    assert (own.timeout_s, own.compression) == (2.5, "gzip")
    grpc = export_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "grpc")
    assert grpc.endpoint == "http://c:4317"
    assert parse_headers("Authorization=Bearer%20x, tenant = a") == {
        "authorization": "Bearer x",
        "tenant": "a",
    }


@pytest.mark.parametrize(
    ("environ", "protocol", "named"),
    [
        ({}, "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "http/protobuf", "HEADERS"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "http/protobuf", "TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "0"}, "http/protobuf", "TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "http/protobuf", "COMPRESSION"),
    ],
)
def test_malformed_settings_name_their_variable(
    environ: dict[str, str], protocol: str, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        export_settings(environ, protocol)


def test_an_endpoint_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(ValueError, match="ENDPOINT"):
        transport_to("collector:4318")


def test_retryable_answers_are_retried_with_growing_pauses(collector: Collector) -> None:
    collector.statuses = [503, 429]
    attempt, time = delivered(collector.url, 10.0, OTEL_EXPORTER_OTLP_HEADERS="x-tenant=a")
    assert attempt.outcome is Outcome.SENT
    assert [found.body for found in collector.received] == [b"spans"] * 3
    assert all(found.path == "/v1/traces" for found in collector.received)
    first = collector.received[0].headers
    assert (first["content-type"], first["x-tenant"]) == ("application/x-protobuf", "a")
    assert len(time.pauses) == 2
    assert 0.8 <= time.pauses[0] <= 1.2
    assert 1.6 <= time.pauses[1] <= 2.4


def test_retries_stop_at_the_timeout(collector: Collector) -> None:
    collector.statuses = [503] * 10
    attempt, _ = delivered(collector.url, 5.0)
    # Attempts near 0 s, 1 s and 3 s; the next would start past 5 s.
    assert attempt.outcome is Outcome.RETRY
    assert "503" in attempt.detail
    assert len(collector.received) == 3


def test_a_refusal_is_not_retried(collector: Collector) -> None:
    collector.statuses = [400]
    attempt, time = delivered(collector.url, 10.0)
    assert attempt.outcome is Outcome.FAILED
    assert len(collector.received) == 1
    assert time.pauses == []


def test_an_unreachable_collector_is_a_retry() -> None:
    transport = transport_to("http://127.0.0.1:9")
    try:
        attempt = transport.post(b"spans", 2.0)
    finally:
        transport.close()
    assert attempt.outcome is Outcome.RETRY


# A collector that cannot be resolved: reaching it proves the proxy was used.
BEHIND_PROXY = "collector.invalid:4318"


def test_http_goes_through_the_proxy_the_environment_names(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With http_proxy set, the request asks the proxy for the collector's absolute URL,
    with the proxy's credentials."""
    monkeypatch.setenv(
        "http_proxy", collector.url.replace("http://", "http://otel%40ops:s%3Acret@")
    )
    attempt, _ = delivered(f"http://{BEHIND_PROXY}", 5)
    assert attempt.outcome is Outcome.SENT, attempt.detail
    (found,) = collector.received
    assert found.path == f"http://{BEHIND_PROXY}/v1/traces"
    assert found.headers["host"] == BEHIND_PROXY
    expected = base64.b64encode(b"otel@ops:s:cret").decode()
    assert found.headers["proxy-authorization"] == f"Basic {expected}"
    assert found.body == b"spans"


def test_https_tunnels_through_the_proxy(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTPS_PROXY set, an https collector is reached through a CONNECT tunnel (this
    proxy closes it at once: a retryable failure)."""
    monkeypatch.setenv("HTTPS_PROXY", collector.url)
    attempt, _ = delivered(f"https://{BEHIND_PROXY}", 0.5)
    assert attempt.outcome is Outcome.RETRY
    assert collector.received[0].path == f"CONNECT {BEHIND_PROXY}"


def test_no_proxy_hosts_are_reached_directly(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would refuse the connection
    monkeypatch.setenv("NO_PROXY", "localhost, 127.0.0.1")
    attempt, _ = delivered(collector.url, 5)
    assert attempt.outcome is Outcome.SENT, attempt.detail
    assert [found.path for found in collector.received] == ["/v1/traces"]


@pytest.mark.parametrize(
    ("no_proxy", "direct"),
    [
        ("*", True),
        ("localhost", True),
        (".localhost", True),
        ("other.test, LocalHost", True),
        ("localhost:{port}", True),
        ("localhost:{other_port}", False),
        ("other.test", False),
        ("", False),
    ],
)
def test_no_proxy_entries(
    collector: Collector,
    proxy: Collector,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
    direct: bool,
) -> None:
    """A collector on localhost, reached directly when ``no_proxy`` covers it (every
    host, its name, its domain, with its port) and through the proxy otherwise."""
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv(
        "no_proxy", no_proxy.format(port=collector.port, other_port=collector.port + 1)
    )
    attempt, _ = delivered(f"http://localhost:{collector.port}", 5)
    assert attempt.outcome is Outcome.SENT, attempt.detail
    reached, passed_by = (collector, proxy) if direct else (proxy, collector)
    assert len(reached.received) == 1
    assert passed_by.received == []


@pytest.mark.parametrize(
    ("variable", "proxy", "endpoint"),
    [
        ("HTTP_PROXY", "http://proxy:port", "http://c:4318"),
        ("https_proxy", "ftp://proxy:21", "https://c:4318"),
        ("https_proxy", "http://:8080", "https://c:4318"),
    ],
)
def test_a_proxy_url_that_cannot_be_used_is_refused_at_start_by_name(
    variable: str, proxy: str, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy variable that is not a usable URL is refused when the transport opens,
    naming the variable, rather than failing every export."""
    monkeypatch.setenv(variable, proxy)
    settings = export_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, "http/protobuf")
    with pytest.raises(ValueError, match=variable):
        open_transport(settings)


def test_certificates_default_to_the_requests_bundle() -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c", "REQUESTS_CA_BUNDLE": "/ca.pem"}
    assert export_settings(environ, "http/protobuf").certificate == "/ca.pem"
    own = {**environ, "OTEL_EXPORTER_OTLP_CERTIFICATE": "/otel.pem"}
    assert export_settings(own, "http/protobuf").certificate == "/otel.pem"


@dataclass(frozen=True)
class Pki:
    """A certificate authority of its own and what it signed, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _signed(
    directory: Path, name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None
) -> tuple[x509.Name, ec.EllipticCurvePrivateKey]:
    """A key and a certificate for ``name`` (for 127.0.0.1), signed by ``issuer`` or by
    itself as a CA, written to ``name``.pem and ``name``.key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    (directory / f"{name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return subject, key


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = _signed(tmp_path, "ca", None)
    _signed(tmp_path, "server", ca)
    _signed(tmp_path, "client", ca)
    return Pki(
        tmp_path / "ca.pem",
        tmp_path / "server.pem",
        tmp_path / "server.key",
        tmp_path / "client.pem",
        tmp_path / "client.key",
    )


@contextmanager
def tls_collector(pki: Pki, *, client_certificates: bool = False) -> Iterator[Collector]:
    """A collector serving HTTPS with ``pki``'s server certificate, requiring a client
    certificate the CA signed when asked to."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if client_certificates:
        context.load_verify_locations(pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    with serving(Collector(tls=context)) as found:
        yield found


@pytest.mark.parametrize(
    ("trust", "outcome"),
    [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", Outcome.SENT),
        ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", Outcome.SENT),
        ("REQUESTS_CA_BUNDLE", Outcome.SENT),
        (None, Outcome.RETRY),  # the system's CAs do not know this one
    ],
)
def test_https_trusts_the_certificate_the_variables_name(
    pki: Pki, trust: str | None, outcome: Outcome
) -> None:
    environ = {trust: str(pki.ca)} if trust else {}
    with tls_collector(pki) as collector:
        attempt, _ = delivered(collector.url, 0.5, **environ)
    assert attempt.outcome is outcome, attempt.detail
    assert len(collector.received) == (outcome is Outcome.SENT)
    if outcome is Outcome.RETRY:
        assert "CERTIFICATE_VERIFY_FAILED" in attempt.detail


def test_https_presents_the_client_certificate_the_variables_name(pki: Pki) -> None:
    trusted = {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(pki.ca)}
    with tls_collector(pki, client_certificates=True) as collector:
        attempt, _ = delivered(
            collector.url,
            5,
            OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=str(pki.client_cert),
            OTEL_EXPORTER_OTLP_CLIENT_KEY=str(pki.client_key),
            **trusted,
        )
        assert attempt.outcome is Outcome.SENT, attempt.detail
        refused, _ = delivered(collector.url, 0.5, **trusted)
        assert refused.outcome is Outcome.RETRY
    assert len(collector.received) == 1


def test_certificate_files_that_cannot_be_used_are_refused_at_start(
    pki: Pki, tmp_path: Path
) -> None:
    """As the exporter opens its transport (it then logs and drops every span), not at
    each export."""
    with pytest.raises(FileNotFoundError):
        transport_to(
            "https://127.0.0.1:9", OTEL_EXPORTER_OTLP_CERTIFICATE=str(tmp_path / "missing.pem")
        )
    with pytest.raises(ssl.SSLError):
        transport_to(
            "https://127.0.0.1:9",
            OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=str(pki.client_cert),
            OTEL_EXPORTER_OTLP_CLIENT_KEY=str(pki.server_key),  # not the certificate's key
        )


def test_gzip_compression(collector: Collector) -> None:
    transport = transport_to(collector.url, OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
    try:
        assert transport.post(b"spans" * 100, 5.0).outcome is Outcome.SENT
    finally:
        transport.close()
    (found,) = collector.received
    assert found.headers["content-encoding"] == "gzip"
    assert gzip.decompress(found.body) == b"spans" * 100


def test_frames_decode_from_pieces_of_any_size_skipping_one_not_json() -> None:
    payloads = (orjson.dumps([{"a": 1}]), b"{not json", orjson.dumps([]), orjson.dumps([{"b": 2}]))
    frames = b"".join(struct.pack(">I", len(payload)) + payload for payload in payloads)
    decoder = FrameDecoder()
    found = [
        batch for byte in range(len(frames) - 1) for batch in decoder.feed(frames[byte : byte + 1])
    ]
    assert found == [[{"a": 1}], []]
    assert list(decoder.feed(frames[-1:])) == [[{"b": 2}]]


def test_batching_reads_the_bsp_variables_and_falls_back_on_bad_ones() -> None:
    assert batching({}) == batching({"OTEL_BSP_SCHEDULE_DELAY": "x"})
    found = batching({"OTEL_BSP_SCHEDULE_DELAY": "250", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "7"})
    assert (found.schedule_delay_s, found.max_batch) == (0.25, 7)
    assert batching({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "-1"}).max_batch == 512


def record(number: int) -> dict[str, Any]:
    return {
        "trace_id": f"{number + 1:032x}",
        "span_id": f"{number + 1:016x}",
        "name": f"span-{number}",
        "kind": 0,
        "status": 0,
        "start": 1,
        "end": 2,
        "attributes": {"n": number},
    }


def run_exporter(
    environ: dict[str, str], batches: list[list[Any]], *options: str
) -> subprocess.CompletedProcess[bytes]:
    """The exporter process (given command-line ``options``) fed ``batches`` then end of
    input; it must end by itself."""
    frames = b""
    for batch in batches:
        payload = orjson.dumps(batch)
        frames += struct.pack(">I", len(payload)) + payload
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **environ}
    return subprocess.run(
        [sys.executable, "-m", "gateway.telemetry.exporter_process", *options],
        input=frames,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_the_process_sends_full_batches_and_the_rest_at_end_of_input(
    collector: Collector,
) -> None:
    malformed = {"name": "no ids"}
    done = run_exporter(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2",
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
            "OTEL_SERVICE_NAME": "exporter-test",
        },
        [[record(0), malformed, record(1), record(2)], [record(3), "not a record"], [record(4)]],
    )
    assert done.returncode == 0, done.stderr
    assert [len(found.spans()) for found in collector.received] == [2, 2, 1]
    names = [span.name for found in collector.received for span in found.spans()]
    assert names == [f"span-{number}" for number in range(5)]
    request = ExportTraceServiceRequest.FromString(collector.received[0].body)
    resource = {pair.key: pair.value for pair in request.resource_spans[0].resource.attributes}
    assert resource["service.name"].string_value == "exporter-test"


def test_the_process_exports_through_the_gateways_proxy(collector: Collector) -> None:
    """The proxy variables the gateway passes on are the ones the exporter uses."""
    done = run_exporter(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{BEHIND_PROXY}", "http_proxy": collector.url},
        [[record(0), record(1)]],
    )
    assert done.returncode == 0, done.stderr
    (found,) = collector.received
    assert found.path == f"http://{BEHIND_PROXY}/v1/traces"
    assert [span.name for span in found.spans()] == ["span-0", "span-1"]


def test_the_process_drops_everything_on_settings_it_cannot_use() -> None:
    done = run_exporter(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT": "x"},
        [[record(0)]],
    )
    assert done.returncode == 0
    assert b"cannot export spans" in done.stderr
    assert b"OTEL_EXPORTER_OTLP_TIMEOUT" in done.stderr


def test_the_process_reports_spans_it_could_not_send() -> None:
    done = run_exporter(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT": "0.5"},
        [[record(0), record(1)]],
    )
    assert done.returncode == 0
    assert b"could not export 2 spans" in done.stderr


async def test_spans_sent_to_an_exporter_that_exited_are_dropped_and_counted() -> None:
    """The gateway's end of the pipe never blocks or raises: a batch for an exporter
    that is gone is dropped, and the span batch reports the count (the
    coldbrew.spans_dropped metric reads it)."""
    import asyncio
    import logging

    from gateway.telemetry.exporter import ExporterPipe
    from gateway.telemetry.spans import SpanBatch

    async def spawn() -> asyncio.subprocess.Process:
        # A stand-in exporter that reads until end of input.
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; sys.stdin.buffer.read()",
            stdin=asyncio.subprocess.PIPE,
        )

    proc = await spawn()
    assert proc.stdin is not None
    proc.stdin.close()
    await proc.wait()
    pipe = ExporterPipe(proc, spawn, logging.getLogger("test"))
    batch = SpanBatch(pipe.send, lambda: pipe.dropped_spans)
    batch.extend([record(number) for number in range(3)])
    batch.flush()
    assert batch.dropped() == 3
    # Replaced by a live one on the next beat; nothing more is dropped.
    await pipe.revive(now=0.0)
    try:
        assert pipe.proc is not proc
        batch.add(record(3))
        batch.flush()
        assert batch.dropped() == 3
    finally:
        assert pipe.proc.stdin is not None
        pipe.proc.stdin.close()
        await pipe.proc.wait()


def test_the_process_logs_json_lines_when_the_gateway_does() -> None:
    """With ``--log-format json`` (the gateway's [server] log_format) each line the
    exporter writes is a JSON object naming its logger and level."""
    done = run_exporter(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT": "x"},
        [[record(0)]],
        "--log-format",
        "json",
    )
    assert done.returncode == 0
    lines = [orjson.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines, done.stderr
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("coldbrew.span-exporter", "error")
    ]
    assert "cannot export spans" in lines[0]["message"]
