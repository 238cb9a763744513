"""Declared settings fields: their metadata and their validation.

A setting is a field of a frozen dataclass whose metadata (``meta``/``setting``) carries
its help text (which the shipped config file repeats), its value check and whether it is
a path. A section's ``__post_init__`` calls ``validate``, so it is valid however it was
built. Every refusal is a ``SettingsError`` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, fields
from types import MappingProxyType, NoneType, UnionType
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from gateway.settings.checks import Check, show

_V = TypeVar("_V")


class SettingsError(ValueError):
    """A configuration file, value or combination of values is refused.

    ``key`` is the dotted path of the offending setting (``endpoints[0].memory_size_mb``),
    or None when the file itself cannot be read or parsed; ``problem`` is the reason.
    """

    def __init__(self, problem: str, key: str | None = None) -> None:
        super().__init__(problem if key is None else f"config key {key}: {problem}")
        self.problem = problem
        self.key = key

    def within(self, prefix: str) -> SettingsError:
        """The same error with ``key`` placed under ``prefix`` (a no-op for an empty one)."""
        if not prefix or self.key is None:
            return self
        return SettingsError(self.problem, f"{prefix}.{self.key}")


def meta(text: str, check: Check | None = None, *, path: bool = False) -> dict[str, object]:
    """Field metadata: help ``text``, a value ``check``, and whether a relative value in a
    config file is a path relative to that file's folder."""
    return {"help": text, "check": check, "path": path}


def setting(default: _V, text: str, check: Check | None = None, *, path: bool = False) -> _V:
    """A field with a ``default``; see ``meta`` for the rest."""
    return field(default=default, metadata=meta(text, check, path=path))


def validate(obj: Any) -> None:
    """Check each field of the dataclass ``obj`` against its type and its check.

    Normalises in place: an int given for a float becomes a float, a mapping becomes a
    read-only copy. Raises ``SettingsError`` keyed by the field name.
    """
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        normal = _typed(hints[f.name], value, f.name)
        if normal is not value:
            # Frozen dataclass: normalising during construction is the one allowed write.
            object.__setattr__(obj, f.name, normal)
        check: Check | None = f.metadata["check"]
        if normal is not None and check is not None and (problem := check(normal)) is not None:
            raise SettingsError(problem, f.name)


def _typed(kind: Any, value: object, key: str) -> object:
    """``value`` if it has type ``kind`` (normalised), else a ``SettingsError``."""
    origin = get_origin(kind)
    if origin is UnionType:
        if value is None and NoneType in get_args(kind):
            return None
        (kind,) = (arg for arg in get_args(kind) if arg is not NoneType)
        origin = get_origin(kind)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(f"must be true or false, got {describe_value(value)}", key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is Mapping and isinstance(value, Mapping):
        for name, text in value.items():
            _typed(str, name, key)
            _typed(str, text, f"{key}.{name}")
        return MappingProxyType(dict(value))
    if origin is tuple and isinstance(value, tuple):
        item_kind = get_args(kind)[0]
        for index, item in enumerate(value):
            _typed(item_kind, item, f"{key}[{index}]")
        return value
    # bool is an int subclass, but true is no port number.
    if isinstance(kind, type) and isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise SettingsError(f"must be {_expected(kind)}, got {describe_value(value)}", key)


def _expected(kind: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", Mapping: "a table"}
    return names.get(kind) or names.get(get_origin(kind)) or f"a {getattr(kind, '__name__', kind)}"


def describe_value(value: object) -> str:
    """A TOML value as a refusal names it: ``integer 5``, ``string 'a'``, ``a table``."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float | str):
        return f"{'number' if isinstance(value, float) else 'string'} {show(value)}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return f"{type(value).__name__} {value}"
