"""A small declarative shape language for control-plane inputs, and its validator.

Shapes mirror the botocore service model: ``String``, ``Integer``, ``Float``, ``Boolean``,
``Timestamp``, ``Enum``, ``ListOf``, ``MapOf``, ``Structure``, plus ``Permissive`` for
members Coldbrew models loosely. Shapes are never changed after construction, so they
may be shared freely.

``validate`` checks one decoded JSON request against a ``Structure`` the way the real
control plane does (spec §2.3, §2.4): botocore checks only required members, types and
minimums, so every maximum, pattern and enum is enforced here, for any JSON a raw client
may send. It raises nothing but ``ServiceError``:

* ``SerializationException`` (400) at the first value of the wrong JSON type, naming its
  member path (the real service fails while deserializing, before any constraint check);
* ``ValidationException`` (400) listing every constraint violation in Coral's format::

      2 validation errors detected: Value 'x' at 'modelName' failed to satisfy
      constraint: Member must ...; Value ...

Member paths are the camelCase of the model's PascalCase names, joined with dots; list
items are ``<list>.<1-based index>.member`` and map values ``<map>.<key>``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal

from gateway.sagemaker.errors import ServiceError, validation_exception

# Values quoted in messages are cut here, so a huge value cannot make a huge message.
_MAX_VALUE_CHARS: Final = 100
# Every violation is counted, but a message lists at most this many of them. [U] Whether
# the real service caps the list; only absurd inputs reach the cap.
_MAX_LISTED_ERRORS: Final = 100
# Patterns are matched only on strings at most this many times over their maximum
# length. Such a value already fails the length check, and skipping the match bounds the
# cost of a backtracking matcher on hostile input.
_PATTERN_SCAN_FACTOR: Final = 4
# Permissive members are walked to prove they are plain JSON; this bounds how deep.
_MAX_PERMISSIVE_DEPTH: Final = 32
# The model's integers are Java ints on the real service.
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
# Java's "." excludes every line terminator, Python's only "\n".
_JAVA_DOT: Final = "[^\\n\\r\\x85\\u2028\\u2029]"
_JAVA_CLASSES: Final[Mapping[str, str]] = {"ASCII": "\\x00-\\x7F", "Print": "\\x20-\\x7E"}

JsonKind = Literal["any", "object", "string"]


class _Context:
    """The violations found so far in one ``validate`` call."""

    __slots__ = ("count", "listed")

    def __init__(self) -> None:
        self.count = 0
        self.listed: list[str] = []

    def add(self, entry: str) -> None:
        self.count += 1
        if len(self.listed) < _MAX_LISTED_ERRORS:
            self.listed.append(entry)

    def violation(self, value: object, path: str, constraint: str) -> None:
        shown = "null" if value is None else f"'{_render(value)}'"
        self.add(f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}")

    def message(self) -> str:
        noun = "error" if self.count == 1 else "errors"
        return _printable(f"{self.count} validation {noun} detected: " + "; ".join(self.listed))


class Shape(ABC):
    """A member's type and constraints; never changed after construction."""

    __slots__ = ()

    @abstractmethod
    def _check(self, value: object, path: str, ctx: _Context) -> object:
        """Check a non-null ``value`` at ``path``: record violations in ``ctx``, raise
        SerializationException for a wrong JSON type, and return the accepted value."""


