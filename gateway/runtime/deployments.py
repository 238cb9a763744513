"""What each serving endpoint runs, and the runtime's view of them.

A ``Deployment`` is built from an endpoint's config and model documents plus the local
model directory its artifacts resolved to. The lifecycle builds deployments (resolving
artifacts can take I/O) and puts them in ``Deployments``; the runtime resolves an
invocation's endpoint there with one dictionary lookup.

Every deployment has a ``generation``: an update builds a new generation with a pool of
its own, so in-flight invocations finish on the old workers while new ones go to the new.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.sagemaker.names import Scope
from gateway.sagemaker.variants import (
    ServerlessVariant,
    Variant,
    effective_variant,
    model_container,
    parse_config,
)
from workers import PoolLimits, WorkerSpec

EndpointKey = tuple[str, str, str]
PoolKey = tuple[str, str, str, int]

# An instance-based endpoint queues requests for its workers instead of throttling at
# its instance count; this many requests per instance may wait before it throttles.
INSTANCE_QUEUE_PER_WORKER: Final = 8


@dataclass(frozen=True, slots=True)
class PoolDefaults:
    """The gateway-wide part of every pool's limits."""

    idle_timeout_s: float
    invocation_timeout_s: float
    setup_timeout_s: float
    max_response_bytes: int
    zygote_idle_timeout_s: float


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything the runtime needs to serve one endpoint."""

    scope: Scope
    name: str
    config_name: str
    variant: Variant
    image: str
    spec: WorkerSpec
    limits: PoolLimits
    generation: int

    @property
    def key(self) -> EndpointKey:
        """The endpoint's identity for admission: names are case-insensitive."""
        return endpoint_key(self.scope, self.name)

    @property
    def pool_key(self) -> PoolKey:
        return (*self.key, self.generation)

    @property
    def serverless(self) -> bool:
        return isinstance(self.variant, ServerlessVariant)

    @property
    def provisioned(self) -> int:
        """Workers kept warm, and region concurrency reserved, for this endpoint."""
        if isinstance(self.variant, ServerlessVariant):
            return self.variant.provisioned_concurrency or 0
        return 0

    @property
    def admission_limit(self) -> int:
        """Concurrent invocations admitted before throttling."""
        if isinstance(self.variant, ServerlessVariant):
            return self.variant.max_concurrency
        return self.variant.instance_count * INSTANCE_QUEUE_PER_WORKER


def endpoint_key(scope: Scope, name: str) -> EndpointKey:
    return (scope.account_id, scope.region, name.lower())


def build_deployment(
    *,
    scope: Scope,
    endpoint_name: str,
    config_name: str,
    config_document: Mapping[str, Any],
    model_document: Mapping[str, Any],
    model_dir: Path,
    overrides: Mapping[str, Any],
    defaults: PoolDefaults,
    generation: int,
) -> Deployment:
    """A deployment from stored documents (already validated when they were created)."""
    variant = effective_variant(parse_config(config_document), overrides)
    container = model_container(model_document)
    if isinstance(variant, ServerlessVariant):
        max_workers = variant.max_concurrency
        min_workers = variant.provisioned_concurrency or 0
    else:
        max_workers = min_workers = variant.instance_count
    return Deployment(
        scope=scope,
        name=endpoint_name,
        config_name=config_name,
        variant=variant,
        image=str(container.get("Image", "")),
        spec=WorkerSpec(
            label=f"{scope.account_id}/{scope.region}/{endpoint_name}",
            model_dir=model_dir,
            memory_mb=variant.memory_mb,
            environment=dict(container.get("Environment") or {}),
            account=scope.account_id,
            network_isolation=bool(model_document.get("EnableNetworkIsolation")),
        ),
        limits=PoolLimits(
            max_workers=max_workers,
            min_workers=min_workers,
            idle_timeout_s=defaults.idle_timeout_s,
            invocation_timeout_s=defaults.invocation_timeout_s,
            setup_timeout_s=defaults.setup_timeout_s,
            max_response_bytes=defaults.max_response_bytes,
            zygote_idle_timeout_s=defaults.zygote_idle_timeout_s,
        ),
        generation=generation,
    )


