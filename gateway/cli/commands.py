"""The control-plane commands of ``coldbrew``: ``deploy``, ``endpoints``, ``describe`` and
``delete``.

Each command is a thin client of the gateway's SageMaker API (``gateway.cli.client.call``),
so it works the same against a remote gateway. A command returns the process exit
status: 0 on success; 1 for an API error, an unreachable gateway or an endpoint that
ended Failed (with one ``coldbrew: ...`` line on ``Session.err`` saying why); 130 when
interrupted. Results go to ``Session.out``, progress to ``Session.err``.

``deploy`` names the model and endpoint config it creates ``<endpoint>-<UTC
YYYYmmddHHMMSS>``; names of that form are the ones ``deploy`` and ``delete`` may remove
once no longer used. Nothing else is ever deleted implicitly.
"""

from __future__ import annotations

import functools
import re
import time
import urllib.error
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TextIO
from urllib.parse import urlsplit

import orjson

from gateway.cli.client import ApiError, ClientConfig, call

P = ParamSpec("P")
Description = dict[str, Any]

STAMP_FORMAT: Final = "%Y%m%d%H%M%S"
STAMP_DIGITS: Final = 14
# Generated names are "<endpoint>-<stamp>" and model names have at most 63 characters.
MAX_DEPLOY_NAME: Final = 63 - 1 - STAMP_DIGITS
VARIANT_NAME: Final = "AllTraffic"
POLL_INTERVAL_S: Final = 1.0
DEFAULT_WAIT_S: Final = 600.0
# How many later stamps deploy tries when its name is taken (deploys in the same second).
_NAME_ATTEMPTS: Final = 30
TRANSITIONAL: Final = frozenset({"Creating", "Updating", "Deleting", "SystemUpdating"})
# Output members of DescribeEndpoint that are timestamps (epoch seconds on the wire).
TIMESTAMP_MEMBERS: Final = frozenset(
    {"CreationTime", "LastModifiedTime", "StartTime", "ResolutionTime"}
)
TABLE_COLUMNS: Final = (
    "NAME",
    "STATUS",
    "MEMORY",
    "MAX_CONC",
    "PROVISIONED",
    "WARM",
    "INVOCATIONS",
    "GB_S",
    "CPU",
)


@dataclass(frozen=True, slots=True)
class Session:
    """Whom a command calls, where it writes, and how it tells time."""

    config: ClientConfig
    out: TextIO
    err: TextIO
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class CommandFailed(Exception):
    """A command cannot go on; the message says why, for the user."""


def _say(session: Session, text: str) -> None:
    print(text, file=session.err, flush=True)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a gateway URL, or None when it can."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return None
    return f"the gateway URL must look like http://HOST[:PORT], got {url!r}"


def _reports_errors(
    command: Callable[Concatenate[Session, P], int],
) -> Callable[Concatenate[Session, P], int]:
    """Turn a command's failures into one ``coldbrew: ...`` line and exit status 1."""

    @functools.wraps(command)
    def run(session: Session, /, *args: P.args, **kwargs: P.kwargs) -> int:
        problem = url_problem(session.config.url)
        if problem is not None:
            _say(session, f"coldbrew: {problem}")
            return 1
        try:
            return command(session, *args, **kwargs)
        except ApiError as error:
            _say(session, f"coldbrew: {error.code}: {error.message}")
        except CommandFailed as error:
            _say(session, f"coldbrew: {error}")
        except OSError as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            _say(session, f"coldbrew: cannot reach the gateway at {session.config.url}: {reason}")
        except KeyboardInterrupt:
            _say(session, "coldbrew: interrupted")
            return 130
        return 1

    return run


# --- names -----------------------------------------------------------------------------


def generated_name(endpoint: str, when: float) -> str:
    """The model and config name ``deploy`` gives an endpoint's deployment at ``when``."""
    return f"{endpoint}-{datetime.fromtimestamp(when, UTC).strftime(STAMP_FORMAT)}"


def is_generated(endpoint: str, name: str) -> bool:
    """True when ``name`` has the form ``deploy`` gives ``endpoint``'s models and configs."""
    return re.fullmatch(re.escape(endpoint) + rf"-\d{{{STAMP_DIGITS}}}", name) is not None


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


# --- reading endpoints -------------------------------------------------------------------


def _is_missing_endpoint(error: ApiError) -> bool:
    return error.code == "ValidationException" and error.message.startswith(
        "Could not find endpoint"
    )


def _describe_or_none(session: Session, name: str) -> Description | None:
    try:
        return call(session.config, "DescribeEndpoint", {"EndpointName": name})
    except ApiError as error:
        if _is_missing_endpoint(error):
            return None
        raise


