"""Who owns a resource and what it may be called: the (account, region) scope, ARNs,
and the name rule of endpoints and their configs, each written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["model", "endpoint-config", "endpoint"]

MAX_NAME_LENGTH: Final = 63
# An endpoint (or endpoint config, or variant) name, as the runtime API's reference
# writes its pattern (spec §5.1) and as the control plane's writes it, with the length in
# the pattern; both appear in error messages, so each keeps its own spelling.
RUNTIME_NAME_PATTERN: Final = "^[a-zA-Z0-9](-*[a-zA-Z0-9])*"
CONTROL_NAME_PATTERN: Final = r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
_NAME: Final = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")


@dataclass(frozen=True, slots=True)
class Scope:
    """The (account, region) that owns a resource."""

    account_id: str
    region: str


def arn(scope: Scope, kind: Kind, name: str) -> str:
    """The ARN of a resource; the name is lower-cased, as the real service does."""
    return f"arn:aws:sagemaker:{scope.region}:{scope.account_id}:{kind}/{name.lower()}"


def is_endpoint_name(name: str) -> bool:
    """Whether ``name`` is a valid endpoint (or endpoint config) name: letters, digits
    and hyphens, starting and ending with a letter or digit, at most 63 characters."""
    return len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None
