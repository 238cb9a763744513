"""Sending encoded OTLP trace requests to a collector, as the standard ``OTEL_*``
variables say: over HTTP/protobuf (``http.client``) or gRPC (``grpcio``, from
``coldbrew[otlp-grpc]``).

The variables are read as the OpenTelemetry Python SDK reads them, so that the gateway's
traces (sent from here) and metrics (sent by the SDK) go where the same settings say:
``OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION,CERTIFICATE,
CLIENT_KEY,CLIENT_CERTIFICATE,INSECURE}``, the signal's own variable first.

Behind a proxy, OTLP/HTTP goes through the one ``https_proxy`` / ``http_proxy`` names
(either case; not for hosts ``no_proxy`` covers), and certificates default to
``REQUESTS_CA_BUNDLE``, as the SDK's exporter (on ``requests``) does; gRPC reads the
proxy variables itself.

A transport's ``post`` makes one attempt and classifies it (``Outcome``); ``deliver``
retries what is retryable with exponential backoff, within the export timeout, as the
OTLP specification asks. ``protocol`` and ``SERVICE_NAME`` are shared with the metrics
setup, which reads the same variables.
"""

from __future__ import annotations

import base64
import enum
import gzip
import http.client
import random
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import unquote, urlsplit

from gateway.telemetry.hosts import split_host

SERVICE_NAME: Final = "coldbrew-gateway"
HTTP_TRACES_PATH: Final = "/v1/traces"
DEFAULT_HTTP_ENDPOINT: Final = "http://localhost:4318" + HTTP_TRACES_PATH
DEFAULT_GRPC_ENDPOINT: Final = "http://localhost:4317"
GRPC_EXPORT_METHOD: Final = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# Seconds, as the Python SDK reads OTEL_EXPORTER_OTLP_TIMEOUT (the specification says
# milliseconds; the metrics exporter in the same gateway reads seconds, and one variable
# must mean one thing).
DEFAULT_TIMEOUT_S: Final = 10.0
# The statuses the OTLP/HTTP specification calls retryable.
RETRYABLE_HTTP: Final = frozenset({429, 502, 503, 504})
RETRYABLE_GRPC: Final = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "OUT_OF_RANGE"}
    | {"UNAVAILABLE", "DATA_LOSS"}
)
FIRST_BACKOFF_S: Final = 1.0


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # worth another attempt (collector busy, unreachable, timed out)
    FAILED = "failed"  # refused for good (bad request, unauthorised)


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: where it listens, and the Proxy-Authorization its URL's user
    information asks for (None without)."""

    host: str
    port: int
    authorization: str | None = None


@dataclass(frozen=True)
class ExportSettings:
    protocol: str
    endpoint: str
    headers: dict[str, str]
    timeout_s: float
    compression: str  # "gzip", "deflate" or "none"
    certificate: str | None = None
    client_key: str | None = None
    client_certificate: str | None = None
    insecure: bool = False
    proxy: Proxy | None = None


def protocol(environ: Mapping[str, str], signal: str) -> str:
    """OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else the
    SDK's default http/protobuf."""
    return (
        environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )


