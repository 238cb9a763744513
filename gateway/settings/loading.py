"""Reading the settings from a TOML file, and overriding one setting of them."""

from __future__ import annotations

import tomllib
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from gateway.settings.fields import SettingsError
from gateway.settings.schema import Settings, default_settings
from gateway.settings.tables import build


def load_settings(path: Path | None) -> Settings:
    """Read and validate the TOML config file at ``path``; None gives the defaults.

    Settings left out of the file keep their defaults; unknown sections and keys are
    refused. Relative path settings resolve against the file's folder. Raises
    ``SettingsError`` when the file cannot be read, is not TOML, or holds a refused value.
    """
    if path is None:
        return default_settings()
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
    return build(Settings, document, "", path.absolute().parent)


def override(settings: Settings, key: str, value: object) -> Settings:
    """A copy of ``settings`` with the setting ``key`` (``"server.port"``) set to ``value``.

    ``value`` must have the setting's type (ints are accepted for numbers). Raises
    ``SettingsError`` naming ``key`` for an unknown key or a refused value.
    """
    section_name, _, name = key.partition(".")
    sections = {f.name for f in fields(Settings)}
    section: Any = getattr(settings, section_name) if section_name in sections else None
    names = {f.name for f in fields(section)} if is_dataclass(section) else set()
    if name not in names:
        raise SettingsError("unknown setting", key)
    try:
        updated: Any = replace(section, **{name: value})
    except SettingsError as exc:
        raise exc.within(section_name) from None
    return replace(settings, **{section_name: updated})
