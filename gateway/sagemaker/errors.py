"""SageMaker's errors as its clients see them: a status, a code, a message, and the
modeled members of the few that have them.

Both planes raise these; how they are written on the wire (AWS JSON 1.1 or REST-JSON)
is the edge's business (``gateway.edge.errors``).
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error as the client sees it: HTTP status, code and message, plus any modeled
    members (e.g. ModelError's OriginalStatusCode) to put in the body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str | None,
        *,
        members: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.members = members or {}
        self.headers = headers or {}


def validation_error(message: str) -> ServiceError:
    """The runtime's ValidationError (not ...Exception on the runtime, spec §3.2)."""
    return ServiceError(400, "ValidationError", message)


def validation_exception(message: str) -> ServiceError:
    """The control plane's ValidationException (spec §2.3)."""
    return ServiceError(400, "ValidationException", message)


def throttling(message: str | None = None) -> ServiceError:
    # The real service sends a null message for throttling (spec §3.2); we say which
    # quota was hit, which is more useful and parses the same.
    return ServiceError(400, "ThrottlingException", message)


def request_timeout(message: str) -> ServiceError:
    # Unconfirmed what SageMaker's front end answers a client that stalls mid-body; AWS
    # front ends answer 408 and close the connection, which botocore surfaces as a
    # ClientError with this code.
    return ServiceError(408, "RequestTimeoutException", message, headers={"Connection": "close"})


def service_unavailable(message: str) -> ServiceError:
    return ServiceError(503, "ServiceUnavailable", message)


def internal_failure(request_id: str) -> ServiceError:
    return ServiceError(
        500, "InternalFailure", f"An internal error occurred (request id {request_id})."
    )


def model_error(
    *,
    original_status: int,
    original_message: str,
    endpoint: str,
    account: str,
    region: str,
) -> ServiceError:
    """ModelError 424 in the real service's wording (spec §3.2).

    The real message points at CloudWatch; ours points at the gateway log, where worker
    output is tagged with the endpoint's log group name.
    """
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    kind = "client" if 400 <= original_status < 500 else "server"
    message = (
        f'Received {kind} error ({original_status}) from primary with message "'
        f'{original_message}". See the Coldbrew gateway log for {group} in account '
        f"{account} for more information."
    )
    return ServiceError(
        424,
        "ModelError",
        message,
        members={
            "OriginalStatusCode": original_status,
            "OriginalMessage": original_message,
            "LogStreamArn": f"arn:aws:logs:{region}:{account}:log-group:{group}",
        },
    )
