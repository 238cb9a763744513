"""What every shape shares: the ``Shape`` interface, the violations one ``validate`` call
collects (``Context``), and how values and errors are written into messages.

Messages quote at most ``_MAX_VALUE_CHARS`` of a value and list at most
``_MAX_LISTED_ERRORS`` violations, and always encode as UTF-8 JSON. Errors are
``ServiceError`` 400s: ``SerializationException`` for a wrong JSON type, and the
``ValidationException`` that ``Context.message`` words.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Final

from gateway.sagemaker.errors import ServiceError

# Values quoted in messages are cut here, so a huge value cannot make a huge message.
_MAX_VALUE_CHARS: Final = 100
# Every violation is counted, but a message lists at most this many of them. [U] Whether
# the real service caps the list; only absurd inputs reach the cap.
_MAX_LISTED_ERRORS: Final = 100


class Context:
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
    def _check(self, value: object, path: str, ctx: Context) -> object:
        """Check a non-null ``value`` at ``path``: record violations in ``ctx``, raise
        SerializationException for a wrong JSON type, and return the accepted value."""


def join_path(path: str, segment: str) -> str:
    """The member path of ``segment`` below ``path`` (the top level has the empty path)."""
    return f"{path}.{segment}" if path else segment


def where(path: str) -> str:
    """``path`` as a SerializationException message names it."""
    return f"'{path}'" if path else "the top level"


def serialization_error(message: str) -> ServiceError:
    """A 400 ``SerializationException`` with ``message`` (made printable)."""
    return ServiceError(400, "SerializationException", _printable(message))


def type_error(path: str, expected: str, value: object) -> ServiceError:
    """The SerializationException for a value of the wrong JSON type at ``path``."""
    return serialization_error(f"Expected {expected} at {where(path)}, got {kind_of(value)}.")


def kind_of(value: object) -> str:
    """The JSON kind of a decoded value, as messages name it ("a string", "null")."""
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
        return clip(value)
    if depth >= 3:
        return "..."
    if isinstance(value, list):
        shown = [_render(item, depth + 1) for item in value[:10]]
        return clip("[" + ", ".join(shown) + (", ..." if len(value) > 10 else "") + "]")
    if isinstance(value, dict):
        pairs = list(value.items())[:10]
        shown = [f"{_render(k, depth + 1)}={_render(v, depth + 1)}" for k, v in pairs]
        return clip("{" + ", ".join(shown) + (", ..." if len(value) > 10 else "") + "}")
    return f"({type(value).__name__})"


def clip(text: str) -> str:
    """``text`` cut to ``_MAX_VALUE_CHARS`` characters, marked with "..." when cut."""
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "..."


def _printable(message: str) -> str:
    """``message`` with lone surrogates escaped, so it always encodes as UTF-8 JSON."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")
