"""Service-model (Java) regular expressions for Python: ``java_regex_to_python``, and
``unicode_word_matcher`` for the one pattern stdlib ``re`` cannot express.

Pure; a pattern with no ``re`` equivalent raises ``ValueError`` when it is translated,
that is when the shape using it is built.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from typing import Final

# Java's "." excludes every line terminator, Python's only "\n".
_JAVA_DOT: Final = "[^\\n\\r\\x85\\u2028\\u2029]"
_JAVA_CLASSES: Final[Mapping[str, str]] = {"ASCII": "\\x00-\\x7F", "Print": "\\x20-\\x7E"}


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
