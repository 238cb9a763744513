"""The runtime's view of the registry: what each InService endpoint runs, resolved once
per write so an invocation resolves its endpoint with one dictionary lookup.

The control plane writes the registry, then calls ``refresh``; the runtime only calls
``resolve``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.registry import EndpointRecord, Registry, Scope
from workers import PoolLimits, WorkerSpec

PoolKey = tuple[str, str, str]


class DeploymentError(Exception):
    """The stored documents do not describe something this gateway can run."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything the runtime needs to serve one endpoint."""

    scope: Scope
    name: str
    variant_name: str
    max_concurrency: int
    memory_mb: int
    spec: WorkerSpec
    limits: PoolLimits

    @property
    def key(self) -> PoolKey:
        """The endpoint's identity for pools and admission: names are case-insensitive."""
        return (self.scope.account_id, self.scope.region, self.name.lower())


@dataclass(frozen=True, slots=True)
class PoolDefaults:
    """The gateway-wide part of every pool's limits."""

    idle_timeout_s: float
    invocation_timeout_s: float
    setup_timeout_s: float
    max_response_bytes: int


def model_dir_from_url(url: str) -> Path:
    """The local directory a ModelDataUrl names: an absolute path or a ``file://`` URL.

    Raises DeploymentError for anything else, or a directory that does not exist.
    """
    if url.startswith("file://"):
        path = Path(unquote(urlsplit(url).path))
    elif url.startswith("/"):
        path = Path(url)
    else:
        raise DeploymentError(f"ModelDataUrl {url!r} is not a local directory or file:// URL")
    if not path.is_dir():
        raise DeploymentError(f"ModelDataUrl {url!r}: {path} is not a directory")
    return path


def _container(model_document: Mapping[str, Any]) -> Mapping[str, Any]:
    container = model_document.get("PrimaryContainer")
    if container is None:
        containers = model_document.get("Containers") or []
        container = containers[0] if containers else None
    if not isinstance(container, Mapping):
        raise DeploymentError("the model has no PrimaryContainer")
    return container


def build_deployment(
    registry: Registry, endpoint: EndpointRecord, defaults: PoolDefaults
) -> Deployment:
    """Resolve an endpoint record through its config and model. Raises DeploymentError."""
    config = registry.get_endpoint_config(endpoint.scope, endpoint.config_name)
    if config is None:
        raise DeploymentError(f"endpoint config {endpoint.config_name!r} does not exist")
    variant = config.document["ProductionVariants"][0]
    serverless = variant.get("ServerlessConfig")
    if not isinstance(serverless, Mapping):
        raise DeploymentError(f"variant {variant.get('VariantName')!r} is not serverless")
    model = registry.get_model(endpoint.scope, str(variant.get("ModelName", "")))
    if model is None:
        raise DeploymentError(f"model {variant.get('ModelName')!r} does not exist")
    container = _container(model.document)
    model_dir = model_dir_from_url(str(container.get("ModelDataUrl", "")))
    max_concurrency = int(serverless["MaxConcurrency"])
    memory_mb = int(serverless["MemorySizeInMB"])
    label = f"{endpoint.scope.account_id}/{endpoint.scope.region}/{endpoint.name}"
    return Deployment(
        scope=endpoint.scope,
        name=endpoint.name,
        variant_name=str(variant["VariantName"]),
        max_concurrency=max_concurrency,
        memory_mb=memory_mb,
        spec=WorkerSpec(
            label=label,
            model_dir=model_dir,
            memory_mb=memory_mb,
            environment=dict(container.get("Environment") or {}),
        ),
        limits=PoolLimits(
            max_workers=max_concurrency,
            idle_timeout_s=defaults.idle_timeout_s,
            invocation_timeout_s=defaults.invocation_timeout_s,
            setup_timeout_s=defaults.setup_timeout_s,
            max_response_bytes=defaults.max_response_bytes,
        ),
    )


class Deployments:
    """InService endpoints by (account, region, lower-cased name)."""

    def __init__(self, registry: Registry, defaults: PoolDefaults, log: logging.Logger) -> None:
        self._registry = registry
        self._defaults = defaults
        self._log = log
        self._by_key: dict[PoolKey, Deployment] = {}

    def load_all(self) -> None:
        """Rebuild the view from the registry (at start). An endpoint that cannot be
        resolved is logged and left out, so one broken record cannot stop the gateway."""
        self._by_key.clear()
        for endpoint in self._registry.all_endpoints():
            self._put(endpoint)

    def refresh(self, scope: Scope, name: str) -> Deployment | None:
        """Re-read one endpoint after a write; returns its deployment if it serves."""
        key = (scope.account_id, scope.region, name.lower())
        self._by_key.pop(key, None)
        endpoint = self._registry.get_endpoint(scope, name)
        return self._put(endpoint) if endpoint is not None else None

    def _put(self, endpoint: EndpointRecord) -> Deployment | None:
        if endpoint.status != "InService":
            return None
        try:
            deployment = build_deployment(self._registry, endpoint, self._defaults)
        except (DeploymentError, KeyError, TypeError, ValueError, IndexError) as exc:
            self._log.error("endpoint %s cannot serve: %s", endpoint.arn, exc)
            return None
        self._by_key[deployment.key] = deployment
        return deployment

    def resolve(self, account_id: str, region: str, name: str) -> Deployment | None:
        """The deployment serving ``name`` in (account, region), or None."""
        return self._by_key.get((account_id, region, name.lower()))

    def all(self) -> list[Deployment]:
        return list(self._by_key.values())
