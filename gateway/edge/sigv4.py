"""AWS Signature Version 4 for the ``sagemaker`` signing name: verifying and signing.

Both sides build the canonical request with the same helpers, so a request made by
:func:`sign` always passes :func:`verify`, and both agree byte for byte with botocore's
``SigV4Auth`` (the ground truth) for the requests the SageMaker clients send.

Verifying (gateway, every request):

* :func:`parse_authorization` is cheap and needs no body: call it first so that unsigned
  or malformed requests are refused before the body is read.
* :class:`Verifier` (preferred) or the stateless :func:`verify` then checks the rest and
  returns the :class:`Principal` that signed the request.

Every refusal is a :class:`SigV4Error` carrying the AWS error code and an AWS-style
message; mapping it to an HTTP status and body is the caller's job.

Signing (clients, load generator): :func:`sign` returns the headers to send.

Only ``hashlib``/``hmac`` are used; nothing here does I/O or reads the clock (``now`` is
always passed in).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from urllib.parse import quote, unquote, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "ALGORITHM",
    "SERVICE",
    "Credential",
    "ParsedAuthorization",
    "Principal",
    "SigV4Error",
    "Verifier",
    "parse_authorization",
    "sign",
    "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "sagemaker"
_TERMINATOR = "aws4_request"
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

MISSING_TOKEN = "MissingAuthenticationTokenException"
INCOMPLETE_SIGNATURE = "IncompleteSignatureException"
UNRECOGNIZED_CLIENT = "UnrecognizedClientException"
INVALID_SIGNATURE = "InvalidSignatureException"

_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE_RE = re.compile(r"\d{8}")
_REGION_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
# A path made only of unreserved characters and '/', with no empty, '.' or '..'
# segment, is its own canonical URI: skip the normalise-and-quote work for it.
_PLAIN_PATH_RE = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)*/?")

# Headers `sign` signs besides host and x-amz-date (by lowercase name or prefix);
# the same choice botocore makes for the headers SageMaker clients send.
_SIGNED_NAMES = frozenset({"content-type", "accept", "x-amz-target", "x-amz-security-token"})
_SIGNED_PREFIXES = ("x-amzn-sagemaker-", "x-amz-")
# Headers `sign` sets itself; a caller's copy (any case) is replaced.
_SIGN_OWNED = frozenset({"host", "x-amz-date", "authorization", "x-amz-security-token"})

_INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."
_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class Credential:
    """A key pair known to the gateway and the account it belongs to."""

    access_key_id: str
    secret_access_key: str
    account_id: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who signed a verified request; ``region`` comes from the credential scope."""

    access_key_id: str
    account_id: str
    region: str


