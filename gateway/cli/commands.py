"""The ``coldbrew`` commands that look at and remove endpoints: ``endpoints`` (a table),
``describe`` (one endpoint as JSON) and ``delete``.

``delete`` also removes the endpoint's config and model when their names are ones
``deploy`` generated; nothing else is ever deleted implicitly. Exit statuses are those
of every command (``gateway.cli.session``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from gateway.cli.client import call
from gateway.cli.resources import (
    DEFAULT_WAIT_S,
    Description,
    config_model,
    describe_or_none,
    is_generated,
    list_all,
    try_delete,
    wait_settled,
)
from gateway.cli.session import CommandFailed, Session, reports_errors, say

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


@reports_errors
def endpoints(session: Session) -> int:
    """Print a table of every endpoint, by name, with its serverless settings and, when
    the gateway reports them, its warm workers and invocation count ("-" otherwise)."""
    listing = {"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 100}
    rows: list[tuple[str, ...]] = [TABLE_COLUMNS]
    for summary in list_all(session, "ListEndpoints", "Endpoints", listing):
        description = describe_or_none(session, str(summary["EndpointName"]))
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


@reports_errors
def describe(session: Session, name: str) -> int:
    """Print DescribeEndpoint's output as indented JSON, timestamps in ISO-8601 UTC."""
    description = call(session.config, "DescribeEndpoint", {"EndpointName": name})
    session.out.write(orjson.dumps(readable(description), option=orjson.OPT_INDENT_2).decode())
    session.out.write("\n")
    return 0


@reports_errors
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
    models = [model for config in configs if (model := config_model(session, config))]
    say(session, f"deleting endpoint {name}")
    call(session.config, "DeleteEndpoint", {"EndpointName": name})
    started = session.monotonic()
    say(session, f"endpoint {name}: Deleting")
    final = wait_settled(session, name, shown="Deleting", timeout_s=timeout_s)
    if final is not None:
        reason = final.get("FailureReason") or "no reason given"
        raise CommandFailed(
            f"endpoint {name} is {final['EndpointStatus']} after DeleteEndpoint: {reason}"
        )
    say(session, f"endpoint {name}: deleted ({session.monotonic() - started:.1f} s)")
    for config in configs:
        try_delete(session, "DeleteEndpointConfig", "EndpointConfigName", config, "endpoint config")
    for model in models:
        if is_generated(name, model):
            try_delete(session, "DeleteModel", "ModelName", model, "model")
    return 0
