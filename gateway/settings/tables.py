"""Building declared settings dataclasses from parsed TOML tables.

``build`` turns a TOML table into a dataclass of settings: sections become their
dataclass, arrays of tables a tuple of them, unknown keys are refused, relative paths are
resolved against the config file's folder, and the constructors check every value.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin, get_type_hints

from gateway.settings.fields import SettingsError, describe_value

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T", bound="DataclassInstance")


def build(cls: type[_T], table: dict[str, Any], prefix: str, base_dir: Path) -> _T:
    """``cls`` built from a TOML table; keys in errors are placed under ``prefix``.

    Relative values of path fields resolve against ``base_dir``. Raises ``SettingsError``
    for an unknown section or key, a value of the wrong shape, or a value the
    constructors refuse.
    """
    hints = get_type_hints(cls)
    declared = {f.name: f for f in fields(cls)}
    arguments: dict[str, object] = {}
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in declared:
            raise SettingsError(
                "unknown section" if isinstance(value, dict) else "unknown setting", key
            )
        if declared[name].metadata["path"] and isinstance(value, str):
            value = _resolve_path(value, base_dir)
        arguments[name] = _convert(hints[name], value, key, base_dir)
    try:
        return cls(**arguments)
    except SettingsError as exc:
        raise exc.within(prefix) from None


def _convert(kind: Any, value: object, key: str, base_dir: Path) -> object:
    """Tables become the section's dataclass, arrays of tables a tuple of them; the
    constructors check everything else."""
    if get_origin(kind) is tuple and not is_dataclass(get_args(kind)[0]):
        # An array of plain values: each item's type is checked by the constructor.
        if not isinstance(value, list):
            raise SettingsError(f"must be an array, got {describe_value(value)}", key)
        return tuple(value)
    if get_origin(kind) is tuple:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise SettingsError(f"must be an array of tables, got {describe_value(value)}", key)
        item_kind = get_args(kind)[0]
        return tuple(
            build(item_kind, item, f"{key}[{index}]", base_dir) for index, item in enumerate(value)
        )
    if isinstance(kind, type) and is_dataclass(kind):
        if not isinstance(value, dict):
            raise SettingsError(f"must be a table, got {describe_value(value)}", key)
        return build(kind, value, key, base_dir)
    return value


def _resolve_path(value: str, base_dir: Path) -> str:
    # "~" paths stay as written and are expanded at use, so the shipped file's value
    # equals the default; a blank one stays blank for its check to refuse.
    if not value.strip() or value.startswith("~") or Path(value).is_absolute():
        return value
    return str(base_dir / value)
