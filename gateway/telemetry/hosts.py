"""Host names with an optional port, as a Host header or a ``no_proxy`` entry writes
them."""

from __future__ import annotations


def split_host(host: str) -> tuple[str, int | None]:
    """The name and port of ``host``: ``("127.0.0.1", 8080)`` from ``127.0.0.1:8080``,
    ``("::1", 8443)`` from ``[::1]:8443``, ``("::1", None)`` from ``[::1]`` or a bare
    ``::1`` (whose colons are its own); a port that is not a number is left in the name."""
    name, colon, port = host.rpartition(":")
    bare_ipv6 = ":" in name and not name.endswith("]")
    if not colon or bare_ipv6 or not (port.isascii() and port.isdigit()):
        name, port = host, ""
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name, int(port) if port else None
