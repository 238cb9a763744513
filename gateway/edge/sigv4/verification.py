"""Verifying a signed request: ``Verifier`` (preferred) and the stateless ``verify``.

Call ``parse_authorization`` first; these then check the rest of the request and return
the ``Principal`` that signed it, or raise ``SigV4Error``. Pure: no I/O, and ``now`` is
always passed in.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.edge.sigv4.authorization import ParsedAuthorization
from gateway.edge.sigv4.canonical import (
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
from gateway.edge.sigv4.errors import (
    INCOMPLETE_SIGNATURE,
    INVALID_SIGNATURE,
    UNRECOGNIZED_CLIENT,
    SigV4Error,
)

_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")

_INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."
_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who signed a verified request; ``region`` comes from the credential scope."""

    access_key_id: str
    account_id: str
    region: str


def _header_table(headers: Mapping[str, str]) -> Callable[[str], list[str] | None]:
    """A case-insensitive lookup of every value of a header (``None`` when absent)."""
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        ci = headers

        def get_ci(name: str) -> list[str] | None:
            return ci.getall(name, None)

        return get_ci
    lowered: dict[str, list[str]] = {}
    for key, value in headers.items():
        lowered.setdefault(key.lower(), []).append(value)
    return lowered.get


def _describe_skew(max_skew_s: float) -> str:
    if max_skew_s % 60 == 0:
        return f"{int(max_skew_s // 60)} min."
    return f"{max_skew_s:g} sec."  # [inferred wording] AWS only ever says "5 min."


def _parse_amz_date(stamp: str) -> float | None:
    """Epoch seconds of a ``YYYYMMDDTHHMMSSZ`` stamp, or ``None`` if it is not one."""
    if not _AMZ_DATE_RE.fullmatch(stamp):
        return None
    hour, minute, second = int(stamp[9:11]), int(stamp[11:13]), int(stamp[13:15])
    if hour > 23 or minute > 59 or second > 59:
        return None
    try:
        # date() validates the calendar day; far cheaper than a tz-aware datetime.
        days = datetime.date(int(stamp[0:4]), int(stamp[4:6]), int(stamp[6:8])).toordinal()
    except ValueError:
        return None
    return float((days - _EPOCH_ORDINAL) * 86400 + hour * 3600 + minute * 60 + second)


def _request_time(amz_date: list[str] | None, scope_date: str) -> tuple[str, float]:
    """Validate X-Amz-Date against the scope date; return it and its epoch seconds."""
    if not amz_date:
        # AWS's wording; this server accepts only X-Amz-Date, never a bare Date header.
        raise SigV4Error(
            INCOMPLETE_SIGNATURE,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    stamp = amz_date[0].strip()
    when = _parse_amz_date(stamp)
    if when is None:
        raise SigV4Error(
            INCOMPLETE_SIGNATURE,
            f"Date must be in ISO-8601 'basic format'. Got '{stamp}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601",
        )
    if stamp[:8] != scope_date:
        raise SigV4Error(
            INCOMPLETE_SIGNATURE,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date}' != '{stamp[:8]}', from '{stamp}'.",
        )
    return stamp, when


def _check_fresh(stamp: str, when: float, now: float, max_skew_s: float) -> None:
    if now - when > max_skew_s:
        raise SigV4Error(
            INVALID_SIGNATURE,
            f"Signature expired: {stamp} is now earlier than {format_amz_date(now - max_skew_s)} "
            f"({format_amz_date(now)} - {_describe_skew(max_skew_s)})",
        )
    if when - now > max_skew_s:
        raise SigV4Error(
            INVALID_SIGNATURE,
            f"Signature not yet current: {stamp} is still later than "
            f"{format_amz_date(now + max_skew_s)} ({format_amz_date(now)} + "
            f"{_describe_skew(max_skew_s)})",
        )


def _canonical_headers(
    signed_headers: tuple[str, ...], get: Callable[[str], list[str] | None]
) -> str:
    """``name:value\\n`` for each signed header, in the order the client listed them."""
    if "host" not in signed_headers:
        raise SigV4Error(
            INCOMPLETE_SIGNATURE,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        )
    lines: list[str] = []
    for name in signed_headers:
        values = get(name)
        if values is None:
            # [inferred wording] AWS's text for a listed-but-absent header is not recorded.
            raise SigV4Error(
                INCOMPLETE_SIGNATURE,
                f"Authorization header requires '{name}' header to be present because it is "
                "listed in SignedHeaders.",
            )
        value = trim(values[0]) if len(values) == 1 else ",".join(trim(v) for v in values)
        lines.append(f"{name}:{value}\n")
    return "".join(lines)


