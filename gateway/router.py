"""The front door: one catch-all route that sends each request to the control plane or
the runtime, and the one boundary where every failure becomes a wire error.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from gateway import errors
from gateway.control.api import ControlPlane
from gateway.errors import Flavor, ServiceError, error_response
from gateway.runtime import InvocationContext, Runtime
from gateway.sigv4 import SigV4Error
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

RUNTIME_PATH: Final = re.compile(
    r"/endpoints/(?P<name>[^/]*)/(?P<op>invocations|invocations-response-stream|async-invocations)"
)

# The real service's wording for a container that did not answer in time (spec §3.2).
TIMEOUT_MESSAGE: Final = (
    "Your invocation timed out while waiting for a response from container primary. "
    "Review the latency metrics for each container in Amazon CloudWatch, resolve the issue, "
    "and try again."
)


def _model_error(ctx: InvocationContext, status: int, message: str) -> ServiceError:
    return errors.model_error(
        original_status=status,
        original_message=message,
        endpoint=ctx.endpoint_name or "",
        account=ctx.account_id or "",
        region=ctx.region or "",
    )


def _worker_error(exc: WorkerError, ctx: InvocationContext) -> ServiceError:
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
            return errors.service_unavailable(str(exc))
    return errors.internal_failure(ctx.request_id)


def _auth_error(exc: SigV4Error) -> ServiceError:
    # Every authentication failure is a 403, so no unsigned request looks like a success
    # or a throttle (boto3 retries neither).
    return ServiceError(403, exc.code, exc.message)


# The RFC 4122 variant digit (binary 10xx) for each random hex digit.
_VARIANT_DIGIT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def random_request_id() -> str:
    """A random (version 4) UUID in its usual text form, as SageMaker's request ids are:
    what ``str(uuid.uuid4())`` gives, for a third of its cost (it is made per request)."""
    digits = os.urandom(16).hex()
    return (
        f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-"
        f"{_VARIANT_DIGIT[digits[16]]}{digits[17:20]}-{digits[20:]}"
    )


def make_dispatch(
    runtime: Runtime,
    control: ControlPlane,
    log: logging.Logger,
    new_request_id: Callable[[], str] = random_request_id,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Build the catch-all handler."""

    async def dispatch(request: web.Request) -> web.StreamResponse:
        ctx = InvocationContext(request_id=new_request_id())
        path = request.raw_path.partition("?")[0]
        match = RUNTIME_PATH.fullmatch(path)
        flavor = Flavor.RUNTIME if match or path != "/" else Flavor.CONTROL
        try:
            if request.method != "POST":
                raise ServiceError(
                    405, "UnknownOperationException", f"{request.method} {path} is not supported."
                )
            if flavor is Flavor.CONTROL:
                return await control.handle(request, ctx.request_id)
            if match is None:
                raise ServiceError(404, "UnknownOperationException", f"No operation at {path}.")
            if match["op"] != "invocations":
                raise errors.validation_error(
                    "Serverless endpoints support InvokeEndpoint only; "
                    f"{match['op']} is not available."
                )
            return await runtime.invoke(request, match["name"], ctx)
        except ServiceError as exc:
            return error_response(exc, flavor, ctx.request_id)
        except SigV4Error as exc:
            return error_response(_auth_error(exc), flavor, ctx.request_id)
        except WorkerError as exc:
            log.warning("%s: invocation %s failed: %s", ctx.endpoint_name, ctx.request_id, exc)
            return error_response(_worker_error(exc, ctx), flavor, ctx.request_id)
        except Exception:
            log.exception("request %s failed", ctx.request_id)
            return error_response(errors.internal_failure(ctx.request_id), flavor, ctx.request_id)

    return dispatch
