"""CreateEndpoint, DescribeEndpoint, UpdateEndpoint, UpdateEndpointWeightsAndCapacities,
DeleteEndpoint and ListEndpoints.

Each operation checks and records the target state in one registry transaction, then
asks the lifecycle for the transition; it answers at once, as the real service does.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.control.context import Call, Services, already_exists, listed, not_found, tag_map
from gateway.control.listing import Listable
from gateway.sagemaker.errors import ServiceError, validation_exception
from gateway.sagemaker.names import arn
from gateway.sagemaker.variants import (
    InstanceVariant,
    ServerlessVariant,
    Variant,
    check_provisioned,
    effective_variant,
    model_container,
    parse_config,
)
from gateway.store.registry import AlreadyExists, EndpointRecord, NotFound

Output = dict[str, Any]

# DescribeEndpoint waits this long for a running transition to end before answering, so
# boto3's waiters (30 s between polls) see a fast model InService on their first poll.
DESCRIBE_SETTLE_S: Final = 2.0
TRANSITIONAL: Final = frozenset({"Creating", "Updating", "Deleting", "SystemUpdating"})


def _endpoint(services: Services, call: Call, name: str) -> EndpointRecord:
    record = services.registry.get_endpoint(call.scope, name)
    if record is None:
        raise not_found("endpoint", arn(call.scope, "endpoint", name))
    return record


def _config_variant(services: Services, call: Call, config_name: str) -> Variant:
    config = services.registry.get_endpoint_config(call.scope, config_name)
    if config is None:
        raise not_found("endpoint configuration", arn(call.scope, "endpoint-config", config_name))
    variant = parse_config(config.document)
    if services.registry.get_model(call.scope, variant.model_name) is None:
        raise not_found("model", arn(call.scope, "model", variant.model_name))
    return variant


def _serverless_count(services: Services, call: Call) -> int:
    count = 0
    for endpoint in services.registry.list_endpoints(call.scope):
        config = services.registry.get_endpoint_config(call.scope, endpoint.config_name)
        if config is None:
            continue
        variants = config.document.get("ProductionVariants") or [{}]
        count += variants[0].get("ServerlessConfig") is not None
    return count


def _check_reservation(services: Services, call: Call, name: str, variant: Variant) -> None:
    """Provisioned concurrency reserves region concurrency: all of it together may not
    exceed the region's total (quotas.region_concurrency)."""
    if not isinstance(variant, ServerlessVariant) or not variant.provisioned_concurrency:
        return
    current = services.deployments.get(call.scope, name)
    others = services.deployments.reserved(call.scope.account_id, call.scope.region)
    others -= current.provisioned if current is not None else 0
    limit = services.quotas.region_concurrency
    if others + variant.provisioned_concurrency > limit:
        raise ServiceError(
            400,
            "ResourceLimitExceeded",
            f"The account-level service limit 'Total concurrency that can be allocated "
            f"across all serverless endpoints' is {limit} Concurrency, with current "
            f"utilization of {others} Concurrency and a request delta of "
            f"{variant.provisioned_concurrency} Concurrency. Please use AWS Service Quotas "
            f"to request an increase for this quota.",
        )


def create_endpoint(services: Services, call: Call, body: dict[str, Any]) -> Output:
    name = body["EndpointName"]
    if services.registry.get_endpoint(call.scope, name) is not None:
        raise already_exists("endpoint", arn(call.scope, "endpoint", name))
    variant = _config_variant(services, call, body["EndpointConfigName"])
    _check_reservation(services, call, name, variant)
    limit = services.quotas.endpoints_per_region
    if isinstance(variant, ServerlessVariant) and _serverless_count(services, call) >= limit:
        # [U] the real message; this follows the wording of SageMaker's other quota errors.
        raise ServiceError(
            400,
            "ResourceLimitExceeded",
            f"The account-level service limit 'Number of serverless endpoints' is {limit} "
            f"Endpoints, with current utilization of {limit} Endpoints and a request delta "
            f"of 1 Endpoints. Please use AWS Service Quotas to request an increase for this "
            f"quota.",
        )
    try:
        record = services.registry.create_endpoint(
            call.scope, name, body["EndpointConfigName"], "Creating", call.now, tag_map(body)
        )
    except AlreadyExists as error:
        raise already_exists("endpoint", error.arn) from None
    except NotFound as error:
        raise not_found("endpoint configuration", error.arn) from None
    services.lifecycle.begin_create(call.scope, record.name)
    return {"EndpointArn": record.arn}


async def describe_endpoint(services: Services, call: Call, body: dict[str, Any]) -> Output:
    name = body["EndpointName"]
    await services.lifecycle.wait_settled(call.scope, name, DESCRIBE_SETTLE_S)
    return describe(services, _endpoint(services, call, name))


