"""What every control-plane operation is given: the collaborators, and the call's scope
and time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock
from gateway.control.lifecycle import Lifecycle
from gateway.control.listing import InvalidQuery, InvalidToken, Listable, ListQuery, list_page
from gateway.runtime.deployments import Deployments
from gateway.sagemaker.errors import ServiceError, validation_exception
from gateway.sagemaker.names import Scope
from gateway.settings import QuotaSettings
from gateway.store.registry import Registry
from workers import PoolManager


@dataclass(frozen=True, slots=True)
class Services:
    registry: Registry
    deployments: Deployments
    lifecycle: Lifecycle
    pools: PoolManager
    quotas: QuotaSettings
    clock: Clock
    mb_per_vcpu: int = 1769

    def cpu_share(self, memory_mb: int) -> float:
        """The vCPU cap of a worker of ``memory_mb`` (capped at the host's CPUs)."""
        import os

        return min(memory_mb / self.mb_per_vcpu, float(os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class Call:
    """One control-plane call: whose resources it acts on, and when."""

    scope: Scope
    now: float


def tag_map(body: dict[str, Any]) -> dict[str, str]:
    """The request's ``Tags`` list as a mapping (a repeated key keeps its last value)."""
    return {str(tag["Key"]): str(tag.get("Value", "")) for tag in body.get("Tags") or []}


def without_tags(body: dict[str, Any]) -> dict[str, Any]:
    """The document to store: tags live beside it, not in it."""
    return {key: value for key, value in body.items() if key != "Tags"}


def listed(
    body: dict[str, Any],
    items: list[Listable],
    *,
    result_key: str,
    summary: Callable[[Any], dict[str, Any]],
    default_max_results: int = 10,
    sort_keys: tuple[str, ...] = ("Name", "CreationTime"),
) -> dict[str, Any]:
    """The output of a List operation: one page of ``items`` (each shown by ``summary``
    of its ``item``) under ``result_key``, and a NextToken when more remain. Bad queries
    and tokens are ValidationException."""
    try:
        query = ListQuery.from_request(
            body, default_max_results=default_max_results, sort_keys=sort_keys
        )
        chosen, token = list_page(items, query)
    except (InvalidQuery, InvalidToken) as error:
        raise validation_exception(str(error)) from None
    output: dict[str, Any] = {result_key: [summary(listable.item) for listable in chosen]}
    if token:
        output["NextToken"] = token
    return output


def not_found(kind: str, arn: str) -> ServiceError:
    """The real service's wording for a missing model, config or endpoint (spec §2.3)."""
    return validation_exception(f'Could not find {kind} "{arn}".')


def already_exists(kind: str, arn: str) -> ServiceError:
    return validation_exception(f'Cannot create already existing {kind} "{arn}".')
