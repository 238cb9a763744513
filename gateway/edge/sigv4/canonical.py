"""What signing and verifying share: the credential, the canonical request and the key.

Both sides build the string to sign with these functions, so a request made by ``sign``
always passes ``verify``, and both agree byte for byte with botocore's ``SigV4Auth`` for
the requests the SageMaker clients send. Pure: no I/O, no clock (times are passed in).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "sagemaker"
TERMINATOR = "aws4_request"
# A path made only of unreserved characters and '/', with no empty, '.' or '..'
# segment, is its own canonical URI: skip the normalise-and-quote work for it.
_PLAIN_PATH_RE = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)*/?")


@dataclass(frozen=True, slots=True)
class Credential:
    """A key pair known to the gateway and the account it belongs to."""

    access_key_id: str
    secret_access_key: str
    account_id: str


def canonical_uri(raw_path: str) -> str:
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


def canonical_query(query_string: str) -> str:
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


def trim(value: str) -> str:
    """Trim a header value and squeeze inner whitespace runs to one space."""
    return " ".join(value.split())


def format_amz_date(epoch: float) -> str:
    """The ``X-Amz-Date`` stamp (``YYYYMMDDTHHMMSSZ``, UTC) of epoch seconds."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def derive_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """The SigV4 signing key: an HMAC-SHA256 chain from ``"AWS4" + secret``."""
    key = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    for part in (region, service, TERMINATOR):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def build_string_to_sign(
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
