"""The control plane over HTTP, in AWS JSON 1.1 (spec §2): ``POST /`` with
``X-Amz-Target: SageMaker.<Op>``.

An unknown target is refused with UnknownOperationException before anything else; then
the caller is authenticated (SigV4 over the exact body), and a body that is not a JSON
object is refused with SerializationException. Success is a 200 with the output object.
Timestamps in outputs are epoch-second numbers, as the real service sends them.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web

from gateway.clock import Clock
from gateway.control.api import KNOWN, MAX_INPUT_BYTES, ControlPlane
from gateway.edge.auth import authenticate
from gateway.edge.sigv4 import Verifier
from gateway.sagemaker.errors import ServiceError, validation_exception

TARGET_PREFIX: Final = "SageMaker."
CONTENT_TYPE: Final = "application/x-amz-json-1.1"


def operation_name(target: str | None, known: frozenset[str]) -> str:
    """The operation an ``X-Amz-Target`` header names; raises UnknownOperationException."""
    if target is None or not target.startswith(TARGET_PREFIX):
        raise ServiceError(400, "UnknownOperationException", "Missing or unknown X-Amz-Target.")
    name = target.removeprefix(TARGET_PREFIX)
    if name not in known:
        raise ServiceError(
            400,
            "UnknownOperationException",
            f"Operation {name} is not supported by this gateway.",
        )
    return name


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's input object; raises SerializationException for anything else."""
    if not body.strip():
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ServiceError(
            400, "SerializationException", f"The request body is not valid JSON: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise ServiceError(400, "SerializationException", "The request body must be a JSON object.")
    return value


def success_response(output: dict[str, Any], request_id: str) -> web.Response:
    return web.Response(
        body=orjson.dumps(output),
        headers={"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id},
    )


class ControlRequests:
    """Serves ``POST /`` control-plane requests. Owns nothing."""

    def __init__(
        self, control: ControlPlane, *, verifier: Verifier, clock: Clock, body_timeout_s: float
    ) -> None:
        self._control = control
        self._verifier = verifier
        self._clock = clock
        self._body_timeout_s = body_timeout_s

    async def handle(self, request: web.Request, request_id: str) -> web.Response:
        """Run one operation. Raises ServiceError or SigV4Error; the router maps them."""
        name = operation_name(request.headers.get("X-Amz-Target"), KNOWN)
        caller, raw = await authenticate(
            request,
            self._verifier,
            now=self._clock.wall(),
            body_limit=MAX_INPUT_BYTES,
            body_timeout_s=self._body_timeout_s,
            error=validation_exception,
        )
        output = await self._control.call(name, caller, parse_body(raw))
        return success_response(output, request_id)
