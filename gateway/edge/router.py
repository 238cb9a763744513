"""The front door: one catch-all route that sends each request to the control plane or
the runtime, with a request id, and writes every failure as the wire error
``gateway.edge.errors`` maps it to.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from gateway.edge.awsjson import ControlRequests
from gateway.edge.errors import Flavor, auth_error, error_response, worker_error
from gateway.edge.invocations import InvokeEndpoint
from gateway.edge.sigv4 import SigV4Error
from gateway.runtime.invoke import InvocationContext
from gateway.sagemaker.errors import ServiceError, internal_failure, validation_error
from workers import WorkerError

RUNTIME_PATH: Final = re.compile(
    r"/endpoints/(?P<name>[^/]*)/(?P<op>invocations|invocations-response-stream|async-invocations)"
)

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
    invoke: InvokeEndpoint,
    control: ControlRequests,
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
                raise validation_error(
                    "Serverless endpoints support InvokeEndpoint only; "
                    f"{match['op']} is not available."
                )
            return await invoke.handle(request, match["name"], ctx)
        except ServiceError as exc:
            return error_response(exc, flavor, ctx.request_id)
        except SigV4Error as exc:
            return error_response(auth_error(exc), flavor, ctx.request_id)
        except WorkerError as exc:
            log.warning("%s: invocation %s failed: %s", ctx.endpoint_name, ctx.request_id, exc)
            return error_response(worker_error(exc, ctx), flavor, ctx.request_id)
        except Exception:
            log.exception("request %s failed", ctx.request_id)
            return error_response(internal_failure(ctx.request_id), flavor, ctx.request_id)

    return dispatch
