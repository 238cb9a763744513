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

from gateway.control.schema.base import Shape
from gateway.control.schema.composites import (
    JsonKind,
    ListOf,
    MapOf,
    Permissive,
    Structure,
    camel_case,
    validate,
)
from gateway.control.schema.java_regex import java_regex_to_python, unicode_word_matcher
from gateway.control.schema.scalars import (
    Boolean,
    Enum,
    Float,
    Integer,
    String,
    Timestamp,
)

__all__ = [
    "Boolean",
    "Enum",
    "Float",
    "Integer",
    "JsonKind",
    "ListOf",
    "MapOf",
    "Permissive",
    "Shape",
    "String",
    "Structure",
    "Timestamp",
    "camel_case",
    "java_regex_to_python",
    "unicode_word_matcher",
    "validate",
]
