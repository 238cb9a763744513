"""Signing a request (the CLI client, tests, load generators): ``sign``.

Pure: no I/O, and ``now`` is always passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

from gateway.edge.sigv4.canonical import (
    ALGORITHM,
    SERVICE,
    TERMINATOR,
    Credential,
    build_string_to_sign,
    canonical_query,
    canonical_uri,
    derive_key,
    format_amz_date,
    trim,
)

# Headers `sign` signs besides host and x-amz-date (by lowercase name or prefix);
# the same choice botocore makes for the headers SageMaker clients send.
_SIGNED_NAMES = frozenset({"content-type", "accept", "x-amz-target", "x-amz-security-token"})
_SIGNED_PREFIXES = ("x-amzn-sagemaker-", "x-amz-")
# Headers `sign` sets itself; a caller's copy (any case) is replaced.
_SIGN_OWNED = frozenset({"host", "x-amz-date", "authorization", "x-amz-security-token"})


def _host_header(url: str) -> tuple[str, str, str]:
    """(host[:port], raw path, raw query) of a URL; the port only when not the default."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = parts.hostname  # lowercase, without userinfo, like botocore
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != (443 if parts.scheme == "https" else 80):
        host = f"{host}:{port}"
    return host, parts.path, parts.query


def _should_sign(lname: str) -> bool:
    return lname in _SIGNED_NAMES or lname.startswith(_SIGNED_PREFIXES)


def sign(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credential: Credential,
    region: str,
    now: float,
    service: str = SERVICE,
    session_token: str | None = None,
) -> dict[str, str]:
    """Sign a request; return the headers to send.

    The result is ``headers`` plus ``Host`` (lowercase host, ``:port`` unless default for
    the scheme), ``X-Amz-Date``, ``X-Amz-Security-Token`` (when ``session_token`` is
    given) and ``Authorization``; caller copies of those (any case) are replaced.
    Signed: host, x-amz-date, and each header named content-type, accept,
    x-amz-target, x-amz-security-token or starting with ``x-amz-`` /
    ``x-amzn-sagemaker-``. The URL path must already be percent-encoded (quote the
    endpoint name with ``safe=''``). Raises ``ValueError`` for a non-http(s) URL.
    """
    host, raw_path, query = _host_header(url)
    amz_date = format_amz_date(now)
    out = {k: v for k, v in headers.items() if k.lower() not in _SIGN_OWNED}
    out["Host"] = host
    out["X-Amz-Date"] = amz_date
    if session_token is not None:
        out["X-Amz-Security-Token"] = session_token
    to_sign: dict[str, list[str]] = {}
    for name, value in out.items():
        lname = name.lower()
        if lname in ("host", "x-amz-date") or _should_sign(lname):
            to_sign.setdefault(lname, []).append(trim(value))
    names = sorted(to_sign)
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/{TERMINATOR}"
    string_to_sign = build_string_to_sign(
        method=method.upper(),
        canonical_uri=canonical_uri(raw_path),
        canonical_query=canonical_query(query),
        canonical_headers="".join(f"{n}:{','.join(to_sign[n])}\n" for n in names),
        signed_headers=";".join(names),
        payload_hash=hashlib.sha256(body).hexdigest(),
        amz_date=amz_date,
        scope=scope,
    )
    key = derive_key(credential.secret_access_key, date, region, service)
    signature = hmac.digest(key, string_to_sign, "sha256").hex()
    out["Authorization"] = (
        f"{ALGORITHM} Credential={credential.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out
