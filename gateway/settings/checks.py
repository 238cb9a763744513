"""Value checks for settings: small rules a declared field names as its ``check``.

A check takes an already type-checked value and returns None when it is good, else the
problem as a sentence fragment naming the rule and the value ("must be > 0, got -1");
``SettingsError`` adds the key in front.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

# A check returns None for a good value, else the problem ("must be > 0, got -1").
Check = Callable[[Any], str | None]


def show(value: object) -> str:
    """``value`` as a message quotes it: strings in quotes, floats without a needless .0."""
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def between(low: int, high: int) -> Check:
    """An integer from ``low`` to ``high``, both included."""

    def check(value: int) -> str | None:
        ok = low <= value <= high
        return None if ok else f"must be between {low} and {high}, got {value}"

    return check


def positive(value: float) -> str | None:
    """A finite number above zero: a duration in seconds."""
    # nan fails every comparison and inf would disable a timeout: neither is a duration.
    return None if math.isfinite(value) and value > 0 else f"must be > 0, got {show(value)}"


def one_of(*allowed: object) -> Check:
    """One of the ``allowed`` values, which the message lists in this order."""
    listed = ", ".join(str(a) for a in allowed)

    def check(value: object) -> str | None:
        return None if value in allowed else f"must be one of {listed}, got {show(value)}"

    return check


def matching(pattern: str, max_len: int = 1024) -> Check:
    """A string of at most ``max_len`` characters that ``pattern`` (ASCII) fully matches."""
    compiled = re.compile(pattern, re.ASCII)

    def check(value: str) -> str | None:
        if len(value) <= max_len and compiled.fullmatch(value):
            return None
        return f"must match {pattern} (at most {max_len} characters), got {value!r}"

    return check


def not_empty(value: str) -> str | None:
    """A string with something besides whitespace."""
    return None if value.strip() else "must not be empty"