def _signal_or_general(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(
        f"OTEL_EXPORTER_OTLP_{name}"
    )


def parse_headers(text: str) -> dict[str, str]:
    """``key=value,key2=value2`` with percent-encoded parts (the W3C baggage format the
    specification uses). Keys are lower-cased (gRPC metadata must be). Raises ValueError
    naming a malformed entry."""
    headers = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"OTEL_EXPORTER_OTLP_HEADERS: {entry.strip()!r} is not key=value")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def export_settings(environ: Mapping[str, str], protocol: str) -> ExportSettings:
    """Where and how to send traces. Raises ValueError naming a malformed variable."""
    if protocol not in ("http/protobuf", "grpc"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported")
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint and base:
        # The general endpoint is a base URL: HTTP appends the signal's path; gRPC
        # addresses the service, not a path.
        endpoint = base.rstrip("/") + HTTP_TRACES_PATH if protocol == "http/protobuf" else base
    if not endpoint:
        endpoint = DEFAULT_HTTP_ENDPOINT if protocol == "http/protobuf" else DEFAULT_GRPC_ENDPOINT
    raw_timeout = _signal_or_general(environ, "TIMEOUT")
    try:
        timeout_s = float(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"OTEL_EXPORTER_OTLP_TIMEOUT: {raw_timeout!r} is not a number") from None
    if not timeout_s > 0:
        raise ValueError(f"OTEL_EXPORTER_OTLP_TIMEOUT: {raw_timeout!r} must be positive")
    compression = (_signal_or_general(environ, "COMPRESSION") or "none").strip().lower()
    if compression not in ("gzip", "deflate", "none"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_COMPRESSION: {compression!r} is not supported")
    return ExportSettings(
        protocol=protocol,
        endpoint=endpoint,
        headers=parse_headers(_signal_or_general(environ, "HEADERS") or ""),
        timeout_s=timeout_s,
        compression=compression,
        certificate=_signal_or_general(environ, "CERTIFICATE")
        or (environ.get("REQUESTS_CA_BUNDLE") if protocol == "http/protobuf" else None),
        client_key=_signal_or_general(environ, "CLIENT_KEY"),
        client_certificate=_signal_or_general(environ, "CLIENT_CERTIFICATE"),
        insecure=(_signal_or_general(environ, "INSECURE") or "").strip().lower() == "true",
        # grpcio finds its proxy in the same variables by itself.
        proxy=proxy_for(endpoint, environ) if protocol == "http/protobuf" else None,
    )


def proxy_for(endpoint: str, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy the environment names for ``endpoint``: ``https_proxy`` or
    ``http_proxy`` by its scheme (lower case first, as curl and urllib read them), none
    when ``no_proxy`` covers its host. Raises ValueError naming a proxy variable that is
    not an http:// URL."""
    url = urlsplit(endpoint)
    names = (f"{url.scheme}_proxy", f"{url.scheme.upper()}_PROXY")
    name, value = next(((name, environ[name]) for name in names if environ.get(name)), ("", ""))
    if not value:
        return None
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    if url.hostname and bypasses_proxy(no_proxy, url.hostname, port):
        return None
    proxy = urlsplit(value if "://" in value else f"http://{value}")
    try:
        proxy_port = proxy.port or 80
    except ValueError:  # not a number, or out of range
        proxy_port = 0
    if proxy.scheme != "http" or not proxy.hostname or not proxy_port:
        raise ValueError(f"{name}: {value!r} is not an http:// proxy URL")
    authorization = None
    if proxy.username is not None:
        user = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
        authorization = "Basic " + base64.b64encode(user.encode()).decode()
    return Proxy(proxy.hostname, proxy_port, authorization)


def bypasses_proxy(no_proxy: str, host: str, port: int) -> bool:
    """Whether ``no_proxy`` covers ``host`` (and ``port``): a comma-separated list of
    ``*`` (every host), host names, domains (``example.com`` and ``.example.com`` cover
    its subdomains too), IP addresses, each optionally with ``:port``; case-insensitive,
    as curl reads it."""
    host = host.lower()
    for raw in no_proxy.lower().split(","):
        entry = raw.strip()
        if entry == "*":
            return True
        name, entry_port = split_host(entry)
        name = name.lstrip(".")
        if not name or (entry_port is not None and entry_port != port):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


class Transport(Protocol):
    def post(self, body: bytes, timeout_s: float) -> Attempt: ...

    def close(self) -> None: ...


class HttpTransport:
    """POSTs to the endpoint over one kept-alive connection (re-opened after an error)."""

    def __init__(self, settings: ExportSettings) -> None:
        url = urlsplit(settings.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: {settings.endpoint!r} is not an "
                "http or https URL"
            )
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._compression = settings.compression
        self._headers = {"Content-Type": "application/x-protobuf", **settings.headers}
        if settings.compression != "none":
            self._headers["Content-Encoding"] = settings.compression
        proxy = settings.proxy
        # Through a proxy, HTTPS tunnels (CONNECT) to the collector, while plain HTTP asks
        # the proxy for the collector's absolute URL.
        host, port = (proxy.host, proxy.port) if proxy else (url.hostname, url.port)
        self._conn: http.client.HTTPConnection
        if url.scheme == "https":
            context = ssl.create_default_context(cafile=settings.certificate)
            if settings.client_certificate:
                context.load_cert_chain(settings.client_certificate, settings.client_key)
            self._conn = http.client.HTTPSConnection(
                host, port, timeout=settings.timeout_s, context=context
            )
            if proxy:
                tunnel = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {}
                self._conn.set_tunnel(url.hostname, url.port or 443, headers=tunnel)
        else:
            self._conn = http.client.HTTPConnection(host, port, timeout=settings.timeout_s)
            if proxy:
                self._path = f"http://{url.netloc.rpartition('@')[2]}{self._path}"
                if proxy.authorization:
                    self._headers["Proxy-Authorization"] = proxy.authorization

    def post(self, body: bytes, timeout_s: float) -> Attempt:
        if self._compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
        elif self._compression == "deflate":
            body = zlib.compress(body)
        # For a connection made now, and for the one kept alive since an earlier post.
        self._conn.timeout = timeout_s
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout_s)
        try:
            self._conn.request("POST", self._path, body, self._headers)
            response = self._conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            return Attempt(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status < 300:
            return Attempt(Outcome.SENT)
        detail = f"HTTP {response.status}: {answer[:200].decode(errors='replace')}"
        return Attempt(
            Outcome.RETRY if response.status in RETRYABLE_HTTP else Outcome.FAILED, detail
        )

    def close(self) -> None:
        self._conn.close()


class GrpcTransport:
    """Calls TraceService/Export on one channel, sending the encoded request as is."""

    def __init__(self, settings: ExportSettings) -> None:
        import grpc  # coldbrew[otlp-grpc]

        self._grpc: Any = grpc
        url = urlsplit(settings.endpoint)
        if url.scheme in ("http", "https"):
            target, secure = url.netloc, url.scheme == "https"
        else:
            # host:port: TLS unless OTEL_EXPORTER_OTLP_INSECURE says otherwise.
            target, secure = settings.endpoint, not settings.insecure
        if not target:
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: {settings.endpoint!r} names no host"
            )
        compression = {
            "gzip": grpc.Compression.Gzip,
            "deflate": grpc.Compression.Deflate,
        }.get(settings.compression, grpc.Compression.NoCompression)
        if secure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(settings.certificate),
                private_key=_read(settings.client_key),
                certificate_chain=_read(settings.client_certificate),
            )
            self._channel = grpc.secure_channel(target, credentials, compression=compression)
        else:
            self._channel = grpc.insecure_channel(target, compression=compression)
        # No serialisers: the request goes out as the bytes it already is.
        self._export = self._channel.unary_unary(GRPC_EXPORT_METHOD)
        self._metadata = tuple(settings.headers.items())

    def post(self, body: bytes, timeout_s: float) -> Attempt:
        try:
            self._export(body, timeout=timeout_s, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            code = exc.code()
            name = code.name if code is not None else "UNKNOWN"
            outcome = Outcome.RETRY if name in RETRYABLE_GRPC else Outcome.FAILED
            return Attempt(outcome, f"gRPC {name}: {exc.details()}")
        return Attempt(Outcome.SENT)

    def close(self) -> None:
        self._channel.close()


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as file:
        return file.read()


def open_transport(settings: ExportSettings) -> Transport:
    """The transport for ``settings.protocol``. Raises ValueError for an endpoint it
    cannot use, OSError for a certificate file it cannot read, ImportError when gRPC
    is asked for without ``coldbrew[otlp-grpc]``."""
    if settings.protocol == "grpc":
        return GrpcTransport(settings)
    return HttpTransport(settings)


def deliver(
    transport: Transport,
    body: bytes,
    timeout_s: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Attempt:
    """Post ``body``, retrying a retryable failure after 1 s, 2 s, 4 s, ... (with jitter)
    while the next attempt still starts before ``timeout_s`` is up. The last attempt's
    outcome."""
    deadline = clock() + timeout_s
    backoff = FIRST_BACKOFF_S
    while True:
        attempt = transport.post(body, max(deadline - clock(), 0.001))
        if attempt.outcome is not Outcome.RETRY:
            return attempt
        pause = backoff * random.uniform(0.8, 1.2)
        if clock() + pause >= deadline:
            return attempt
        sleep(pause)
        backoff *= 2
