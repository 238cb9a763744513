"""What an invocation's trace holds besides its SERVER span's own course: the span's
attributes from the request, and the child spans of what the call waited for, recorded
after the fact from what the pool measured."""

from __future__ import annotations

import time
from typing import Final

from aiohttp import HttpVersion10, HttpVersion11, web
from opentelemetry.util.types import AttributeValue

from workers import InvocationResult, LightSpan

# network.protocol.version of the HTTP versions aiohttp serves, formatted once.
PROTOCOL_VERSIONS: Final = {HttpVersion10: "1.0", HttpVersion11: "1.1"}


def server_attributes(request: web.Request, request_id: str) -> dict[str, AttributeValue]:
    """The invocation's SERVER span attributes from its request (HTTP server semantic
    conventions 1.26). Read from the headers, not ``request.host``: with no Host header
    that resolves the machine's name, a DNS lookup on the event loop."""
    headers = request.headers
    version = request.version
    attributes: dict[str, AttributeValue] = {
        "faas.trigger": "http",
        "faas.invocation_id": request_id,
        "http.request.method": request.method,
        "http.route": "/endpoints/{EndpointName}/invocations",
        "url.path": request.path,
        # The gateway listens for plain HTTP only (TLS ends in front of it).
        "url.scheme": "http",
        "network.protocol.version": PROTOCOL_VERSIONS.get(version)
        or f"{version.major}.{version.minor}",
        "user_agent.original": headers.get("User-Agent", ""),
    }
    address, port = split_host(headers.get("Host", ""))
    if address:
        attributes["server.address"] = address
    if port is not None:
        attributes["server.port"] = port
    return attributes


def split_host(host: str) -> tuple[str, int | None]:
    """The name and port of a Host header: ``("127.0.0.1", 8080)`` from
    ``127.0.0.1:8080``, ``("::1", 8443)`` from ``[::1]:8443``, ``("::1", None)`` from
    ``[::1]`` or a bare ``::1`` (whose colons are its own); a port that is not a number
    is left in the name."""
    name, colon, port = host.rpartition(":")
    bare_ipv6 = ":" in name and not name.endswith("]")
    if not colon or bare_ipv6 or not (port.isascii() and port.isdigit()):
        name, port = host, ""
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name, int(port) if port else None


def record_call_spans(span: LightSpan, result: InvocationResult, pool_started_ns: int) -> None:
    """The spans of what the invocation waited for, placed in time from what the pool
    measured, as children of ``span``: the cold start (with its tier, and its phases laid
    end to end) when it waited for one, and the model call."""
    if result.cold_start:
        init_ns = int((result.init_ms or 0.0) * 1e6)
        cold = span.record_child(
            "cold start",
            pool_started_ns,
            pool_started_ns + init_ns,
            {"coldbrew.tier": result.tier or "unknown", "faas.coldstart": True},
        )
        phase_start = pool_started_ns
        for phase, ms in result.phases:
            phase_end = phase_start + int(ms * 1e6)
            span.record_child(phase, phase_start, phase_end, under=cold)
            phase_start = phase_end
    ended_ns = time.time_ns()
    span.record_child(
        "model call",
        ended_ns - int(result.model_ms * 1e6),
        ended_ns,
        {"http.response.status_code": result.status},
    )