class SigV4Error(Exception):
    """A request refused by SigV4 checks.

    ``code`` is one of ``MissingAuthenticationTokenException``,
    ``IncompleteSignatureException``, ``UnrecognizedClientException`` or
    ``InvalidSignatureException``; ``message`` is the AWS-style text for the client.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The parts of a well-formed ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


# --------------------------------------------------------------------------- parsing


def parse_authorization(header: str | None) -> ParsedAuthorization:
    """Parse an ``Authorization`` header without looking at anything else.

    Raises :class:`SigV4Error` with ``MissingAuthenticationTokenException`` when the
    header is absent or blank, and ``IncompleteSignatureException`` when it is
    malformed: another algorithm, a missing or empty ``Credential``/``SignedHeaders``/
    ``Signature``, a credential scope without exactly five parts, a bad scope date or
    region, a terminator other than ``aws4_request`` or a service other than
    ``sagemaker``.
    """
    if header is None or not header.strip():
        raise SigV4Error(MISSING_TOKEN, "Missing Authentication Token")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        # [inferred wording] AWS's exact text for a foreign algorithm is not recorded.
        raise SigV4Error(INCOMPLETE_SIGNATURE, f"Unsupported AWS 'algorithm': '{algorithm}'.")
    params = _parse_params(header, rest)
    missing = [
        f"Authorization header requires '{name}' parameter. "
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    if missing:
        raise SigV4Error(INCOMPLETE_SIGNATURE, "".join(missing) + f"Authorization={header}")
    access_key_id, date, region, service = _parse_scope(params["Credential"])
    return ParsedAuthorization(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=tuple(params["SignedHeaders"].split(";")),
        signature=params["Signature"],
    )


def _parse_params(header: str, rest: str) -> dict[str, str]:
    """Split ``k=v, k=v`` pairs (spaces after commas optional, unknown keys kept)."""
    params: dict[str, str] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq:
            # AWS hashes the header rather than echoing something it could not parse.
            raw = header.encode("utf-8", "replace")
            digest = base64.b64encode(hashlib.sha256(raw).digest()).decode()
            raise SigV4Error(
                INCOMPLETE_SIGNATURE,
                "Invalid key=value pair (missing equal-sign) in Authorization header "
                f"(hashed with SHA-256 and encoded with Base64): '{digest}'.",
            )
        params[key.strip()] = value.strip()
    return params


def _parse_scope(credential: str) -> tuple[str, str, str, str]:
    """Split ``AKID/date/region/service/aws4_request`` and check each scope part."""
    parts = credential.split("/")
    if len(parts) != 5:
        raise SigV4Error(
            INCOMPLETE_SIGNATURE,
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{credential}'",
        )
    access_key_id, date, region, service, terminator = parts
    if not _SCOPE_DATE_RE.fullmatch(date):
        # [inferred wording]
        raise SigV4Error(
            INCOMPLETE_SIGNATURE,
            f"Credential should be scoped to a valid date in YYYYMMDD form, not '{date}'. ",
        )
    if not _REGION_RE.fullmatch(region):
        raise SigV4Error(INCOMPLETE_SIGNATURE, "Credential should be scoped to a valid region. ")
    if service != SERVICE:
        raise SigV4Error(
            INCOMPLETE_SIGNATURE, f"Credential should be scoped to correct service: '{SERVICE}'. "
        )
    if terminator != _TERMINATOR:
        raise SigV4Error(
            INCOMPLETE_SIGNATURE,
            f"Credential should be scoped with a valid terminator: '{_TERMINATOR}', "
            f"not '{terminator}'. ",
        )
    return access_key_id, date, region, service


# --------------------------------------------------------------- canonical request


def _canonical_uri(raw_path: str) -> str:
    """The canonical URI for a path as sent on the wire (already percent-encoded).

    Like every AWS SDK for non-S3 services: drop empty, ``.`` and ``..`` segments
    (RFC 3986 dot-segment removal plus slash squeezing), then percent-encode the result
    once more, keeping ``/`` and ``~``.
    """
    if not raw_path:
        return "/"
    if _PLAIN_PATH_RE.fullmatch(raw_path):
        return raw_path
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    lead = "/" if raw_path.startswith("/") else ""
    trail = "/" if raw_path.endswith("/") and segments else ""
    return quote(lead + "/".join(segments) + trail, safe="/~")


def _canonical_query(query_string: str) -> str:
    """Sorted ``name=value`` pairs, each decoded and re-encoded with AWS's rules."""
    if not query_string:
        return ""
    pairs: list[tuple[str, str]] = []
    for item in query_string.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="~"), quote(unquote(value), safe="~")))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def _trim(value: str) -> str:
    """Trim a header value and squeeze inner whitespace runs to one space."""
    return " ".join(value.split())


def _amz_date(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def _derive_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """The SigV4 signing key: an HMAC-SHA256 chain from ``"AWS4" + secret``."""
    key = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    for part in (region, service, _TERMINATOR):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def _string_to_sign(
    *,
    method: str,
    canonical_uri: str,
    canonical_query: str,
    canonical_headers: str,
    signed_headers: str,
    payload_hash: str,
    amz_date: str,
    scope: str,
) -> bytes:
    """The SigV4 string to sign; ``canonical_headers`` ends with its own newline.

    Raises ``UnicodeEncodeError`` when a header value cannot be turned back into the
    bytes that were on the wire.
    """
    canonical_request = (
        f"{method}\n{canonical_uri}\n{canonical_query}\n"
        f"{canonical_headers}\n{signed_headers}\n{payload_hash}"
    )
    # Servers decode undecodable header bytes with surrogateescape; encode them back
    # the same way so the hash covers the bytes the client signed.
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}".encode()


