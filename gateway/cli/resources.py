"""The resources the commands read and remove through the API: waiting for an endpoint to
settle, paging List* operations, finding a config's model, best-effort deletes, and the
names ``deploy`` generates (``<endpoint>-<UTC YYYYmmddHHMMSS>``).

Every call goes to the gateway; ``ApiError``, ``OSError`` and ``CommandFailed`` reach the
command, which reports them (``session.reports_errors``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from gateway.cli.client import ApiError, call
from gateway.cli.session import CommandFailed, Session, say

Description = dict[str, Any]

STAMP_FORMAT: Final = "%Y%m%d%H%M%S"
STAMP_DIGITS: Final = 14
POLL_INTERVAL_S: Final = 1.0
DEFAULT_WAIT_S: Final = 600.0
TRANSITIONAL: Final = frozenset({"Creating", "Updating", "Deleting", "SystemUpdating"})


def generated_name(endpoint: str, when: float) -> str:
    """The model and config name ``deploy`` gives an endpoint's deployment at ``when``."""
    return f"{endpoint}-{datetime.fromtimestamp(when, UTC).strftime(STAMP_FORMAT)}"


def is_generated(endpoint: str, name: str) -> bool:
    """True when ``name`` has the form ``deploy`` gives ``endpoint``'s models and configs."""
    return re.fullmatch(re.escape(endpoint) + rf"-\d{{{STAMP_DIGITS}}}", name) is not None


def _is_missing_endpoint(error: ApiError) -> bool:
    return error.code == "ValidationException" and error.message.startswith(
        "Could not find endpoint"
    )


def describe_or_none(session: Session, name: str) -> Description | None:
    """DescribeEndpoint's output for ``name``, or None when there is no such endpoint."""
    try:
        return call(session.config, "DescribeEndpoint", {"EndpointName": name})
    except ApiError as error:
        if _is_missing_endpoint(error):
            return None
        raise


def wait_settled(
    session: Session, name: str, *, shown: str | None, timeout_s: float
) -> Description | None:
    """Poll DescribeEndpoint until the endpoint is out of its transitional states; return
    the last description, or None once the endpoint is gone. Prints each new status.
    Raises CommandFailed after ``timeout_s``."""
    deadline = session.monotonic() + timeout_s
    while True:
        description = describe_or_none(session, name)
        if description is None:
            return None
        status = description["EndpointStatus"]
        if status not in TRANSITIONAL:
            return description
        if status != shown:
            say(session, f"endpoint {name}: {status}")
            shown = status
        if session.monotonic() >= deadline:
            raise CommandFailed(
                f"endpoint {name} is still {status} after {timeout_s:g} s; "
                f"see `coldbrew describe {name}`"
            )
        session.sleep(POLL_INTERVAL_S)


def list_all(
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


def config_model(session: Session, config_name: str) -> str | None:
    """The model an endpoint config's variant runs, or None if the config is gone."""
    try:
        config = call(session.config, "DescribeEndpointConfig", {"EndpointConfigName": config_name})
    except ApiError:
        return None
    variants = config.get("ProductionVariants") or [{}]
    model = variants[0].get("ModelName")
    return str(model) if model else None


def try_delete(session: Session, operation: str, member: str, name: str, kind: str) -> None:
    """Delete one resource, best effort: a refusal is a warning, not a failure."""
    say(session, f"deleting {kind} {name}")
    try:
        call(session.config, operation, {member: name})
    except ApiError as error:
        say(
            session,
            f"coldbrew: warning: could not delete {kind} {name}: {error.code}: {error.message}",
        )
