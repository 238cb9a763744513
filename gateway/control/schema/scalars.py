"""The shapes of single JSON values: ``String``, ``Enum``, ``Integer``, ``Float``,
``Boolean`` and ``Timestamp``.

Each shape's ``_check`` records constraint violations in the ``Context`` and raises
``ServiceError`` 400 ``SerializationException`` for a value of the wrong JSON type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Final

from gateway.control.schema.base import Context, Shape, serialization_error, type_error, where
from gateway.control.schema.java_regex import java_regex_to_python

# Patterns are matched only on strings at most this many times over their maximum
# length. Such a value already fails the length check, and skipping the match bounds the
# cost of a backtracking matcher on hostile input.
_PATTERN_SCAN_FACTOR: Final = 4
# The model's integers are Java ints on the real service.
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1


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

    def _check(self, value: object, path: str, ctx: Context) -> object:
        if not isinstance(value, str):
            raise type_error(path, "a string", value)
        for constraint in self.constraints(value):
            ctx.violation(value, path, constraint)
        return value


class Enum(Shape):
    """A JSON string that must be one of ``values`` (case-sensitive)."""

    __slots__ = ("_allowed", "values")

    def __init__(self, values: Iterable[str]) -> None:
        self.values = tuple(values)
        self._allowed = frozenset(self.values)

    def _check(self, value: object, path: str, ctx: Context) -> object:
        if not isinstance(value, str):
            raise type_error(path, "a string", value)
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

    def _check(self, value: object, path: str, ctx: Context) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise type_error(path, "an integer", value)
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise serialization_error(f"The integer at {where(path)} is out of the 32-bit range.")
        _check_bounds(value, self.min, self.max, path, ctx)
        return value


class Float(Shape):
    """A finite JSON number (integers accepted), with optional inclusive bounds."""

    __slots__ = ("max", "min")

    def __init__(self, min: float | None = None, max: float | None = None) -> None:
        self.min = min
        self.max = max

    def _check(self, value: object, path: str, ctx: Context) -> object:
        if not isinstance(value, int | float) or not is_finite_number(value):
            raise type_error(path, "a finite number", value)
        _check_bounds(value, self.min, self.max, path, ctx)
        return value


class Boolean(Shape):
    """JSON ``true`` or ``false``."""

    __slots__ = ()

    def _check(self, value: object, path: str, ctx: Context) -> object:
        if not isinstance(value, bool):
            raise type_error(path, "a boolean", value)
        return value


class Timestamp(Shape):
    """Epoch seconds as a finite JSON number (what botocore sends), or, leniently, an
    ISO-8601 string."""

    __slots__ = ()

    def _check(self, value: object, path: str, ctx: Context) -> object:
        if isinstance(value, str):
            if _parse_iso(value) is None:
                raise serialization_error(
                    f"The timestamp at {where(path)} is neither epoch seconds nor ISO-8601."
                )
            return value
        if not is_finite_number(value):
            raise type_error(path, "a timestamp (epoch seconds)", value)
        return value


def _check_bounds(
    value: float, low: float | None, high: float | None, path: str, ctx: Context
) -> None:
    if low is not None and value < low:
        ctx.violation(value, path, f"Member must have value greater than or equal to {low}")
    if high is not None and value > high:
        ctx.violation(value, path, f"Member must have value less than or equal to {high}")


def is_finite_number(value: object) -> bool:
    """Whether ``value`` is a JSON number the shapes accept: a finite float or an
    integer within 64 bits (never a boolean)."""
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
