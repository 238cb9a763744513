"""The control plane's front: operation name -> shape -> handler.

Every request is authenticated, its body parsed and checked against the operation's
input shape, and then handed to the operation with the caller's scope. Handlers are
plain functions; the few that may wait (DescribeEndpoint) are coroutines.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web

from gateway.auth import authenticate
from gateway.control import endpoints, resources, tags
from gateway.control.context import Call, Services
from gateway.control.protocol import operation_name, parse_body, success_response
from gateway.control.schema import validate
from gateway.control.shapes import INPUT_SHAPES
from gateway.errors import validation_exception
from gateway.registry import Scope
from gateway.sigv4 import Verifier

Output = dict[str, Any]
Handler = Callable[[Services, Call, dict[str, Any]], Output | Awaitable[Output]]

OPERATIONS: Final[Mapping[str, Handler]] = {
    "CreateModel": resources.create_model,
    "DescribeModel": resources.describe_model,
    "DeleteModel": resources.delete_model,
    "ListModels": resources.list_models,
    "CreateEndpointConfig": resources.create_endpoint_config,
    "DescribeEndpointConfig": resources.describe_endpoint_config,
    "DeleteEndpointConfig": resources.delete_endpoint_config,
    "ListEndpointConfigs": resources.list_endpoint_configs,
    "CreateEndpoint": endpoints.create_endpoint,
    "DescribeEndpoint": endpoints.describe_endpoint,
    "UpdateEndpoint": endpoints.update_endpoint,
    "UpdateEndpointWeightsAndCapacities": endpoints.update_weights_and_capacities,
    "DeleteEndpoint": endpoints.delete_endpoint,
    "ListEndpoints": endpoints.list_endpoints,
    "AddTags": tags.add_tags,
    "ListTags": tags.list_tags,
    "DeleteTags": tags.delete_tags,
}
KNOWN: Final = frozenset(OPERATIONS)
# Control-plane inputs are small (names, a few variants, 100 environment entries of at
# most 1 KiB, 50 tags); this bound only stops abuse.
MAX_CONTROL_BODY: Final = 1024 * 1024


class ControlPlane:
    """Serves ``POST /`` control-plane requests."""

    def __init__(self, services: Services, verifier: Verifier, *, body_timeout_s: float) -> None:
        self._services = services
        self._verifier = verifier
        self._body_timeout_s = body_timeout_s

    async def handle(self, request: web.Request, request_id: str) -> web.Response:
        """Run one operation. Raises ServiceError or SigV4Error; the router maps them."""
        name = operation_name(request.headers.get("X-Amz-Target"), KNOWN)
        principal, raw = await authenticate(
            request,
            self._verifier,
            now=self._services.clock.wall(),
            body_limit=MAX_CONTROL_BODY,
            body_timeout_s=self._body_timeout_s,
            error=validation_exception,
        )
        body = validate(INPUT_SHAPES[name], parse_body(raw), root=name)
        call = Call(Scope(principal.account_id, principal.region), self._services.clock.wall())
        outcome = OPERATIONS[name](self._services, call, body)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        return success_response(outcome, request_id)
