"""``coldbrew deploy``: a model directory, archive or URL to an InService endpoint.

``deploy`` names the model and endpoint config it creates ``<endpoint>-<UTC
YYYYmmddHHMMSS>``; after an update it removes the endpoint's generated models and configs
no longer used. Nothing else is ever deleted implicitly. Exit statuses are those of
every command (``gateway.cli.session``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from gateway.cli.client import ApiError, call
from gateway.cli.resources import (
    DEFAULT_WAIT_S,
    STAMP_DIGITS,
    TRANSITIONAL,
    Description,
    config_model,
    describe_or_none,
    generated_name,
    is_generated,
    list_all,
    try_delete,
    wait_settled,
)
from gateway.cli.session import CommandFailed, Session, reports_errors, say

# Generated names are "<endpoint>-<stamp>" and model names have at most 63 characters.
MAX_DEPLOY_NAME: Final = 63 - 1 - STAMP_DIGITS
VARIANT_NAME: Final = "AllTraffic"
# How many later stamps deploy tries when its name is taken (deploys in the same second).
_NAME_ATTEMPTS: Final = 30


def model_data_url(source: str) -> str:
    """The ModelDataUrl for ``source``: a URL (``scheme://...``) as given, else the
    absolute path of a local model directory or archive. Raises CommandFailed when a
    local path does not exist."""
    if "://" in source:
        return source
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise CommandFailed(f"no model directory or archive at {path}")
    return str(path)


def _sweep(session: Session, endpoint: str, description: Description) -> None:
    """Delete the generated configs and models of ``endpoint`` that it no longer uses."""
    current = str(description.get("EndpointConfigName") or "")
    used_model = config_model(session, current) if current else None
    search = {"NameContains": endpoint, "MaxResults": 100}
    for item in list_all(session, "ListEndpointConfigs", "EndpointConfigs", search):
        name = str(item["EndpointConfigName"])
        if is_generated(endpoint, name) and name != current:
            try_delete(
                session, "DeleteEndpointConfig", "EndpointConfigName", name, "endpoint config"
            )
    for item in list_all(session, "ListModels", "Models", search):
        name = str(item["ModelName"])
        if is_generated(endpoint, name) and name != used_model:
            try_delete(session, "DeleteModel", "ModelName", name, "model")


def _already_exists(error: ApiError) -> bool:
    return error.code == "ValidationException" and error.message.startswith(
        "Cannot create already existing"
    )


def _create_model(session: Session, endpoint: str, url: str) -> str:
    """Create the deployment's model under the first free generated name; return it."""
    start = session.wall()
    for attempt in range(_NAME_ATTEMPTS):
        # Deploys within one second would share a stamp; the next second's is free.
        name = generated_name(endpoint, start + attempt)
        say(session, f"creating model {name}")
        body = {"ModelName": name, "PrimaryContainer": {"ModelDataUrl": url}}
        try:
            call(session.config, "CreateModel", body)
        except ApiError as error:
            if not _already_exists(error):
                raise
            continue
        return name
    raise CommandFailed(f"no free model name for endpoint {endpoint} after {_NAME_ATTEMPTS} tries")


def _create_config(
    session: Session, name: str, memory_mb: int, max_concurrency: int, provisioned: int | None
) -> None:
    serverless: dict[str, int] = {"MemorySizeInMB": memory_mb, "MaxConcurrency": max_concurrency}
    if provisioned is not None:
        serverless["ProvisionedConcurrency"] = provisioned
    say(session, f"creating endpoint config {name}")
    variant = {"VariantName": VARIANT_NAME, "ModelName": name, "ServerlessConfig": serverless}
    call(
        session.config,
        "CreateEndpointConfig",
        {"EndpointConfigName": name, "ProductionVariants": [variant]},
    )


def _existing_for_deploy(session: Session, name: str, timeout_s: float) -> Description | None:
    """The endpoint as a deploy finds it once settled, or None when there is none.
    Raises CommandFailed for a Failed endpoint, which only DeleteEndpoint accepts."""
    description = describe_or_none(session, name)
    if description is not None and description["EndpointStatus"] in TRANSITIONAL:
        say(
            session,
            f"waiting for endpoint {name} to finish {description['EndpointStatus']}",
        )
        description = wait_settled(session, name, shown=None, timeout_s=timeout_s)
    if description is not None and description["EndpointStatus"] == "Failed":
        reason = description.get("FailureReason") or "no reason given"
        raise CommandFailed(
            f"endpoint {name} is Failed ({reason}); remove it with `coldbrew delete {name}`"
        )
    return description


def _start(session: Session, name: str, resource: str, existing: Description | None) -> str:
    """Create the endpoint, or update it, to run config ``resource``; return the status
    the endpoint is now in. Raises ApiError when the gateway refuses."""
    body = {"EndpointName": name, "EndpointConfigName": resource}
    if existing is None:
        say(session, f"creating endpoint {name}")
        call(session.config, "CreateEndpoint", body)
        return "Creating"
    say(session, f"updating endpoint {name}")
    call(session.config, "UpdateEndpoint", body)
    return "Updating"


@reports_errors
def deploy(
    session: Session,
    source: str,
    name: str,
    *,
    memory_mb: int = 2048,
    max_concurrency: int = 20,
    provisioned: int | None = None,
    timeout_s: float = DEFAULT_WAIT_S,
) -> int:
    """Deploy the model at ``source`` (a local directory or archive, or a URL) as endpoint
    ``name``: create its model and config, then create the endpoint or update it, and
    wait until it is InService. After an update, the endpoint's generated models and
    configs that are no longer used are deleted. Exit 1 when the endpoint ends Failed or
    an update was rolled back, with the FailureReason."""
    url = model_data_url(source)
    if len(name) > MAX_DEPLOY_NAME:
        raise CommandFailed(
            f"endpoint name {name!r} is too long for deploy "
            f"(at most {MAX_DEPLOY_NAME} characters, to leave room for the version stamp)"
        )
    existing = _existing_for_deploy(session, name, timeout_s)
    resource = _create_model(session, name, url)
    # What the gateway refuses is removed again, so a failed deploy leaves nothing behind.
    try:
        _create_config(session, resource, memory_mb, max_concurrency, provisioned)
    except ApiError:
        try_delete(session, "DeleteModel", "ModelName", resource, "model")
        raise
    try:
        status = _start(session, name, resource, existing)
    except ApiError:
        try_delete(
            session, "DeleteEndpointConfig", "EndpointConfigName", resource, "endpoint config"
        )
        try_delete(session, "DeleteModel", "ModelName", resource, "model")
        raise
    started = session.monotonic()
    say(session, f"endpoint {name}: {status}")
    final = wait_settled(session, name, shown=status, timeout_s=timeout_s)
    elapsed = session.monotonic() - started
    if final is None:
        raise CommandFailed(f"endpoint {name} was deleted while it was deploying")
    say(session, f"endpoint {name}: {final['EndpointStatus']} ({elapsed:.1f} s)")
    if existing is not None and final["EndpointStatus"] == "InService":
        # Also removes this deploy's own config and model when the update was rolled back.
        _sweep(session, name, final)
    return _deploy_outcome(session, name, resource, final)


def _deploy_outcome(session: Session, name: str, resource: str, final: Description) -> int:
    reason = final.get("FailureReason")
    if final["EndpointStatus"] == "InService" and not reason:
        if final.get("EndpointConfigName") == resource:
            return 0
        reason = f"the endpoint still runs {final.get('EndpointConfigName')}, not {resource}"
    say(session, f"coldbrew: endpoint {name}: {reason or final['EndpointStatus']}")
    return 1
