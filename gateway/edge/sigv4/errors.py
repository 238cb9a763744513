"""The refusals of SigV4 checks: ``SigV4Error`` and the AWS error codes it carries.

Mapping a refusal to an HTTP status and body is the caller's job.
"""

from __future__ import annotations

MISSING_TOKEN = "MissingAuthenticationTokenException"
INCOMPLETE_SIGNATURE = "IncompleteSignatureException"
UNRECOGNIZED_CLIENT = "UnrecognizedClientException"
INVALID_SIGNATURE = "InvalidSignatureException"


class SigV4Error(Exception):
    """A request refused by SigV4 checks.

    ``code`` is one of ``MissingAuthenticationTokenException``,
    ``IncompleteSignatureException``, ``UnrecognizedClientException`` or
    ``InvalidSignatureException``; ``message`` is the AWS-style text for the client.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
