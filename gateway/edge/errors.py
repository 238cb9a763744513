"""The one boundary where failures become wire errors: the table from worker and
authentication failures to SageMaker's errors, and how an error is written.

Two wire flavours exist (spec §2.3, §3.2): the control plane (AWS JSON 1.1) carries the
code only in the body's ``__type``; the runtime (REST-JSON) carries it in the
``x-amzn-ErrorType`` header and the body. ``error_response`` writes both correctly.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import orjson
from aiohttp import web

from gateway.edge.sigv4 import SigV4Error
from gateway.runtime.invoke import InvocationContext
from gateway.sagemaker.errors import (
    ServiceError,
    internal_failure,
    model_error,
    service_unavailable,
)
from workers import (
    PoolClosed,
    ResponseTooLarge,
    SetupFailed,
    SetupTimeout,
    WorkerBroken,
    WorkerError,
    WorkerOutOfDisk,
    WorkerOutOfMemory,
    WorkerTimeout,
)


class Flavor(enum.Enum):
    CONTROL = "control"  # POST / with X-Amz-Target, AWS JSON 1.1
    RUNTIME = "runtime"  # /endpoints/{name}/invocations, REST-JSON


# The real service's wording for a container that did not answer in time (spec §3.2).
TIMEOUT_MESSAGE: Final = (
    "Your invocation timed out while waiting for a response from container primary. "
    "Review the latency metrics for each container in Amazon CloudWatch, resolve the issue, "
    "and try again."
)


def _model_error(ctx: InvocationContext, status: int, message: str) -> ServiceError:
    return model_error(
        original_status=status,
        original_message=message,
        endpoint=ctx.endpoint_name or "",
        account=ctx.account_id or "",
        region=ctx.region or "",
    )


def worker_error(exc: WorkerError, ctx: InvocationContext) -> ServiceError:
    """The one table from worker failures to SageMaker errors.

    A worker that died or did not answer produced no HTTP status, so OriginalStatusCode is
    0, as the real service reports a container timeout. [U] The real code for a container
    that crashed mid-request is not confirmed; 0 is the honest "no response".
    """
    match exc:
        case WorkerOutOfMemory() | WorkerOutOfDisk():
            return _model_error(ctx, 0, f"The model container failed: {exc.message}.")
        case WorkerTimeout():
            return _model_error(ctx, 0, TIMEOUT_MESSAGE)
        case WorkerBroken():
            return _model_error(ctx, 0, f"The model container failed: {exc.message}.")
        case SetupFailed():
            return _model_error(ctx, 0, f"The model failed to load: {exc.message}")
        case ResponseTooLarge():
            return _model_error(
                ctx,
                0,
                f"The model's response of {exc.size} bytes is over the {exc.limit} byte limit.",
            )
        case SetupTimeout():
            return ServiceError(
                429,
                "ModelNotReadyException",
                f"The model for endpoint {ctx.endpoint_name} did not become ready within "
                f"{exc.timeout_s:g} seconds; retry later.",
            )
        case PoolClosed():
            return service_unavailable(str(exc))
    return internal_failure(ctx.request_id)


def auth_error(exc: SigV4Error) -> ServiceError:
    # Every authentication failure is a 403, so no unsigned request looks like a success
    # or a throttle (boto3 retries neither).
    return ServiceError(403, exc.code, exc.message)


def error_response(error: ServiceError, flavor: Flavor, request_id: str) -> web.Response:
    """The HTTP response for ``error`` in the given wire flavour."""
    body: dict[str, Any] = {"__type": error.code, "Message": error.message}
    body.update(error.members)
    headers = {"x-amzn-RequestId": request_id, **error.headers}
    if flavor is Flavor.CONTROL:
        content_type = "application/x-amz-json-1.1"
    else:
        content_type = "application/json"
        headers["x-amzn-ErrorType"] = error.code
    return web.Response(
        status=error.status, body=orjson.dumps(body), content_type=content_type, headers=headers
    )
