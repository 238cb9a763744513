"""AWS JSON 1.1 on the wire (spec §2): ``POST /`` with ``X-Amz-Target: SageMaker.<Op>``.

Parsing refuses what is not a JSON object with SerializationException and an unknown
target with UnknownOperationException; success is a 200 with the output object.
Timestamps in outputs are epoch-second numbers, as the real service sends them.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web

from gateway.errors import ServiceError

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
