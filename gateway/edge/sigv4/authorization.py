"""Parsing the ``Authorization: AWS4-HMAC-SHA256 ...`` header, without the request.

Cheap and independent of the body: the gateway calls ``parse_authorization`` first, so
unsigned or malformed requests are refused before the body is read. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from gateway.edge.sigv4.canonical import ALGORITHM, SERVICE, TERMINATOR
from gateway.edge.sigv4.errors import INCOMPLETE_SIGNATURE, MISSING_TOKEN, SigV4Error

_SCOPE_DATE_RE = re.compile(r"\d{8}")
_REGION_RE = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The parts of a well-formed ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


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
    if terminator != TERMINATOR:
        raise SigV4Error(
            INCOMPLETE_SIGNATURE,
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{terminator}'. ",
        )
    return access_key_id, date, region, service