def describe(services: Services, record: EndpointRecord) -> Output:
    """The DescribeEndpoint output of a stored endpoint."""
    output: Output = {
        "EndpointName": record.name,
        "EndpointArn": record.arn,
        "EndpointConfigName": record.config_name,
        "EndpointStatus": record.status,
        "CreationTime": record.created,
        "LastModifiedTime": record.last_modified,
    }
    if record.failure_reason:
        output["FailureReason"] = record.failure_reason
    output["Coldbrew"] = _gateway_view(services, record)
    current = record.status not in ("Creating", "Failed")
    summary = _variant_summary(services, record, record.config_name, current=current)
    if summary is not None:
        output["ProductionVariants"] = [summary]
    if record.pending_config_name:
        pending = _variant_summary(services, record, record.pending_config_name, current=False)
        output["PendingDeploymentSummary"] = {
            "EndpointConfigName": record.pending_config_name,
            "ProductionVariants": [
                {
                    **pending,
                    "VariantStatus": [{"Status": "Updating", "StartTime": record.last_modified}],
                }
            ]
            if pending
            else [],
            "StartTime": record.last_modified,
        }
    return output


def _gateway_view(services: Services, record: EndpointRecord) -> Output:
    """What this gateway knows beyond the SageMaker shape (botocore drops it; the
    coldbrew CLI shows it): warm workers and invocations since the gateway started."""
    deployment = services.deployments.get(record.scope, record.name)
    pool = services.pools.get(deployment.pool_key) if deployment else None
    stats = pool.statistics() if pool else None
    view: Output = {
        "WarmWorkers": (stats.idle + stats.busy) if stats else 0,
        "BusyWorkers": stats.busy if stats else 0,
        "ColdStarts": stats.cold_starts if stats else 0,
        "ColdStartsByTier": dict(stats.cold_starts_by_tier) if stats else {},
        "ModelZygote": stats.model_zygote if stats else "none",
        "Invocations": services.deployments.invocations(record.scope, record.name),
        "GBSeconds": round(services.deployments.usage_gb_s(record.scope, record.name), 6),
        "ResourceLimits": {"Mode": services.pools.placement_mode},
    }
    if deployment is not None:
        view["ResourceLimits"].update(
            MemorySizeInMB=deployment.variant.memory_mb,
            VCpus=round(services.cpu_share(deployment.variant.memory_mb), 3),
        )
    return view


def _serverless_config(variant: ServerlessVariant) -> Output:
    config: Output = {
        "MemorySizeInMB": variant.memory_mb,
        "MaxConcurrency": variant.max_concurrency,
    }
    if variant.provisioned_concurrency is not None:
        config["ProvisionedConcurrency"] = variant.provisioned_concurrency
    return config


def _variant_summary(
    services: Services, record: EndpointRecord, config_name: str, *, current: bool
) -> Output | None:
    config = services.registry.get_endpoint_config(record.scope, config_name)
    if config is None:
        return None
    overrides = record.overrides if config_name == record.config_name else {}
    variant = effective_variant(parse_config(config.document), overrides)
    model = services.registry.get_model(record.scope, variant.model_name)
    image = str(model_container(model.document).get("Image", "")) if model else ""
    summary: Output = {
        "VariantName": variant.name,
        "DeployedImages": [
            {"SpecifiedImage": image, "ResolvedImage": image, "ResolutionTime": config.created}
        ],
        "CurrentWeight": 1.0,
        "DesiredWeight": 1.0,
    }
    if isinstance(variant, ServerlessVariant):
        summary["DesiredServerlessConfig"] = _serverless_config(variant)
        if current:
            summary["CurrentServerlessConfig"] = _serverless_config(variant)
    else:
        summary["DesiredInstanceCount"] = variant.instance_count
        if current:
            summary["CurrentInstanceCount"] = variant.instance_count
    return summary


def _check_updatable(record: EndpointRecord) -> None:
    if record.status in TRANSITIONAL:
        raise validation_exception(f'Cannot update in-progress endpoint "{record.arn}".')
    if record.status != "InService":
        # [U] the real wording; a Failed endpoint only accepts DeleteEndpoint.
        raise validation_exception(
            f'Cannot update endpoint "{record.arn}" in status {record.status}; '
            "delete it and create it again."
        )