class String(Shape):
    """A JSON string with optional length bounds and a full-match pattern.

    ``pattern`` is the service model's (Java) regular expression, shown as-is in
    messages; it is translated for Python with ``java_regex_to_python``. A pattern Python
    cannot express (such as ``\\p{L}``) needs ``matcher``, a hand-written full-match
    predicate; without one the constructor raises ``ValueError``.
    """

    __slots__ = ("_matcher", "max", "min", "pattern")

    def __init__(
        self,
        min: int = 0,
        max: int | None = None,
        pattern: str | None = None,
        *,
        matcher: Callable[[str], bool] | None = None,
    ) -> None:
        if matcher is not None and pattern is None:
            raise ValueError("a matcher implements a pattern: give the pattern too")
        self.min = min
        self.max = max
        self.pattern = pattern
        self._matcher: Callable[[str], object] | None = matcher
        if matcher is None and pattern is not None:
            self._matcher = re.compile(java_regex_to_python(pattern), re.ASCII).fullmatch

    def constraints(self, value: str) -> list[str]:
        """The constraint wordings ``value`` violates, in the real service's order."""
        failed = []
        # [U] Lengths count code points; the real service may count UTF-16 units, which
        # differs only for characters outside the Basic Multilingual Plane.
        if len(value) < self.min:
            failed.append(f"Member must have length greater than or equal to {self.min}")
        if self.max is not None and len(value) > self.max:
            failed.append(f"Member must have length less than or equal to {self.max}")
        if self._matcher is not None and self.pattern is not None:
            worth_matching = self.max is None or len(value) <= self.max * _PATTERN_SCAN_FACTOR
            if worth_matching and not self._matcher(value):
                shown = self.pattern if self.pattern.startswith("^") else f"^{self.pattern}"
                failed.append(f"Member must satisfy regular expression pattern: {shown}")
        return failed

    def _check(self, value: object, path: str, ctx: _Context) -> object:
        if not isinstance(value, str):
            raise _type_error(path, "a string", value)
        for constraint in self.constraints(value):
            ctx.violation(value, path, constraint)
        return value


class Enum(Shape):
    """A JSON string that must be one of ``values`` (case-sensitive)."""

    __slots__ = ("_allowed", "values")

    def __init__(self, values: Iterable[str]) -> None:
        self.values = tuple(values)
        self._allowed = frozenset(self.values)

    def _check(self, value: object, path: str, ctx: _Context) -> object:
        if not isinstance(value, str):
            raise _type_error(path, "a string", value)
        if value not in self._allowed:
            listed = ", ".join(self.values)
            ctx.violation(value, path, f"Member must satisfy enum value set: [{listed}]")
        return value


class Integer(Shape):
    """A JSON integer within the 32-bit range, with optional inclusive bounds.

    Booleans and floats (even integral ones such as ``1024.0``) are type errors: botocore
    always sends integers, and a float here would surprise the operations downstream.
    """

    __slots__ = ("max", "min")

    def __init__(self, min: int | None = None, max: int | None = None) -> None:
        self.min = min
        self.max = max

    def _check(self, value: object, path: str, ctx: _Context) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(path, "an integer", value)
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise _serialization(f"The integer at {_where(path)} is out of the 32-bit range.")
        _check_bounds(value, self.min, self.max, path, ctx)
        return value


class Float(Shape):
    """A finite JSON number (integers accepted), with optional inclusive bounds."""

    __slots__ = ("max", "min")

    def __init__(self, min: float | None = None, max: float | None = None) -> None:
        self.min = min
        self.max = max

    def _check(self, value: object, path: str, ctx: _Context) -> object:
        if not isinstance(value, int | float) or not _is_finite_number(value):
            raise _type_error(path, "a finite number", value)
        _check_bounds(value, self.min, self.max, path, ctx)
        return value


class Boolean(Shape):
    """JSON ``true`` or ``false``."""

    __slots__ = ()

    def _check(self, value: object, path: str, ctx: _Context) -> object:
        if not isinstance(value, bool):
            raise _type_error(path, "a boolean", value)
        return value


class Timestamp(Shape):
    """Epoch seconds as a finite JSON number (what botocore sends), or, leniently, an
    ISO-8601 string; ``to_epoch_seconds`` turns either into a float."""

    __slots__ = ()

    def _check(self, value: object, path: str, ctx: _Context) -> object:
        if isinstance(value, str):
            if _parse_iso(value) is None:
                raise _serialization(
                    f"The timestamp at {_where(path)} is neither epoch seconds nor ISO-8601."
                )
            return value
        if not _is_finite_number(value):
            raise _type_error(path, "a timestamp (epoch seconds)", value)
        return value


