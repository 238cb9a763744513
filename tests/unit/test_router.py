"""The one table from worker failures to SageMaker errors (gateway.edge.errors), and the
router's request ids and paths."""

from __future__ import annotations

import uuid

import pytest

from gateway.edge.errors import worker_error
from gateway.edge.router import RUNTIME_PATH, random_request_id
from gateway.runtime.invoke import InvocationContext
from gateway.sagemaker.errors import ServiceError
from workers import (
    PoolClosed,
    ResponseTooLarge,
    SetupFailed,
    SetupTimeout,
    WorkerBroken,
    WorkerError,
    WorkerTimeout,
)

CTX = InvocationContext("req-1", endpoint_name="ep", account_id="123456789012", region="eu-west-1")


@pytest.mark.parametrize(
    ("error", "status", "code", "original_status"),
    [
        (WorkerTimeout(60), 424, "ModelError", 0),
        (WorkerBroken("worker was killed by SIGKILL", -9), 424, "ModelError", 0),
        (SetupFailed("RuntimeError: bad weights"), 424, "ModelError", 0),
        (ResponseTooLarge(5_000_000, 4_194_304), 424, "ModelError", 0),
        (SetupTimeout(180), 429, "ModelNotReadyException", None),
        (PoolClosed("ep is shutting down"), 503, "ServiceUnavailable", None),
        (WorkerError("something new"), 500, "InternalFailure", None),
    ],
)
def test_each_worker_failure_has_its_wire_error(
    error: WorkerError, status: int, code: str, original_status: int | None
) -> None:
    """Every kind of worker failure maps to the SageMaker status and code clients expect."""
    mapped = worker_error(error, CTX)
    assert isinstance(mapped, ServiceError)
    assert (mapped.status, mapped.code) == (status, code)
    assert mapped.members.get("OriginalStatusCode") == original_status


def test_timeout_uses_the_real_services_wording() -> None:
    """A timed-out invocation quotes the real service's container-timeout message."""
    mapped = worker_error(WorkerTimeout(60), CTX)
    assert mapped.message is not None
    assert mapped.message.startswith('Received server error (0) from primary with message "')
    assert "timed out while waiting for a response from container primary" in mapped.message
    assert mapped.members["LogStreamArn"] == (
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep"
    )


def test_setup_failure_quotes_the_models_error() -> None:
    """A model that failed to load is named with its own error text."""
    mapped = worker_error(SetupFailed("RuntimeError: bad weights"), CTX)
    assert "RuntimeError: bad weights" in mapped.members["OriginalMessage"]


@pytest.mark.parametrize(
    ("path", "name", "op"),
    [
        ("/endpoints/demo/invocations", "demo", "invocations"),
        ("/endpoints/a%20b%2Fc/invocations", "a%20b%2Fc", "invocations"),
        ("/endpoints//invocations", "", "invocations"),
        ("/endpoints/x/invocations-response-stream", "x", "invocations-response-stream"),
        ("/endpoints/x/async-invocations", "x", "async-invocations"),
    ],
)
def test_runtime_paths_are_recognised_raw(path: str, name: str, op: str) -> None:
    """Runtime paths match on the raw path, so encoded and empty names reach validation."""
    match = RUNTIME_PATH.fullmatch(path)
    assert match is not None
    assert (match["name"], match["op"]) == (name, op)


@pytest.mark.parametrize("path", ["/", "/endpoints/x", "/endpoints/x/y/invocations", "/health"])
def test_other_paths_are_not_runtime(path: str) -> None:
    """Anything else is not mistaken for an invocation."""
    assert RUNTIME_PATH.fullmatch(path) is None


def test_request_ids_are_random_version_4_uuids() -> None:
    """Each request id is a distinct RFC 4122 version 4 UUID in its canonical text."""
    ids = [random_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for request_id in ids:
        parsed = uuid.UUID(request_id)
        assert str(parsed) == request_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # Every variant digit occurs: the two random bits under it are really random.
    assert {request_id[19] for request_id in ids} == set("89ab")
