"""Sending encoded OTLP trace requests to a collector, as the standard ``OTEL_*``
variables say: over HTTP/protobuf (``requests``) or gRPC (``grpcio``, from
``coldbrew[otlp-grpc]``). Each is imported by the transport that uses it, in the
exporter process: the gateway, which imports this module too, loads neither for its
spans.

The variables are read as the OpenTelemetry Python SDK reads them, so that the gateway's
traces (sent from here) and metrics (sent by the SDK) go where the same settings say:
``OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION,CERTIFICATE,
CLIENT_KEY,CLIENT_CERTIFICATE,INSECURE}``, the signal's own variable first.

Behind a proxy, OTLP/HTTP goes through the one ``https_proxy`` / ``http_proxy`` names
(either case; not for hosts ``no_proxy`` covers), as ``requests`` reads them for the
SDK's metric exporter too, and certificates default to ``REQUESTS_CA_BUNDLE``, as that
exporter's do; gRPC reads the proxy variables itself.

A transport's ``post`` makes one attempt and classifies it (``Outcome``); ``deliver``
retries what is retryable with exponential backoff, within the export timeout, as the
OTLP specification asks. ``protocol`` and ``SERVICE_NAME`` are shared with the metrics
setup, which reads the same variables.
"""

from __future__ import annotations

import enum
import gzip
import importlib.util
import os
import random
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import requests

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
    )


class Transport(Protocol):
    def post(self, body: bytes, timeout_s: float) -> Attempt: ...

    def close(self) -> None: ...


class HttpTransport:
    """POSTs to the endpoint through a ``requests`` session: connections kept alive (a new
    one after an error), and through the proxy the environment names for the endpoint
    (plain HTTP asks the proxy for the collector's URL, HTTPS tunnels with CONNECT; the
    proxy URL's user information becomes its Proxy-Authorization)."""

    def __init__(self, settings: ExportSettings) -> None:
        import requests  # here, not at the top: see the module's docstring

        url = urlsplit(settings.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: {settings.endpoint!r} is not an "
                "http or https URL"
            )
        if url.scheme == "https":
            # Certificate files that cannot be used are refused here, at start, rather
            # than by every post (requests reads them for each new connection).
            context = ssl.create_default_context(cafile=settings.certificate)
            if settings.client_certificate:
                context.load_cert_chain(settings.client_certificate, settings.client_key)
        self._endpoint = settings.endpoint
        self._compression = settings.compression
        self._retryable: tuple[type[Exception], ...] = (
            requests.ConnectionError,  # refused, reset, TLS, proxy errors; connect timeout
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,  # the answer broke off
        )
        self._session = _session(settings)

    def post(self, body: bytes, timeout_s: float) -> Attempt:
        if self._compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
        elif self._compression == "deflate":
            body = zlib.compress(body)
        try:
            # Not followed: a 3xx fails the export (requests would turn a redirected
            # POST into a GET).
            response = self._session.post(
                self._endpoint, data=body, timeout=timeout_s, allow_redirects=False
            )
        except OSError as exc:  # every error requests raises is one
            outcome = Outcome.RETRY if isinstance(exc, self._retryable) else Outcome.FAILED
            return Attempt(outcome, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return Attempt(Outcome.SENT)
        detail = f"HTTP {response.status_code}: {response.content[:200].decode(errors='replace')}"
        return Attempt(
            Outcome.RETRY if response.status_code in RETRYABLE_HTTP else Outcome.FAILED, detail
        )

    def close(self) -> None:
        self._session.close()


def _session(settings: ExportSettings) -> requests.Session:
    """A session that sends only the OTLP headers (none of requests' defaults) and takes
    from the environment only the proxies for the endpoint (``http_proxy``,
    ``https_proxy``, ``no_proxy``, either case), read once: trusting the environment
    whole would also let a ``~/.netrc`` entry replace the Authorization header that
    ``OTEL_EXPORTER_OTLP_HEADERS`` sets."""
    import requests

    session = requests.Session()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(settings.endpoint)
    _check_proxy(session.proxies.get(urlsplit(settings.endpoint).scheme))
    session.headers.clear()
    session.headers["Content-Type"] = "application/x-protobuf"
    session.headers.update(settings.headers)
    if settings.compression != "none":
        session.headers["Content-Encoding"] = settings.compression
    session.verify = settings.certificate or _system_trust()
    if settings.client_certificate:
        session.cert = (
            (settings.client_certificate, settings.client_key)
            if settings.client_key
            else settings.client_certificate
        )
    return session


def _check_proxy(proxy: str | None) -> None:
    """Refuse, at start and by the variable's name, a proxy URL no export could use (a
    bad port, a scheme requests cannot speak), rather than fail every export later."""
    if proxy is None:
        return
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    named = [name for name, value in os.environ.items() if name.lower().endswith("_proxy")]
    variable = next((name for name in named if os.environ[name] == proxy), "the proxy")
    try:
        parsed = parse_url(proxy)
    except LocationParseError as exc:
        raise ValueError(f"{variable}: {proxy!r} is not a usable proxy URL ({exc})") from None
    socks = (parsed.scheme or "").startswith("socks")
    if socks and importlib.util.find_spec("socks") is None:
        raise ValueError(f"{variable}: {proxy!r} is a SOCKS proxy, which needs PySocks")
    if not parsed.host or not (socks or parsed.scheme in ("http", "https")):
        raise ValueError(f"{variable}: {proxy!r} is not an http, https or socks proxy URL")


def _system_trust() -> str | bool:
    """The CA file or directory OpenSSL trusts by default (``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` override it), as an HTTPS connection of the standard library would;
    requests alone would trust its own bundle instead. True (that bundle) when the
    system has neither."""
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.capath or True


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
