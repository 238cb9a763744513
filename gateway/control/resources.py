"""CreateModel, DescribeModel, DeleteModel, ListModels, and the same four for endpoint
configs."""

from __future__ import annotations

from typing import Any

from gateway.control.context import (
    Call,
    Services,
    already_exists,
    listed,
    not_found,
    tag_map,
    without_tags,
)
from gateway.control.listing import Listable
from gateway.control.rules import check_model
from gateway.sagemaker.errors import ServiceError
from gateway.sagemaker.names import arn
from gateway.sagemaker.variants import parse_config
from gateway.store.registry import AlreadyExists, NotFound

Output = dict[str, Any]


def create_model(services: Services, call: Call, body: dict[str, Any]) -> Output:
    check_model(body)
    try:
        record = services.registry.create_model(
            call.scope, body["ModelName"], without_tags(body), call.now, tag_map(body)
        )
    except AlreadyExists as error:
        raise already_exists("model", error.arn) from None
    return {"ModelArn": record.arn}


def describe_model(services: Services, call: Call, body: dict[str, Any]) -> Output:
    record = services.registry.get_model(call.scope, body["ModelName"])
    if record is None:
        raise not_found("model", arn(call.scope, "model", body["ModelName"]))
    output: Output = {"EnableNetworkIsolation": False, **record.document}
    output.update(ModelName=record.name, ModelArn=record.arn, CreationTime=record.created)
    return output


def _endpoints_using(services: Services, call: Call, config_names: set[str]) -> list[str]:
    """ARNs of endpoints (not being deleted) whose current or pending config is one of
    ``config_names`` (lower-cased)."""
    using = []
    for endpoint in services.registry.list_endpoints(call.scope):
        names = {endpoint.config_name.lower(), (endpoint.pending_config_name or "").lower()}
        if endpoint.status != "Deleting" and names & config_names:
            using.append(endpoint.arn)
    return using


def _in_use(kind: str, resource_arn: str, users: list[str]) -> ServiceError:
    # A model named by an endpoint config, or a config a live endpoint uses, is needed to
    # (re)start that endpoint, so Coldbrew refuses what SageMaker merely warns against.
    # [U] the real service allows these deletes.
    return ServiceError(
        400,
        "ResourceInUse",
        f'Cannot delete {kind} "{resource_arn}": it is in use by {", ".join(users)}. '
        "Delete those first.",
    )


def delete_model(services: Services, call: Call, body: dict[str, Any]) -> Output:
    name = body["ModelName"]
    users = [
        config.arn
        for config in services.registry.list_endpoint_configs(call.scope)
        if any(
            str(variant.get("ModelName", "")).lower() == name.lower()
            for variant in config.document.get("ProductionVariants", [])
        )
    ]
    if users:
        raise _in_use("model", arn(call.scope, "model", name), users)
    try:
        services.registry.delete_model(call.scope, name)
    except NotFound as error:
        raise not_found("model", error.arn) from None
    return {}


def list_models(services: Services, call: Call, body: dict[str, Any]) -> Output:
    return listed(
        body,
        [Listable(m.name, m.created, item=m) for m in services.registry.list_models(call.scope)],
        result_key="Models",
        summary=lambda m: {"ModelName": m.name, "ModelArn": m.arn, "CreationTime": m.created},
    )


def create_endpoint_config(services: Services, call: Call, body: dict[str, Any]) -> Output:
    variant = parse_config(body)
    if services.registry.get_model(call.scope, variant.model_name) is None:
        raise not_found("model", arn(call.scope, "model", variant.model_name))
    try:
        record = services.registry.create_endpoint_config(
            call.scope, body["EndpointConfigName"], without_tags(body), call.now, tag_map(body)
        )
    except AlreadyExists as error:
        raise already_exists("endpoint configuration", error.arn) from None
    return {"EndpointConfigArn": record.arn}


def describe_endpoint_config(services: Services, call: Call, body: dict[str, Any]) -> Output:
    name = body["EndpointConfigName"]
    record = services.registry.get_endpoint_config(call.scope, name)
    if record is None:
        raise not_found("endpoint configuration", arn(call.scope, "endpoint-config", name))
    output: Output = dict(record.document)
    output.update(
        EndpointConfigName=record.name,
        EndpointConfigArn=record.arn,
        CreationTime=record.created,
    )
    return output


def delete_endpoint_config(services: Services, call: Call, body: dict[str, Any]) -> Output:
    name = body["EndpointConfigName"]
    config_arn = arn(call.scope, "endpoint-config", name)
    users = _endpoints_using(services, call, {name.lower()})
    if users:
        raise _in_use("endpoint configuration", config_arn, users)
    try:
        services.registry.delete_endpoint_config(call.scope, name)
    except NotFound:
        raise not_found("endpoint configuration", config_arn) from None
    return {}


def list_endpoint_configs(services: Services, call: Call, body: dict[str, Any]) -> Output:
    configs = services.registry.list_endpoint_configs(call.scope)
    return listed(
        body,
        [Listable(c.name, c.created, item=c) for c in configs],
        result_key="EndpointConfigs",
        summary=lambda c: {
            "EndpointConfigName": c.name,
            "EndpointConfigArn": c.arn,
            "CreationTime": c.created,
        },
    )