class ListOf(Shape):
    """A JSON array of ``member`` values; its length must be within ``min``..``max``."""

    __slots__ = ("max", "member", "min")

    def __init__(self, member: Shape, min: int = 0, max: int | None = None) -> None:
        self.member = member
        self.min = min
        self.max = max

    def _check(self, value: object, path: str, ctx: _Context) -> object:
        if not isinstance(value, list):
            raise _type_error(path, "a list", value)
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

    def _check(self, value: object, path: str, ctx: _Context) -> object:
        if not isinstance(value, dict):
            raise _type_error(path, "a map (JSON object)", value)
        if self.max_entries is not None and len(value) > self.max_entries:
            limit = f"Member must have length less than or equal to {self.max_entries}"
            ctx.violation(value, path, limit)
        for key, item in value.items():
            if not isinstance(key, str):
                raise _type_error(path, "string map keys", key)
            broken = self.key.constraints(key)
            if broken:
                ctx.violation(key, path, f"Map keys must satisfy constraint: [{', '.join(broken)}]")
            item_path = f"{path}.{_clip(key)}"
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

    def _check(self, value: object, path: str, ctx: _Context) -> object:
        if not isinstance(value, dict):
            raise _type_error(path, "a structure (JSON object)", value)
        return self._check_members(value, path, ctx)

    def _check_members(self, value: dict[Any, Any], path: str, ctx: _Context) -> dict[str, Any]:
        """Check the members of an object (see ``_check``); returns the accepted ones."""
        # Null means absent, as in the real service's JSON protocol; the accepted value
        # leaves such members out so the operations never see them.
        accepted: dict[str, Any] = {}
        for name, shape in self.members.items():
            member_path = _join(path, self._paths[name])
            item = value.get(name)
            if item is not None:
                accepted[name] = shape._check(item, member_path, ctx)
            elif name in self.required:
                ctx.violation(None, member_path, "Member must not be null")
        for key in value:
            if not isinstance(key, str):
                raise _type_error(path, "string member names", key)
            if key not in self.members:
                ctx.add(
                    f"Value at '{_join(path, _clip(key))}' failed to satisfy constraint: "
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

    def _check(self, value: object, path: str, ctx: _Context) -> object:
        if self.kind == "object" and not isinstance(value, dict):
            raise _type_error(path, "a structure (JSON object)", value)
        if self.kind == "string" and not isinstance(value, str):
            raise _type_error(path, "a string", value)
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
        raise _serialization(f"The {root} must be a JSON object, not {_kind(value)}.")
    ctx = _Context()
    accepted = shape._check_members(value, "", ctx)
    if ctx.count:
        raise validation_exception(ctx.message())
    return accepted


def to_epoch_seconds(value: int | float | str) -> float:
    """A value ``Timestamp`` accepted, as epoch seconds. ISO-8601 strings without an
    offset are taken as UTC. Raises ``ValueError`` for anything ``Timestamp`` refuses."""
    if isinstance(value, str):
        parsed = _parse_iso(value)
        if parsed is None:
            raise ValueError(f"not an ISO-8601 timestamp: {_clip(value)!r}")
        return parsed
    if not _is_finite_number(value):
        raise ValueError("not a finite number of epoch seconds")
    return float(value)


def camel_case(name: str) -> str:
    """The member path segment for a model member: ``MemorySizeInMB`` ->
    ``memorySizeInMB`` (only the first letter is lowered, as Coral does)."""
    return name[:1].lower() + name[1:]


def java_regex_to_python(pattern: str) -> str:
    """The Python ``re`` (compiled with ``re.ASCII``, which gives ``\\d``, ``\\s`` and
    ``\\w`` Java's ASCII meaning) equivalent of a service-model pattern.

    Translates ``\\p{ASCII}``, ``\\p{Print}`` (Java's POSIX meaning), ``\\z`` and the
    unescaped ``.`` (which excludes every Java line terminator). Raises ``ValueError``
    for constructs with no ``re`` equivalent: other ``\\p{..}``/``\\P{..}`` classes,
    nested classes and class intersections.
    """
    out: list[str] = []
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            piece, index = _translate_escape(pattern, index, in_class)
            out.append(piece)
            continue
        if in_class and (char == "[" or pattern.startswith("&&", index)):
            raise ValueError(f"nested character classes are not supported: {pattern!r}")
        if char == "[":
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(_JAVA_DOT if char == "." and not in_class else char)
        index += 1
    return "".join(out)


def unicode_word_matcher(extra: str) -> Callable[[str], bool]:
    """A full-match predicate for ``[\\p{L}\\p{Z}\\p{N}<extra>]*``: every character is a
    Unicode letter, separator or number, or one of ``extra`` (the tag key and value
    pattern, which stdlib ``re`` cannot express)."""
    allowed = frozenset(extra)

    def matches(value: str) -> bool:
        return all(char in allowed or unicodedata.category(char)[0] in "LZN" for char in value)

    return matches


def _translate_escape(pattern: str, index: int, in_class: bool) -> tuple[str, int]:
    """The translation of the escape at ``pattern[index]`` and the index after it."""
    code = pattern[index + 1 : index + 2]
    if code in ("p", "P"):
        end = pattern.find("}", index)
        name = pattern[index + 3 : end] if pattern.startswith("{", index + 2) and end > 0 else ""
        if code == "P" or name not in _JAVA_CLASSES:
            raise ValueError(f"no Python equivalent for \\{code}{{{name}}} in {pattern!r}")
        body = _JAVA_CLASSES[name]
        return (body if in_class else f"[{body}]"), end + 1
    if code == "z":
        return "\\Z", index + 2
    if not code:
        raise ValueError(f"pattern ends with a lone backslash: {pattern!r}")
    return pattern[index : index + 2], index + 2


def _check_bounds(
    value: float, low: float | None, high: float | None, path: str, ctx: _Context
) -> None:
    if low is not None and value < low:
        ctx.violation(value, path, f"Member must have value greater than or equal to {low}")
    if high is not None and value > high:
        ctx.violation(value, path, f"Member must have value less than or equal to {high}")


def _is_finite_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value.bit_length() <= 64
    return isinstance(value, float) and math.isfinite(value)


def _parse_iso(text: str) -> float | None:
    """Epoch seconds of an ISO-8601 string (UTC unless it carries an offset), or None."""
    # No ISO-8601 timestamp is longer; the cap keeps the parser off megabyte strings.
    if len(text) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _require_plain_json(value: object, path: str) -> None:
    """Raise SerializationException unless ``value`` is plain, bounded-depth JSON."""
    # An explicit stack: hostile nesting must not reach Python's recursion limit.
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > _MAX_PERMISSIVE_DEPTH:
            raise _serialization(
                f"The value at {_where(path)} is nested more than "
                f"{_MAX_PERMISSIVE_DEPTH} levels deep."
            )
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise _type_error(path, "string member names", key)
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif not (item is None or isinstance(item, str | bool) or _is_finite_number(item)):
            raise _type_error(path, "plain JSON", item)


def _join(path: str, segment: str) -> str:
    return f"{path}.{segment}" if path else segment


def _where(path: str) -> str:
    return f"'{path}'" if path else "the top level"


def _serialization(message: str) -> ServiceError:
    return ServiceError(400, "SerializationException", _printable(message))


def _type_error(path: str, expected: str, value: object) -> ServiceError:
    return _serialization(f"Expected {expected} at {_where(path)}, got {_kind(value)}.")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a non-JSON value ({type(value).__name__})"


def _render(value: object, depth: int = 0) -> str:
    """``value`` as a message shows it: strings as given, numbers as written, lists and
    maps in Java's ``[a, b]``/``{k=v}`` style; bounded in length and depth."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # str() of a huge int is slow and, past 4300 digits, raises.
        return str(value) if value.bit_length() <= 64 else "(a very large integer)"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _clip(value)
    if depth >= 3:
        return "..."
    if isinstance(value, list):
        shown = [_render(item, depth + 1) for item in value[:10]]
        return _clip("[" + ", ".join(shown) + (", ..." if len(value) > 10 else "") + "]")
    if isinstance(value, dict):
        pairs = list(value.items())[:10]
        shown = [f"{_render(k, depth + 1)}={_render(v, depth + 1)}" for k, v in pairs]
        return _clip("{" + ", ".join(shown) + (", ..." if len(value) > 10 else "") + "}")
    return f"({type(value).__name__})"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "..."


def _printable(message: str) -> str:
    """``message`` with lone surrogates escaped, so it always encodes as UTF-8 JSON."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")