def _payload_hash(
    body: bytes, signed_headers: tuple[str, ...], get: Callable[[str], list[str] | None]
) -> str:
    """Hex SHA-256 of the body, cross-checked with a signed x-amz-content-sha256."""
    actual = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
    if "x-amz-content-sha256" not in signed_headers:
        return actual
    claimed = (get("x-amz-content-sha256") or [""])[0].strip()
    if claimed == _UNSIGNED_PAYLOAD:
        # [inferred wording] this service insists on a signed body.
        raise SigV4Error(
            INVALID_SIGNATURE, "UNSIGNED-PAYLOAD is not accepted; sign the request body."
        )
    if claimed != actual:
        # [inferred wording] S3's text for XAmzContentSHA256Mismatch.
        raise SigV4Error(
            INVALID_SIGNATURE,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    return claimed


def _signature_matches(
    key: bytes,
    signature: str,
    canonical_uri: str,
    canonical_query: str,
    *,
    method: str,
    canonical_headers: str,
    signed_headers: str,
    payload_hash: str,
    amz_date: str,
    scope: str,
) -> bool:
    """Whether ``signature`` signs this canonical request (constant-time compare)."""
    try:
        to_sign = build_string_to_sign(
            method=method,
            canonical_uri=canonical_uri,
            canonical_query=canonical_query,
            canonical_headers=canonical_headers,
            signed_headers=signed_headers,
            payload_hash=payload_hash,
            amz_date=amz_date,
            scope=scope,
        )
    except UnicodeEncodeError:
        return False
    expected = hmac.digest(key, to_sign, "sha256").hex()
    return signature.isascii() and hmac.compare_digest(expected, signature)


class Verifier:
    """Verifies request signatures against a key lookup, within ``max_skew_s`` of the
    caller's clock, with an LRU of signing keys.

    A signing key depends only on (secret, date, region), so it is derived once per day
    per key and region; the cache holds at most ``key_cache_size`` keys. Not thread
    safe: use one per event loop.
    """

    def __init__(
        self,
        lookup: Callable[[str], Credential | None],
        *,
        max_skew_s: float = 300.0,
        key_cache_size: int = 256,
    ) -> None:
        if key_cache_size < 1:
            raise ValueError("key_cache_size must be at least 1")
        self._lookup = lookup
        self._max_skew_s = max_skew_s
        self._cache_size = key_cache_size
        self._keys: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()

    def _signing_key(self, secret: str, date: str, region: str) -> bytes:
        cache_key = (secret, date, region)
        key = self._keys.get(cache_key)
        if key is not None:
            self._keys.move_to_end(cache_key)
            return key
        key = derive_key(secret, date, region)
        self._keys[cache_key] = key
        if len(self._keys) > self._cache_size:
            self._keys.popitem(last=False)
        return key

    def verify(
        self,
        *,
        method: str,
        raw_path: str,
        query_string: str,
        headers: Mapping[str, str],
        body: bytes,
        parsed: ParsedAuthorization,
        now: float,
    ) -> Principal:
        """Check a parsed request signature; return who signed it.

        ``raw_path`` is the path exactly as received, without the query; ``query_string`` is
        the raw query without ``?``. ``headers`` may use any key case (aiohttp's
        ``CIMultiDictProxy`` or a plain mapping). ``body`` is the exact body bytes.

        Checks, in order, each raising :class:`SigV4Error`: the access key is known
        (``UnrecognizedClientException``); ``X-Amz-Date`` is present, well formed and on
        the scope date (``IncompleteSignatureException``); ``host`` is signed and every
        signed header is present (``IncompleteSignatureException``); the date is within
        ``max_skew_s`` of ``now`` (``InvalidSignatureException``); a signed
        ``x-amz-content-sha256`` matches the body and is not ``UNSIGNED-PAYLOAD``
        (``InvalidSignatureException``); the signature matches
        (``InvalidSignatureException``, compared in constant time). The signature may
        cover the AWS canonical path and query (dot segments and empty segments removed,
        double-encoded, parameters sorted), or the path and query exactly as received,
        which is what ``curl --aws-sigv4`` signs.
        """
        credential = self._lookup(parsed.access_key_id)
        if credential is None:
            raise SigV4Error(UNRECOGNIZED_CLIENT, _INVALID_TOKEN_MESSAGE)
        get = _header_table(headers)
        stamp, when = _request_time(get("x-amz-date"), parsed.date)
        canonical_headers = _canonical_headers(parsed.signed_headers, get)
        _check_fresh(stamp, when, now, self._max_skew_s)
        payload_hash = _payload_hash(body, parsed.signed_headers, get)
        key = self._signing_key(credential.secret_access_key, parsed.date, parsed.region)
        matches = partial(
            _signature_matches,
            key,
            parsed.signature,
            method=method,
            canonical_headers=canonical_headers,
            signed_headers=";".join(parsed.signed_headers),
            payload_hash=payload_hash,
            amz_date=stamp,
            scope=f"{parsed.date}/{parsed.region}/{SERVICE}/{TERMINATOR}",
        )
        canonical = (canonical_uri(raw_path), canonical_query(query_string))
        if not matches(*canonical):
            # curl (7.x --aws-sigv4) signs the path and query exactly as sent, without
            # normalising, double-encoding or sorting; give such requests a second chance.
            literal = (raw_path or "/", query_string)
            if literal == canonical or not matches(*literal):
                raise SigV4Error(INVALID_SIGNATURE, _MISMATCH_MESSAGE)
        return Principal(credential.access_key_id, credential.account_id, parsed.region)
