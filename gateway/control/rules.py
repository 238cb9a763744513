"""Semantic rules of the control plane beyond shapes and variants: what a CreateModel
document must hold for Coldbrew to run it, and what SageMaker Serverless excludes.

Shapes (types, lengths, patterns, enums) are checked before these run; these rules
raise ValidationException with a message naming the field. Endpoint configs are checked
by ``gateway.sagemaker.variants``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.sagemaker.errors import validation_exception
from gateway.sagemaker.variants import unsupported, violation
from gateway.store.artifacts import ArtifactError, check_url


def check_model(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The container a CreateModel document runs. Raises ValidationException for what
    Coldbrew cannot run (model packages, multi-model, pipelines) or serverless excludes."""
    if document.get("VpcConfig") is not None:
        raise unsupported("VPC configuration", "vpcConfig")
    # EnableNetworkIsolation is honoured: the model's workers get a network namespace
    # with loopback only (see workers.child.sandbox).
    containers = document.get("Containers")
    primary = document.get("PrimaryContainer")
    if primary is not None and containers:
        raise validation_exception("Specify PrimaryContainer or Containers, not both.")
    if containers is not None and len(containers) > 1:
        raise unsupported("More than one container (an inference pipeline)", "containers")
    container: Mapping[str, Any] | None = (
        primary if primary is not None else (containers[0] if containers else None)
    )
    path = "primaryContainer" if primary is not None else "containers.1.member"
    if container is None:
        raise violation(None, "primaryContainer", "Member must not be null")
    if container.get("ModelPackageName") is not None:
        raise validation_exception(
            f"Model packages are not supported by Coldbrew (at '{path}.modelPackageName'); "
            "give Image and ModelDataUrl."
        )
    if container.get("Mode") == "MultiModel":
        raise unsupported("Multi-model mode", f"{path}.mode")
    if container.get("ModelDataSource") is not None:
        raise unsupported("ModelDataSource", f"{path}.modelDataSource")
    url = container.get("ModelDataUrl")
    if not url:
        raise violation(None, f"{path}.modelDataUrl", "Member must not be null")
    try:
        check_url(str(url))
    except ArtifactError as error:
        raise validation_exception(f"{error.message} (at '{path}.modelDataUrl')") from None
    return container