@dataclass(frozen=True, slots=True)
class EndpointTotals:
    """What an endpoint has served since the gateway started."""

    invocations: int
    billed_ms: int
    gb_seconds: float
    bytes_in: int
    bytes_out: int


class Deployments:
    """Serving deployments by endpoint key, and the source of fresh generations."""

    def __init__(self) -> None:
        self._by_key: dict[EndpointKey, Deployment] = {}
        self._generations = itertools.count(1)
        self._invocations: dict[EndpointKey, int] = {}
        self._usage_gb_s: dict[EndpointKey, float] = {}
        self._billed_ms: dict[EndpointKey, int] = {}
        self._bytes: dict[EndpointKey, tuple[int, int]] = {}
        self._reserved: dict[tuple[str, str], int] = {}

    def reserved(self, account_id: str, region: str) -> int:
        """Region concurrency reserved by provisioned concurrency in (account, region)."""
        return self._reserved.get((account_id, region), 0)

    def _reserve(self, deployment: Deployment, sign: int) -> None:
        scope = (deployment.scope.account_id, deployment.scope.region)
        self._reserved[scope] = self._reserved.get(scope, 0) + sign * deployment.provisioned

    def count_invocation(self, deployment: Deployment) -> None:
        """Count one admitted invocation of the endpoint (since the gateway started)."""
        key = deployment.key
        self._invocations[key] = self._invocations.get(key, 0) + 1

    def count_usage(
        self, deployment: Deployment, billed_ms: int, bytes_in: int, bytes_out: int
    ) -> None:
        """Add one answered invocation's billed model time (and its GB-seconds) and its
        payload bytes to the endpoint's totals."""
        key = deployment.key
        gb_s = billed_ms / 1000.0 * deployment.variant.memory_mb / 1024.0
        self._usage_gb_s[key] = self._usage_gb_s.get(key, 0.0) + gb_s
        self._billed_ms[key] = self._billed_ms.get(key, 0) + billed_ms
        received, sent = self._bytes.get(key, (0, 0))
        self._bytes[key] = (received + bytes_in, sent + bytes_out)

    def totals(self) -> list[tuple[EndpointKey, str, EndpointTotals]]:
        """Per endpoint key (and its name as spelled): the totals since the start."""
        rows = []
        for key, deployment in self._by_key.items():
            received, sent = self._bytes.get(key, (0, 0))
            totals = EndpointTotals(
                invocations=self._invocations.get(key, 0),
                billed_ms=self._billed_ms.get(key, 0),
                gb_seconds=self._usage_gb_s.get(key, 0.0),
                bytes_in=received,
                bytes_out=sent,
            )
            rows.append((key, deployment.name, totals))
        return rows

    def usage_gb_s(self, scope: Scope, name: str) -> float:
        return self._usage_gb_s.get(endpoint_key(scope, name), 0.0)

    def invocations(self, scope: Scope, name: str) -> int:
        return self._invocations.get(endpoint_key(scope, name), 0)

    def next_generation(self) -> int:
        return next(self._generations)

    def put(self, deployment: Deployment) -> Deployment | None:
        """Serve ``deployment`` from now on; return the one it replaces, if any."""
        previous = self._by_key.get(deployment.key)
        if previous is not None:
            self._reserve(previous, -1)
        self._by_key[deployment.key] = deployment
        self._reserve(deployment, +1)
        return previous

    def remove(self, scope: Scope, name: str) -> Deployment | None:
        """Stop serving the endpoint; return its deployment, if it had one."""
        for totals in (self._invocations, self._usage_gb_s, self._billed_ms, self._bytes):
            totals.pop(endpoint_key(scope, name), None)
        removed = self._by_key.pop(endpoint_key(scope, name), None)
        if removed is not None:
            self._reserve(removed, -1)
        return removed

    def get(self, scope: Scope, name: str) -> Deployment | None:
        return self._by_key.get(endpoint_key(scope, name))

    def resolve(self, account_id: str, region: str, name: str) -> Deployment | None:
        """The deployment serving ``name`` in (account, region), or None."""
        return self._by_key.get((account_id, region, name.lower()))

    def __iter__(self) -> Iterator[Deployment]:
        return iter(list(self._by_key.values()))