def update_endpoint(services: Services, call: Call, body: dict[str, Any]) -> Output:
    record = _endpoint(services, call, body["EndpointName"])
    _check_updatable(record)
    old = effective_variant(_config_variant(services, call, record.config_name), record.overrides)
    new = _config_variant(services, call, body["EndpointConfigName"])
    _check_reservation(services, call, record.name, new)
    if isinstance(old, InstanceVariant) and isinstance(new, ServerlessVariant):
        # The real service refuses this with a validation error (spec §5.6) [U wording].
        raise validation_exception(
            "Updating an endpoint from instance-based (real-time) to serverless is not "
            "supported; create a new serverless endpoint instead."
        )
    policy = (body.get("DeploymentConfig") or {}).get("RollingUpdatePolicy")
    if policy is not None and isinstance(new, ServerlessVariant):
        raise validation_exception(
            "Rolling deployments are not supported for serverless endpoints "
            "(at 'deploymentConfig.rollingUpdatePolicy')."
        )
    services.registry.update_endpoint(
        call.scope,
        record.name,
        now=call.now,
        status="Updating",
        pending_config_name=body["EndpointConfigName"],
    )
    services.lifecycle.begin_update(call.scope, record.name)
    return {"EndpointArn": record.arn}


def update_weights_and_capacities(services: Services, call: Call, body: dict[str, Any]) -> Output:
    record = _endpoint(services, call, body["EndpointName"])
    _check_updatable(record)
    variant = effective_variant(
        _config_variant(services, call, record.config_name), record.overrides
    )
    overrides = dict(record.overrides)
    seen: set[str] = set()
    for index, desired in enumerate(body["DesiredWeightsAndCapacities"], start=1):
        name = desired["VariantName"]
        if name in seen:
            raise validation_exception(
                f'The variant name "{name}" was non-unique within the request.'
            )
        seen.add(name)
        if name != variant.name:
            raise validation_exception(
                f'The variant name(s) "{name}" is/are not present within endpoint '
                f'configuration "{record.config_name}".'
            )
        overrides[name] = _merged_change(
            variant,
            overrides.get(name) or {},
            desired,
            f"desiredWeightsAndCapacities.{index}.member",
        )
    _check_reservation(services, call, record.name, effective_variant(variant, overrides))
    services.registry.update_endpoint(
        call.scope, record.name, now=call.now, status="Updating", overrides=overrides
    )
    services.lifecycle.begin_update(call.scope, record.name)
    return {"EndpointArn": record.arn}


def _merged_change(
    variant: Variant, previous: dict[str, Any], desired: dict[str, Any], path: str
) -> dict[str, Any]:
    change = dict(previous)
    update = desired.get("ServerlessUpdateConfig")
    count = desired.get("DesiredInstanceCount")
    if isinstance(variant, ServerlessVariant):
        if count is not None:
            raise validation_exception(
                f"DesiredInstanceCount does not apply to a serverless variant (at '{path}')."
            )
        if update is not None:
            merged = {**(change.get("ServerlessUpdateConfig") or {}), **update}
            maximum = int(merged.get("MaxConcurrency", variant.max_concurrency))
            check_provisioned(
                merged.get("ProvisionedConcurrency", variant.provisioned_concurrency),
                maximum,
                f"{path}.serverlessUpdateConfig.provisionedConcurrency",
            )
            change["ServerlessUpdateConfig"] = merged
    else:
        if update is not None:
            raise validation_exception(
                f"ServerlessUpdateConfig does not apply to an instance-based variant (at '{path}')."
            )
        if count is not None:
            if count < 1:
                raise validation_exception(
                    f"1 validation error detected: Value '{count}' at "
                    f"'{path}.desiredInstanceCount' failed to satisfy constraint: Member must "
                    "have value greater than or equal to 1"
                )
            change["DesiredInstanceCount"] = count
    if desired.get("DesiredWeight") is not None:
        change["DesiredWeight"] = desired["DesiredWeight"]
    return change


def delete_endpoint(services: Services, call: Call, body: dict[str, Any]) -> Output:
    record = _endpoint(services, call, body["EndpointName"])
    if record.status != "Deleting":
        services.registry.update_endpoint(call.scope, record.name, now=call.now, status="Deleting")
        services.lifecycle.begin_delete(call.scope, record.name)
    return {}


def list_endpoints(services: Services, call: Call, body: dict[str, Any]) -> Output:
    endpoints = services.registry.list_endpoints(call.scope)
    return listed(
        body,
        [Listable(e.name, e.created, e.last_modified, e.status, item=e) for e in endpoints],
        result_key="Endpoints",
        summary=lambda e: {
            "EndpointName": e.name,
            "EndpointArn": e.arn,
            "CreationTime": e.created,
            "LastModifiedTime": e.last_modified,
            "EndpointStatus": e.status,
        },
        sort_keys=("Name", "CreationTime", "Status"),
    )
