"""What the registry hands out and raises: the stored records of models, endpoint configs
and endpoints, the registry's errors, and ``UNSET`` for arguments not given.

Records are frozen values read from one transaction's view; they never change after
they were read.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.sagemaker.names import Scope


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A stored model; ``document`` is the CreateModel request body as given."""

    scope: Scope
    name: str
    arn: str
    created: float
    document: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EndpointConfigRecord:
    """A stored endpoint config; ``document`` is the CreateEndpointConfig request body."""

    scope: Scope
    name: str
    arn: str
    created: float
    document: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """A stored endpoint.

    ``config_name`` and ``pending_config_name`` carry the config's name as the config
    record spells it. ``pending_config_name`` is set while an UpdateEndpoint to a new
    config is running.
    """

    scope: Scope
    name: str
    arn: str
    config_name: str
    status: str
    failure_reason: str | None
    created: float
    last_modified: float
    pending_config_name: str | None
    overrides: Mapping[str, Any] = field(default_factory=dict)


class RegistryError(Exception):
    """Base class of the registry's errors."""


class AlreadyExists(RegistryError):
    """A resource of this kind with this name (in any letter case) exists in the scope."""

    def __init__(self, kind: str, arn: str) -> None:
        super().__init__(f"{kind} already exists: {arn}")
        self.kind = kind
        self.arn = arn


class NotFound(RegistryError):
    """No resource of this kind and name (or ARN) exists in the scope."""

    def __init__(self, kind: str, arn: str) -> None:
        super().__init__(f"{kind} not found: {arn}")
        self.kind = kind
        self.arn = arn


class Unset(enum.Enum):
    """The type of ``UNSET``."""

    UNSET = enum.auto()


UNSET: Final = Unset.UNSET
"""Marks an ``update_endpoint`` argument that was not given (``None`` means clear it)."""