# ----------------------------------------------------------------------- verifying


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
            f"Signature expired: {stamp} is now earlier than {_amz_date(now - max_skew_s)} "
            f"({_amz_date(now)} - {_describe_skew(max_skew_s)})",
        )
    if when - now > max_skew_s:
        raise SigV4Error(
            INVALID_SIGNATURE,
            f"Signature not yet current: {stamp} is still later than "
            f"{_amz_date(now + max_skew_s)} ({_amz_date(now)} + {_describe_skew(max_skew_s)})",
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
        value = _trim(values[0]) if len(values) == 1 else ",".join(_trim(v) for v in values)
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
        to_sign = _string_to_sign(
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


def _verify(
    *,
    method: str,
    raw_path: str,
    query_string: str,
    headers: Mapping[str, str],
    body: bytes,
    parsed: ParsedAuthorization,
    lookup: Callable[[str], Credential | None],
    now: float,
    max_skew_s: float,
    derive: Callable[[str, str, str], bytes],
) -> Principal:
    credential = lookup(parsed.access_key_id)
    if credential is None:
        raise SigV4Error(UNRECOGNIZED_CLIENT, _INVALID_TOKEN_MESSAGE)
    get = _header_table(headers)
    stamp, when = _request_time(get("x-amz-date"), parsed.date)
    canonical_headers = _canonical_headers(parsed.signed_headers, get)
    _check_fresh(stamp, when, now, max_skew_s)
    payload_hash = _payload_hash(body, parsed.signed_headers, get)
    key = derive(credential.secret_access_key, parsed.date, parsed.region)
    matches = partial(
        _signature_matches,
        key,
        parsed.signature,
        method=method,
        canonical_headers=canonical_headers,
        signed_headers=";".join(parsed.signed_headers),
        payload_hash=payload_hash,
        amz_date=stamp,
        scope=f"{parsed.date}/{parsed.region}/{SERVICE}/{_TERMINATOR}",
    )
    canonical = (_canonical_uri(raw_path), _canonical_query(query_string))
    if not matches(*canonical):
        # curl (7.x --aws-sigv4) signs the path and query exactly as sent, without
        # normalising, double-encoding or sorting; give such requests a second chance.
        literal = (raw_path or "/", query_string)
        if literal == canonical or not matches(*literal):
            raise SigV4Error(INVALID_SIGNATURE, _MISMATCH_MESSAGE)
    return Principal(credential.access_key_id, credential.account_id, parsed.region)


def verify(
    *,
    method: str,
    raw_path: str,
    query_string: str,
    headers: Mapping[str, str],
    body: bytes,
    parsed: ParsedAuthorization,
    lookup: Callable[[str], Credential | None],
    now: float,
    max_skew_s: float,
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

    Stateless: derives the signing key on every call. :class:`Verifier` caches keys.
    """
    return _verify(
        method=method,
        raw_path=raw_path,
        query_string=query_string,
        headers=headers,
        body=body,
        parsed=parsed,
        lookup=lookup,
        now=now,
        max_skew_s=max_skew_s,
        derive=_derive_key,
    )


class Verifier:
    """:func:`verify` bound to a key lookup and skew, with an LRU of signing keys.

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
        key = _derive_key(secret, date, region)
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
        """Same contract as the module-level :func:`verify`."""
        return _verify(
            method=method,
            raw_path=raw_path,
            query_string=query_string,
            headers=headers,
            body=body,
            parsed=parsed,
            lookup=self._lookup,
            now=now,
            max_skew_s=self._max_skew_s,
            derive=self._signing_key,
        )


# ------------------------------------------------------------------------- signing


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
    amz_date = _amz_date(now)
    out = {k: v for k, v in headers.items() if k.lower() not in _SIGN_OWNED}
    out["Host"] = host
    out["X-Amz-Date"] = amz_date
    if session_token is not None:
        out["X-Amz-Security-Token"] = session_token
    to_sign: dict[str, list[str]] = {}
    for name, value in out.items():
        lname = name.lower()
        if lname in ("host", "x-amz-date") or _should_sign(lname):
            to_sign.setdefault(lname, []).append(_trim(value))
    names = sorted(to_sign)
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/{_TERMINATOR}"
    string_to_sign = _string_to_sign(
        method=method.upper(),
        canonical_uri=_canonical_uri(raw_path),
        canonical_query=_canonical_query(query),
        canonical_headers="".join(f"{n}:{','.join(to_sign[n])}\n" for n in names),
        signed_headers=";".join(names),
        payload_hash=hashlib.sha256(body).hexdigest(),
        amz_date=amz_date,
        scope=scope,
    )
    key = _derive_key(credential.secret_access_key, date, region, service)
    signature = hmac.digest(key, string_to_sign, "sha256").hex()
    out["Authorization"] = (
        f"{ALGORITHM} Credential={credential.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out
