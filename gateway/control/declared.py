"""Endpoints that exist from start-up: those declared in the config file, and the demo.

Both are written into the registry like any other endpoint (one transaction each), so the
runtime serves them the same way and the control plane sees them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.sagemaker.names import Scope
from gateway.settings import EndpointDeclaration, Settings, endpoint_placement
from gateway.store.registry import EndpointRecord, Registry

# Recorded and shown as the model's image; the Python runtime serves any image name.
DEFAULT_IMAGE = "coldbrew/python:3.11"
VARIANT_NAME = "AllTraffic"


def declared_documents(
    endpoint: EndpointDeclaration,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CreateModel and CreateEndpointConfig documents a declared endpoint stands for.
    Model and config share the endpoint's name."""
    model = {
        "ModelName": endpoint.name,
        "PrimaryContainer": {
            "Image": DEFAULT_IMAGE,
            "ModelDataUrl": endpoint.model_path().resolve().as_uri(),
            "Environment": dict(endpoint.environment),
        },
    }
    config = {
        "EndpointConfigName": endpoint.name,
        "ProductionVariants": [
            {
                "VariantName": VARIANT_NAME,
                "ModelName": endpoint.name,
                "ServerlessConfig": {
                    "MemorySizeInMB": endpoint.memory_size_mb,
                    "MaxConcurrency": endpoint.max_concurrency,
                },
            }
        ],
    }
    return model, config


def deploy_declared(registry: Registry, settings: Settings, *, now: float) -> list[EndpointRecord]:
    """Deploy every endpoint the config file declares (creating or updating it)."""
    deployed = []
    for endpoint in settings.endpoints:
        account, region = endpoint_placement(settings, endpoint)
        model, config = declared_documents(endpoint)
        deployed.append(
            registry.deploy(
                Scope(account, region),
                model_name=endpoint.name,
                model_document=model,
                config_name=endpoint.name,
                config_document=config,
                endpoint_name=endpoint.name,
                now=now,
            )
        )
    return deployed


def deploy_demo(
    registry: Registry, settings: Settings, model_dir: Path, *, now: float
) -> EndpointRecord:
    """Deploy the demo endpoint in the first credential's account and the default region."""
    from gateway.control.demo import DEMO_ENDPOINT_NAME, demo_documents
    from gateway.settings import effective_credentials

    model, config = demo_documents(model_dir)
    scope = Scope(effective_credentials(settings)[0].account_id, settings.server.region)
    return registry.deploy(
        scope,
        model_name=DEMO_ENDPOINT_NAME,
        model_document=model,
        config_name=DEMO_ENDPOINT_NAME,
        config_document=config,
        endpoint_name=DEMO_ENDPOINT_NAME,
        now=now,
    )
