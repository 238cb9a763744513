"""The control plane's front: operation name -> input shape -> handler.

An operation's input is checked against its shape, then handed to the operation with
the caller's scope and the time of the call. Handlers are plain functions; the few that
may wait (DescribeEndpoint) are coroutines. The edge speaks the wire (AWS JSON 1.1) and
authenticates the caller before a call reaches here.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from gateway.control import endpoints, resources, tags
from gateway.control.context import Call, Services
from gateway.control.schema import validate
from gateway.control.shapes import INPUT_SHAPES
from gateway.sagemaker.names import Scope

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
MAX_INPUT_BYTES: Final = 1024 * 1024


class ControlPlane:
    """Runs control-plane operations for authenticated callers."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def call(self, name: str, caller: Scope, body: dict[str, Any]) -> Output:
        """Run operation ``name`` (one of ``KNOWN``) on ``body``, its input object, for
        ``caller``; return its output object. Raises ServiceError."""
        body = validate(INPUT_SHAPES[name], body, root=name)
        call = Call(caller, self._services.clock.wall())
        outcome = OPERATIONS[name](self._services, call, body)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        return outcome