def _wait_settled(
    session: Session, name: str, *, shown: str | None, timeout_s: float
) -> Description | None:
    """Poll DescribeEndpoint until the endpoint is out of its transitional states; return
    the last description, or None once the endpoint is gone. Prints each new status.
    Raises CommandFailed after ``timeout_s``."""
    deadline = session.monotonic() + timeout_s
    while True:
        description = _describe_or_none(session, name)
        if description is None:
            return None
        status = description["EndpointStatus"]
        if status not in TRANSITIONAL:
            return description
        if status != shown:
            _say(session, f"endpoint {name}: {status}")
            shown = status
        if session.monotonic() >= deadline:
            raise CommandFailed(
                f"endpoint {name} is still {status} after {timeout_s:g} s; "
                f"see `coldbrew describe {name}`"
            )
        session.sleep(POLL_INTERVAL_S)


def _list_all(
    session: Session, operation: str, key: str, body: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Every item of a paginated List* operation."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    token: str | None = None
    while True:
        request = dict(body) if token is None else {**body, "NextToken": token}
        page = call(session.config, operation, request)
        items.extend(page.get(key) or [])
        token = page.get("NextToken") or None
        if token is None:
            return items
        if token in seen:
            raise CommandFailed(f"{operation} sent the same NextToken twice; giving up")
        seen.add(token)


def _config_model(session: Session, config_name: str) -> str | None:
    """The model an endpoint config's variant runs, or None if the config is gone."""
    try:
        config = call(session.config, "DescribeEndpointConfig", {"EndpointConfigName": config_name})
    except ApiError:
        return None
    variants = config.get("ProductionVariants") or [{}]
    model = variants[0].get("ModelName")
    return str(model) if model else None


# --- cleaning up ----------------------------------------------------------------------


def _try_delete(session: Session, operation: str, member: str, name: str, kind: str) -> None:
    """Delete one resource, best effort: a refusal is a warning, not a failure."""
    _say(session, f"deleting {kind} {name}")
    try:
        call(session.config, operation, {member: name})
    except ApiError as error:
        _say(
            session,
            f"coldbrew: warning: could not delete {kind} {name}: {error.code}: {error.message}",
        )


def _sweep(session: Session, endpoint: str, description: Description) -> None:
    """Delete the generated configs and models of ``endpoint`` that it no longer uses."""
    current = str(description.get("EndpointConfigName") or "")
    used_model = _config_model(session, current) if current else None
    search = {"NameContains": endpoint, "MaxResults": 100}
    for item in _list_all(session, "ListEndpointConfigs", "EndpointConfigs", search):
        name = str(item["EndpointConfigName"])
        if is_generated(endpoint, name) and name != current:
            _try_delete(
                session, "DeleteEndpointConfig", "EndpointConfigName", name, "endpoint config"
            )
    for item in _list_all(session, "ListModels", "Models", search):
        name = str(item["ModelName"])
        if is_generated(endpoint, name) and name != used_model:
            _try_delete(session, "DeleteModel", "ModelName", name, "model")


# --- deploy ---------------------------------------------------------------------------


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
        _say(session, f"creating model {name}")
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
    _say(session, f"creating endpoint config {name}")
    variant = {"VariantName": VARIANT_NAME, "ModelName": name, "ServerlessConfig": serverless}
    call(
        session.config,
        "CreateEndpointConfig",
        {"EndpointConfigName": name, "ProductionVariants": [variant]},
    )


def _existing_for_deploy(session: Session, name: str, timeout_s: float) -> Description | None:
    """The endpoint as a deploy finds it once settled, or None when there is none.
    Raises CommandFailed for a Failed endpoint, which only DeleteEndpoint accepts."""
    description = _describe_or_none(session, name)
    if description is not None and description["EndpointStatus"] in TRANSITIONAL:
        _say(
            session,
            f"waiting for endpoint {name} to finish {description['EndpointStatus']}",
        )
        description = _wait_settled(session, name, shown=None, timeout_s=timeout_s)
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
        _say(session, f"creating endpoint {name}")
        call(session.config, "CreateEndpoint", body)
        return "Creating"
    _say(session, f"updating endpoint {name}")
    call(session.config, "UpdateEndpoint", body)
    return "Updating"


@_reports_errors
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
        _try_delete(session, "DeleteModel", "ModelName", resource, "model")
        raise
    try:
        status = _start(session, name, resource, existing)
    except ApiError:
        _try_delete(
            session, "DeleteEndpointConfig", "EndpointConfigName", resource, "endpoint config"
        )
        _try_delete(session, "DeleteModel", "ModelName", resource, "model")
        raise
    started = session.monotonic()
    _say(session, f"endpoint {name}: {status}")
    final = _wait_settled(session, name, shown=status, timeout_s=timeout_s)
    elapsed = session.monotonic() - started
    if final is None:
        raise CommandFailed(f"endpoint {name} was deleted while it was deploying")
    _say(session, f"endpoint {name}: {final['EndpointStatus']} ({elapsed:.1f} s)")
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
    _say(session, f"coldbrew: endpoint {name}: {reason or final['EndpointStatus']}")
    return 1


# --- endpoints, describe, delete ---------------------------------------------------------


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _row(description: Description) -> tuple[str, ...]:
    variant: Mapping[str, Any] = (description.get("ProductionVariants") or [{}])[0]
    serverless: Mapping[str, Any] = (
        variant.get("CurrentServerlessConfig") or variant.get("DesiredServerlessConfig") or {}
    )
    # Not in the SageMaker API: the gateway's own live figures, when it sends them.
    live: Mapping[str, Any] = description.get("Coldbrew") or {}
    return (
        str(description["EndpointName"]),
        str(description["EndpointStatus"]),
        _text(serverless.get("MemorySizeInMB")),
        _text(serverless.get("MaxConcurrency")),
        _text(serverless.get("ProvisionedConcurrency")),
        _text(live.get("WarmWorkers")),
        _text(live.get("Invocations")),
        _text(live.get("GBSeconds")),
        _limits(live.get("ResourceLimits") or {}),
    )


def _limits(limits: Mapping[str, Any]) -> str:
    """The worker CPU cap and how it is enforced, e.g. "0.579 vCPU (cgroup1)"."""
    mode = limits.get("Mode")
    if mode is None:
        return "-"
    vcpus = limits.get("VCpus")
    return f"{vcpus} vCPU ({mode})" if vcpus is not None else str(mode)


def format_table(rows: list[tuple[str, ...]]) -> str:
    """Rows as text columns, each as wide as its widest cell, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


@_reports_errors
def endpoints(session: Session) -> int:
    """Print a table of every endpoint, by name, with its serverless settings and, when
    the gateway reports them, its warm workers and invocation count ("-" otherwise)."""
    listing = {"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 100}
    rows: list[tuple[str, ...]] = [TABLE_COLUMNS]
    for summary in _list_all(session, "ListEndpoints", "Endpoints", listing):
        description = _describe_or_none(session, str(summary["EndpointName"]))
        if description is not None:  # None: deleted since it was listed
            rows.append(_row(description))
    session.out.write(format_table(rows))
    return 0


def readable(value: Any) -> Any:
    """``value`` with its timestamp members (epoch seconds) as ISO-8601 UTC strings."""
    if isinstance(value, dict):
        return {
            key: _iso(item) if key in TIMESTAMP_MEMBERS else readable(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [readable(item) for item in value]
    return value


def _iso(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        stamp = datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")
    return value


@_reports_errors
def describe(session: Session, name: str) -> int:
    """Print DescribeEndpoint's output as indented JSON, timestamps in ISO-8601 UTC."""
    description = call(session.config, "DescribeEndpoint", {"EndpointName": name})
    session.out.write(orjson.dumps(readable(description), option=orjson.OPT_INDENT_2).decode())
    session.out.write("\n")
    return 0


@_reports_errors
def delete(session: Session, name: str, *, timeout_s: float = DEFAULT_WAIT_S) -> int:
    """Delete endpoint ``name`` and wait until it is gone; then delete its config and
    model when their names are ones ``deploy`` generated (best effort)."""
    description = call(session.config, "DescribeEndpoint", {"EndpointName": name})
    pending = description.get("PendingDeploymentSummary") or {}
    configs = [
        str(config)
        for config in (description.get("EndpointConfigName"), pending.get("EndpointConfigName"))
        if config and is_generated(name, str(config))
    ]
    # Read before the configs go: a config is where its model's name is kept.
    models = [model for config in configs if (model := _config_model(session, config))]
    _say(session, f"deleting endpoint {name}")
    call(session.config, "DeleteEndpoint", {"EndpointName": name})
    started = session.monotonic()
    _say(session, f"endpoint {name}: Deleting")
    final = _wait_settled(session, name, shown="Deleting", timeout_s=timeout_s)
    if final is not None:
        reason = final.get("FailureReason") or "no reason given"
        raise CommandFailed(
            f"endpoint {name} is {final['EndpointStatus']} after DeleteEndpoint: {reason}"
        )
    _say(session, f"endpoint {name}: deleted ({session.monotonic() - started:.1f} s)")
    for config in configs:
        _try_delete(
            session, "DeleteEndpointConfig", "EndpointConfigName", config, "endpoint config"
        )
    for model in models:
        if is_generated(name, model):
            _try_delete(session, "DeleteModel", "ModelName", model, "model")
    return 0
