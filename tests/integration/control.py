"""Helpers for control-plane tests: boto3 sagemaker clients and a quick deploy."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from tests.support import MODELS


def control_client(
    url: str, *, access_key: str = "test", secret_key: str = "test", region: str = "us-east-1"
) -> Any:
    """A real boto3 sagemaker client; retries off, so each call is one request."""
    return boto3.client(
        "sagemaker",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def serverless_variant(model: str, memory: int = 1024, max_concurrency: int = 4) -> dict[str, Any]:
    return {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "ServerlessConfig": {"MemorySizeInMB": memory, "MaxConcurrency": max_concurrency},
    }


def create_model(sm: Any, name: str, model_dir: str = "echo", **extra: Any) -> None:
    container = {"Image": f"coldbrew/{model_dir}:1", "ModelDataUrl": str(MODELS / model_dir)}
    sm.create_model(ModelName=name, PrimaryContainer=container, **extra)


def deploy(sm: Any, name: str, model_dir: str = "echo", *, wait: bool = True) -> None:
    """Model, config and endpoint all called ``name``; waits for InService."""
    create_model(sm, name, model_dir)
    sm.create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=[serverless_variant(name)]
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name)
