"""``Settings``, the whole configuration, and the rules across its sections.

Construction checks every section and then the declared endpoints against the
credentials and quotas. Serving adds one more rule, ``check_bind_safety``: the
development key is served only on a loopback address.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from gateway.settings.fields import (
    SettingsError,
    meta,
    setting,
    validate,
)
from gateway.settings.sections import (
    AuthSettings,
    CredentialSettings,
    EndpointDeclaration,
    PoolSettings,
    QuotaSettings,
    SandboxSettings,
    ServerSettings,
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway is configured with.

    Besides each field's own check, construction refuses an endpoint whose account has no
    credential, two endpoints with the same name (ignoring case) in one account and region,
    and more endpoints in one account and region than ``quotas.endpoints_per_region``.
    """

    server: ServerSettings = field(
        default_factory=ServerSettings,
        metadata=meta("The HTTP listener and process-wide behaviour."),
    )
    auth: AuthSettings = field(
        default_factory=AuthSettings, metadata=meta("Who may call the gateway.")
    )
    quotas: QuotaSettings = field(
        default_factory=QuotaSettings,
        metadata=meta("Limits per account and region, mirroring SageMaker Serverless quotas."),
    )
    pool: PoolSettings = field(
        default_factory=PoolSettings, metadata=meta("Lifetimes and deadlines of workers.")
    )
    sandbox: SandboxSettings = field(
        default_factory=SandboxSettings,
        metadata=meta("How model code is isolated from the gateway and other accounts."),
    )
    endpoints: tuple[EndpointDeclaration, ...] = setting(
        (),
        "Endpoints served from start-up, each backed by a model folder. The control-plane API "
        "(CreateModel, CreateEndpointConfig, CreateEndpoint) adds more at run time.",
    )

    def __post_init__(self) -> None:
        validate(self)
        _check_endpoints(self)


DEV_CREDENTIAL: Final = CredentialSettings("test", "test", "000000000000")


def default_settings() -> Settings:
    """Every setting at its default: no credentials, no declared endpoints."""
    return Settings()


def effective_credentials(settings: Settings) -> tuple[CredentialSettings, ...]:
    """The configured credentials, or ``(DEV_CREDENTIAL,)`` when none are configured."""
    return settings.auth.credentials or (DEV_CREDENTIAL,)


def endpoint_placement(settings: Settings, endpoint: EndpointDeclaration) -> tuple[str, str]:
    """The ``(account_id, region)`` a declared endpoint belongs to, defaults applied."""
    account = endpoint.account_id or effective_credentials(settings)[0].account_id
    return account, endpoint.region or settings.server.region


def _check_endpoints(settings: Settings) -> None:
    accounts = {credential.account_id for credential in effective_credentials(settings)}
    first_index: dict[tuple[str, str, str], int] = {}
    per_region: Counter[tuple[str, str]] = Counter()
    for index, endpoint in enumerate(settings.endpoints):
        account, region = endpoint_placement(settings, endpoint)
        if account not in accounts:
            raise SettingsError(
                f"no credential acts as account {account}, so no client could call this endpoint",
                f"endpoints[{index}].account_id",
            )
        # ARNs are lower-cased, so names differing only in case would collide.
        earlier = first_index.setdefault((account, region, endpoint.name.lower()), index)
        if earlier != index:
            raise SettingsError(
                f"endpoint {endpoint.name!r} is already declared by endpoints[{earlier}] "
                f"in account {account}, region {region}",
                f"endpoints[{index}].name",
            )
        per_region[account, region] += 1
        if per_region[account, region] > settings.quotas.endpoints_per_region:
            raise SettingsError(
                f"more endpoints in account {account}, region {region} than "
                f"quotas.endpoints_per_region ({settings.quotas.endpoints_per_region})",
                f"endpoints[{index}]",
            )


def check_bind_safety(settings: Settings) -> None:
    """Refuse to serve the development credentials beyond this machine.

    Raises ``SettingsError`` (key ``server.host``) when no credentials are configured and
    ``server.host`` is not a loopback address (127.0.0.0/8, ::1 or localhost).
    """
    host = settings.server.host
    if settings.auth.credentials or _is_loopback(host):
        return
    raise SettingsError(
        f"refusing to listen on {host!r} with no credentials configured: anyone who can "
        f"reach it could sign requests with the development key "
        f"{DEV_CREDENTIAL.access_key_id!r}. Configure [[auth.credentials]] or listen on a "
        "loopback address such as 127.0.0.1",
        "server.host",
    )


def _is_loopback(host: str) -> bool:
    bare = host.strip().removeprefix("[").removesuffix("]")
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False
