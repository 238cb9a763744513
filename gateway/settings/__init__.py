"""The gateway's settings: one typed, validated, immutable object loaded from TOML.

Each setting is declared once, as a dataclass field carrying its default, its help text
and its value check. Construction validates, so a ``Settings`` object is valid however it
was built (loaded, ``default_settings()``, ``override()`` or by hand), and
``config/coldbrew.toml`` documents the same fields with the same help text (the tests
hold the two together).

Every refusal is a ``SettingsError`` whose message names the key, e.g.
``config key pool.idle_timeout_s: must be > 0, got -1``.

The parts: ``checks`` (value rules) and ``fields`` (declaring, validating and documenting
a field) and ``tables`` (building from TOML tables) are the framework; ``sections`` and
``schema`` declare the settings and the rules across them; ``loading`` reads a file and
overrides one setting.
"""

from gateway.settings.fields import SettingsError
from gateway.settings.loading import load_settings, override
from gateway.settings.schema import (
    DEV_CREDENTIAL,
    Settings,
    check_bind_safety,
    default_settings,
    effective_credentials,
    endpoint_placement,
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

__all__ = [
    "DEV_CREDENTIAL",
    "AuthSettings",
    "CredentialSettings",
    "EndpointDeclaration",
    "PoolSettings",
    "QuotaSettings",
    "SandboxSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "check_bind_safety",
    "default_settings",
    "effective_credentials",
    "endpoint_placement",
    "load_settings",
    "override",
]
