"""The shapes that hold other values: ``ListOf``, ``MapOf``, ``Structure`` and
``Permissive``; and ``validate``, which checks a whole request against its ``Structure``.

A violation inside a member is recorded at the member's path (see the package
docstring); a wrong JSON type anywhere raises ``ServiceError`` 400
``SerializationException`` at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal

from gateway.control.schema.base import (
    Context,
    Shape,
    clip,
    join_path,
    kind_of,
    serialization_error,
    type_error,
    where,
)
from gateway.control.schema.scalars import String, is_finite_number
from gateway.sagemaker.errors import validation_exception

# Permissive members are walked to prove they are plain JSON; this bounds how deep.
_MAX_PERMISSIVE_DEPTH: Final = 32

JsonKind = Literal["any", "object", "string"]


class ListOf(Shape):
    """A JSON array of ``member`` values; its length must be within ``min``..``max``."""

    __slots__ = ("max", "member", "min")

    def __init__(self, member: Shape, min: int = 0, max: int | None = None) -> None:
        self.member = member
        self.min = min
        self.max = max

    def _check(self, value: object, path: str, ctx: Context) -> object:
        if not isinstance(value, list):
            raise type_error(path, "a list", value)
        if len(value) < self.min:
            ctx.violation(
                value, path, f"Member must have length greater than or equal to {self.min}"
            )
        if self.max is not None and len(value) > self.max:
            ctx.violation(value, path, f"Member must have length less than or equal to {self.max}")
        accepted: list[object] = []
        for index, item in enumerate(value, start=1):
            item_path = f"{path}.{index}.member"
            if item is None:
                ctx.violation(None, item_path, "Member must not be null")
                accepted.append(item)
            else:
                accepted.append(self.member._check(item, item_path, ctx))
        return accepted


class MapOf(Shape):
    """A JSON object of string keys and ``value`` strings, at most ``max_entries`` of them.

    A key that breaks its constraints is reported at the map's path as "Map keys must
    satisfy constraint: [...]"; a value at ``<map>.<key>``. [U] Both spellings follow
    Coral's style but were not confirmed against the real service.
    """

    __slots__ = ("key", "max_entries", "value")

    def __init__(self, key: String, value: String, max_entries: int | None = None) -> None:
        self.key = key
        self.value = value
        self.max_entries = max_entries

    def _check(self, value: object, path: str, ctx: Context) -> object:
        if not isinstance(value, dict):
            raise type_error(path, "a map (JSON object)", value)
        if self.max_entries is not None and len(value) > self.max_entries:
            limit = f"Member must have length less than or equal to {self.max_entries}"
            ctx.violation(value, path, limit)
        for key, item in value.items():
            if not isinstance(key, str):
                raise type_error(path, "string map keys", key)
            broken = self.key.constraints(key)
            if broken:
                ctx.violation(key, path, f"Map keys must satisfy constraint: [{', '.join(broken)}]")
            item_path = f"{path}.{clip(key)}"
            if item is None:
                ctx.violation(None, item_path, "Member must not be null")
            else:
                self.value._check(item, item_path, ctx)
        return value


class Structure(Shape):
    """A JSON object with the given members; ``required`` names those that must be
    present and not null.

    Unknown members are violations ("Member is not supported by Coldbrew"), not ignored
    as the real service's deserializer would: a member Coldbrew does not model is
    configuration it would otherwise silently drop. The path shows the unknown name as
    the client spelled it, since it has no model name to camelCase.
    """

    __slots__ = ("_paths", "members", "required")

    def __init__(self, members: Mapping[str, Shape], required: Iterable[str] = frozenset()) -> None:
        self.members: Mapping[str, Shape] = MappingProxyType(dict(members))
        self.required = frozenset(required)
        unknown = self.required - self.members.keys()
        if unknown:
            raise ValueError(f"required members not in the structure: {sorted(unknown)}")
        self._paths = MappingProxyType({name: camel_case(name) for name in self.members})

    def _check(self, value: object, path: str, ctx: Context) -> object:
        if not isinstance(value, dict):
            raise type_error(path, "a structure (JSON object)", value)
        return self._check_members(value, path, ctx)

    def _check_members(self, value: dict[Any, Any], path: str, ctx: Context) -> dict[str, Any]:
        """Check the members of an object (see ``_check``); returns the accepted ones."""
        # Null means absent, as in the real service's JSON protocol; the accepted value
        # leaves such members out so the operations never see them.
        accepted: dict[str, Any] = {}
        for name, shape in self.members.items():
            member_path = join_path(path, self._paths[name])
            item = value.get(name)
            if item is not None:
                accepted[name] = shape._check(item, member_path, ctx)
            elif name in self.required:
                ctx.violation(None, member_path, "Member must not be null")
        for key in value:
            if not isinstance(key, str):
                raise type_error(path, "string member names", key)
            if key not in self.members:
                ctx.add(
                    f"Value at '{join_path(path, clip(key))}' failed to satisfy constraint: "
                    "Member is not supported by Coldbrew"
                )
        return accepted


class Permissive(Shape):
    """Any plain JSON value of the given kind, otherwise unchecked: for members whose
    full model is large and irrelevant to Coldbrew, which the operations refuse or
    ignore by name. The value must still be plain JSON (string keys, finite numbers,
    integers within 64 bits) nested at most 32 deep, so it can be stored and echoed."""

    __slots__ = ("kind",)

    def __init__(self, kind: JsonKind = "any") -> None:
        self.kind: JsonKind = kind

    def _check(self, value: object, path: str, ctx: Context) -> object:
        if self.kind == "object" and not isinstance(value, dict):
            raise type_error(path, "a structure (JSON object)", value)
        if self.kind == "string" and not isinstance(value, str):
            raise type_error(path, "a string", value)
        _require_plain_json(value, path)
        return value


def validate(shape: Structure, value: object, *, root: str) -> dict[str, Any]:
    """Check a decoded request body against its input ``shape``.

    ``root`` names the whole input in messages about the body itself (for example
    ``"CreateModel input"``); member paths never include it. Returns the accepted input:
    ``value`` unchanged except that members given as JSON null are left out (null means
    absent). Raises ``ServiceError`` 400 ``SerializationException`` for the first wrong
    JSON type, else ``ServiceError`` 400 ``ValidationException`` listing every violation;
    never anything else, whatever ``value`` is.
    """
    if not isinstance(value, dict):
        raise serialization_error(f"The {root} must be a JSON object, not {kind_of(value)}.")
    ctx = Context()
    accepted = shape._check_members(value, "", ctx)
    if ctx.count:
        raise validation_exception(ctx.message())
    return accepted


def camel_case(name: str) -> str:
    """The member path segment for a model member: ``MemorySizeInMB`` ->
    ``memorySizeInMB`` (only the first letter is lowered, as Coral does)."""
    return name[:1].lower() + name[1:]


def _require_plain_json(value: object, path: str) -> None:
    """Raise SerializationException unless ``value`` is plain, bounded-depth JSON."""
    # An explicit stack: hostile nesting must not reach Python's recursion limit.
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > _MAX_PERMISSIVE_DEPTH:
            raise serialization_error(
                f"The value at {where(path)} is nested more than "
                f"{_MAX_PERMISSIVE_DEPTH} levels deep."
            )
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise type_error(path, "string member names", key)
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif not (item is None or isinstance(item, str | bool) or is_finite_number(item)):
            raise type_error(path, "plain JSON", item)
