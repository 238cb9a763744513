"""Authenticate a request: SigV4 over the exact body, read within its size limit.

The Authorization header is parsed before the body is read, so an unsigned request is
refused without reading its payload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from gateway.edge.sigv4 import Verifier, parse_authorization
from gateway.sagemaker.errors import ServiceError, request_timeout, validation_error
from gateway.sagemaker.names import Scope


async def read_body(
    request: web.Request,
    limit: int,
    timeout_s: float,
    field: str = "body",
    error: Callable[[str], ServiceError] = validation_error,
) -> bytes:
    """Read the whole request body within ``timeout_s``, refusing one over ``limit`` bytes
    without reading more than ``limit + 1`` of it. Raises ``error`` (by default the
    runtime's ValidationError) naming ``field``, or RequestTimeoutException (408) when the
    client is too slow."""
    if request.content.is_eof():
        # The whole body has arrived with the headers (the usual case): no wait, no timer.
        return await _read_within(request, limit, field, error)
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_within(request, limit, field, error)
    except TimeoutError:
        raise request_timeout(
            f"The request body was not received within {timeout_s:g} seconds"
        ) from None


async def _read_within(
    request: web.Request, limit: int, field: str, error: Callable[[str], ServiceError]
) -> bytes:
    def too_large() -> ServiceError:
        return error(
            f"1 validation error detected: Value at '{field}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {limit}"
        )

    length = request.content_length
    if length is not None:
        if length > limit:
            raise too_large()
        return await request.content.readexactly(length) if length else b""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def authenticate(
    request: web.Request,
    verifier: Verifier,
    *,
    now: float,
    body_limit: int,
    body_timeout_s: float,
    error: Callable[[str], ServiceError] = validation_error,
) -> tuple[Scope, bytes]:
    """Verify the request's signature; return the scope the caller acts in (the signing
    key's account, the credential scope's region) and the body.

    Raises SigV4Error for a missing or bad signature and ServiceError for a body over
    ``body_limit`` or not received within ``body_timeout_s``.
    """
    parsed = parse_authorization(request.headers.get("Authorization"))
    body = await read_body(request, body_limit, body_timeout_s, error=error)
    # The path exactly as received: yarl's parts may decode or re-encode it.
    raw_path, _, query = request.raw_path.partition("?")
    signer = verifier.verify(
        method=request.method,
        raw_path=raw_path,
        query_string=query,
        headers=request.headers,
        body=body,
        parsed=parsed,
        now=now,
    )
    return Scope(signer.account_id, signer.region), body
