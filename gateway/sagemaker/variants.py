"""Production variants: what an endpoint config asks Coldbrew to run, parsed from its
document, with the rules SageMaker Serverless sets on it (memory sizes, concurrency,
what serverless excludes) and the instance types a real-time variant may name.

The control plane checks documents with these rules when they are created; the runtime
builds its deployments from the stored documents with the same parser. Shapes (types,
lengths, patterns, enums) are checked before these run; these rules raise
ValidationException with a message naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.sagemaker.errors import ServiceError, validation_exception

MEMORY_SIZES_MB: Final = (1024, 2048, 3072, 4096, 5120, 6144)

# Instance types an instance-based (real-time) variant may name, with the memory and
# vCPUs each worker of that variant gets: (memory MiB, vCPUs), as AWS publishes them for
# the general-purpose, compute- and memory-optimised families. GPU types are absent:
# workers run on CPUs only.
INSTANCE_TYPES: Final[Mapping[str, tuple[int, int]]] = {
    "ml.t2.medium": (4096, 2),
    "ml.t2.large": (8192, 2),
    "ml.t2.xlarge": (16384, 4),
    "ml.m5.large": (8192, 2),
    "ml.m5.xlarge": (16384, 4),
    "ml.m5.2xlarge": (32768, 8),
    "ml.m5.4xlarge": (65536, 16),
    "ml.c5.large": (4096, 2),
    "ml.c5.xlarge": (8192, 4),
    "ml.c5.2xlarge": (16384, 8),
    "ml.c5.4xlarge": (32768, 16),
    "ml.r5.large": (16384, 2),
    "ml.r5.xlarge": (32768, 4),
    "ml.r5.2xlarge": (65536, 8),
    "ml.m6i.large": (8192, 2),
    "ml.m6i.xlarge": (16384, 4),
    "ml.c6i.large": (4096, 2),
    "ml.c6i.xlarge": (8192, 4),
}


@dataclass(frozen=True, slots=True)
class ServerlessVariant:
    name: str
    model_name: str
    memory_mb: int
    max_concurrency: int
    provisioned_concurrency: int | None


@dataclass(frozen=True, slots=True)
class InstanceVariant:
    name: str
    model_name: str
    instance_type: str
    instance_count: int
    memory_mb: int
    vcpus: int


Variant = ServerlessVariant | InstanceVariant


def violation(value: object, path: str, constraint: str) -> ServiceError:
    return validation_exception(
        f"1 validation error detected: Value '{value}' at '{path}' failed to satisfy "
        f"constraint: {constraint}"
    )


def unsupported(feature: str, path: str) -> ServiceError:
    return validation_exception(
        f"{feature} is not supported for serverless endpoints (at '{path}')."
    )


# Members of CreateEndpointConfig that SageMaker Serverless excludes, with how to say so.
_EXCLUDED_CONFIG_MEMBERS: Final = {
    "DataCaptureConfig": ("Data capture", "dataCaptureConfig"),
    "KmsKeyId": ("A KMS key", "kmsKeyId"),
    "VpcConfig": ("VPC configuration", "vpcConfig"),
    "AsyncInferenceConfig": ("Asynchronous inference", "asyncInferenceConfig"),
    "ExplainerConfig": ("Online explainability", "explainerConfig"),
    "ShadowProductionVariants": ("Shadow variants", "shadowProductionVariants"),
}
# Members of a ProductionVariant that only instance-based variants may use.
_INSTANCE_ONLY: Final = (
    "InstanceType",
    "InitialInstanceCount",
    "AcceleratorType",
    "VolumeSizeInGB",
    "ManagedInstanceScaling",
    "InstancePools",
    "CapacityReservationConfig",
)


def parse_config(document: Mapping[str, Any]) -> Variant:
    """The one production variant of a CreateEndpointConfig document. Raises
    ValidationException for anything Coldbrew cannot run or serverless excludes."""
    for member, (feature, path) in _EXCLUDED_CONFIG_MEMBERS.items():
        if document.get(member) is not None:
            raise unsupported(feature, path)
    if document.get("EnableNetworkIsolation"):
        raise unsupported("Network isolation", "enableNetworkIsolation")
    variants: Sequence[Mapping[str, Any]] = document["ProductionVariants"]
    if len(variants) != 1:
        raise violation(
            len(variants),
            "productionVariants",
            "Member must have exactly 1 production variant: multiple production variants "
            "are not supported for serverless endpoints",
        )
    return parse_variant(variants[0], "productionVariants.1.member")


def parse_variant(variant: Mapping[str, Any], path: str) -> Variant:
    name = str(variant["VariantName"])
    model_name = variant.get("ModelName")
    if not model_name:
        raise violation(None, f"{path}.modelName", "Member must not be null")
    if variant.get("AcceleratorType") is not None:
        raise unsupported("Elastic Inference accelerators", f"{path}.acceleratorType")
    serverless = variant.get("ServerlessConfig")
    instance_type = variant.get("InstanceType")
    if serverless is not None and instance_type is not None:
        raise validation_exception(
            f"A production variant may have a ServerlessConfig or an InstanceType, not both "
            f"(at '{path}')."
        )
    if serverless is not None:
        for member in _INSTANCE_ONLY:
            if variant.get(member) is not None:
                raise unsupported(member, f"{path}.{member[0].lower()}{member[1:]}")
        return _serverless(name, str(model_name), serverless, f"{path}.serverlessConfig")
    if instance_type is None:
        raise validation_exception(
            f"A production variant needs a ServerlessConfig or an InstanceType (at '{path}')."
        )
    return _instance(name, str(model_name), variant, path)


def _serverless(
    name: str, model_name: str, config: Mapping[str, Any], path: str
) -> ServerlessVariant:
    memory = int(config["MemorySizeInMB"])
    if memory not in MEMORY_SIZES_MB:
        raise violation(
            memory,
            f"{path}.memorySizeInMB",
            "Member must be one of " + ", ".join(str(m) for m in MEMORY_SIZES_MB),
        )
    maximum = int(config["MaxConcurrency"])
    provisioned = config.get("ProvisionedConcurrency")
    check_provisioned(provisioned, maximum, f"{path}.provisionedConcurrency")
    return ServerlessVariant(
        name, model_name, memory, maximum, None if provisioned is None else int(provisioned)
    )


def check_provisioned(provisioned: object, maximum: int, path: str) -> None:
    """ProvisionedConcurrency must not exceed MaxConcurrency (spec §5.3)."""
    if isinstance(provisioned, int) and provisioned > maximum:
        raise violation(
            provisioned,
            path,
            f"Member must have value less than or equal to MaxConcurrency ({maximum})",
        )


def _instance(name: str, model_name: str, variant: Mapping[str, Any], path: str) -> InstanceVariant:
    instance_type = str(variant["InstanceType"])
    if instance_type not in INSTANCE_TYPES:
        raise violation(
            instance_type,
            f"{path}.instanceType",
            "Member must be an instance type Coldbrew runs: " + ", ".join(INSTANCE_TYPES),
        )
    count = variant.get("InitialInstanceCount")
    if count is None:
        raise violation(None, f"{path}.initialInstanceCount", "Member must not be null")
    memory, vcpus = INSTANCE_TYPES[instance_type]
    return InstanceVariant(name, model_name, instance_type, int(count), memory, vcpus)


def model_container(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The container of a stored (already checked) model document."""
    primary = document.get("PrimaryContainer")
    if primary is not None:
        return dict(primary)
    return dict(document["Containers"][0])


def effective_variant(variant: Variant, overrides: Mapping[str, Any]) -> Variant:
    """The variant with what UpdateEndpointWeightsAndCapacities changed applied."""
    change = overrides.get(variant.name) or {}
    if isinstance(variant, ServerlessVariant):
        update = change.get("ServerlessUpdateConfig") or {}
        return ServerlessVariant(
            variant.name,
            variant.model_name,
            variant.memory_mb,
            int(update.get("MaxConcurrency", variant.max_concurrency)),
            update.get("ProvisionedConcurrency", variant.provisioned_concurrency),
        )
    count = change.get("DesiredInstanceCount")
    if count is None:
        return variant
    return InstanceVariant(
        variant.name,
        variant.model_name,
        variant.instance_type,
        int(count),
        variant.memory_mb,
        variant.vcpus,
    )
