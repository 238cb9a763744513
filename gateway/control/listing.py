"""Filtering, sorting and pagination for ListModels, ListEndpointConfigs and ListEndpoints.

Pure: no I/O, no clock. The caller adapts its records to ``Listable``, reads the request
with ``ListQuery.from_request`` and asks ``list_page`` for one page and the next token.

Pagination contract (what boto3's paginator relies on):

* A page holds at most ``max_results`` items; a next token is returned only when more
  items remain, so the last page carries none.
* The order is total: the sort key is followed by the name (case-folded, then exact) and
  the creation time, so equal sort values never make pages skip or repeat items.
* A token records the sort key of the last item it follows, not an offset: the next page
  starts after that key. Items deleted or inserted between pages therefore never make a
  surviving item skip or repeat (an inserted item shows up only if it sorts after the
  position). An item whose *sort key* changes between pages (its status, under
  ``SortBy=Status``) may be skipped or repeated.
* Successive tokens of one listing always differ, since each records a key strictly
  beyond the previous one.
* A token is bound to the query's sort and filters (not to ``MaxResults``, which may
  change between pages); using it with another sort or filter raises ``InvalidToken``.
* Tokens are URL-safe base64 text of at most ``MAX_TOKEN_LENGTH`` characters for any
  name the service accepts (names are at most 63 characters). A checksum rejects random
  or damaged text. It is not a secret: a hand-made token can only choose where a listing
  starts, which a caller could do with the filters anyway.
* Items are assumed to have distinct names (the registry guarantees it). Two items with
  the same name and creation time are indistinguishable to a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

SORT_KEYS: Final = ("Name", "CreationTime", "Status")
"""Every ``SortBy`` value; ``Status`` is valid only for ListEndpoints."""
SORT_ORDERS: Final = ("Ascending", "Descending")
ENDPOINT_STATUSES: Final = (
    "OutOfService",
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "InService",
    "Deleting",
    "Failed",
    "UpdateRollbackFailed",
)
MAX_RESULTS_LIMIT: Final = 100
MAX_TOKEN_LENGTH: Final = 8192
INVALID_TOKEN_MESSAGE: Final = "Invalid pagination token."
"""[U] The real service's wording for a bad ``NextToken`` is unconfirmed."""

_NAME_CONTAINS_MAX: Final = 63
_NAME_CONTAINS_PATTERN: Final = "[a-zA-Z0-9-]+"
_TOKEN_TEXT: Final = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN_VERSION: Final = 1
_CHECKSUM_BYTES: Final = 8

_SortKey = tuple[str | float, ...]


@dataclass(frozen=True, slots=True)
class Listable:
    """What listing needs of a record; ``item`` carries the caller's record through.

    Times are epoch seconds. ``last_modified`` of ``None`` (models, configs) counts as
    ``created`` for the last-modified filters; ``status`` of ``None`` never equals a
    ``StatusEquals`` filter and sorts before every status.
    """

    name: str
    created: float
    last_modified: float | None = None
    status: str | None = None
    item: Any = None


class InvalidQuery(Exception):
    """A List* request member has the wrong type or breaks a constraint.

    ``str(error)`` is the client-facing message in the service's constraint style
    (answer it as ``ValidationException``); ``violations`` lists each broken constraint.
    """

    def __init__(self, violations: list[str]) -> None:
        count = len(violations)
        noun = "error" if count == 1 else "errors"
        super().__init__(f"{count} validation {noun} detected: {'; '.join(violations)}")
        self.violations = violations


class InvalidToken(Exception):
    """A ``NextToken`` that this module did not issue for this query.

    ``str(error)`` is ``INVALID_TOKEN_MESSAGE`` (answer it as ``ValidationException``);
    ``reason`` says what was wrong, for logs only.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(INVALID_TOKEN_MESSAGE)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The sort, filters and page request of one List* call.

    Filters: ``name_contains`` is a case-insensitive substring ([U] the real service's
    case sensitivity is unconfirmed). ``creation_time_before`` keeps ``created < t`` and
    ``creation_time_after`` keeps ``created >= t`` (the model doc says "greater than or
    equal"); the last-modified pair works the same way ([U] not documented). All given
    filters must hold. Constructing one with an unknown sort or order, or
    ``max_results < 1``, raises ``ValueError``.
    """

    sort_by: str = "CreationTime"
    sort_order: str = "Descending"
    name_contains: str | None = None
    creation_time_before: float | None = None
    creation_time_after: float | None = None
    last_modified_time_before: float | None = None
    last_modified_time_after: float | None = None
    status_equals: str | None = None
    max_results: int = 10
    next_token: str | None = None

    def __post_init__(self) -> None:
        if self.sort_by not in SORT_KEYS:
            raise ValueError(f"unknown sort key {self.sort_by!r}")
        if self.sort_order not in SORT_ORDERS:
            raise ValueError(f"unknown sort order {self.sort_order!r}")
        if self.max_results < 1:
            raise ValueError(f"max_results must be at least 1, not {self.max_results}")

    @classmethod
    def from_request(
        cls,
        body: Mapping[str, Any],
        *,
        default_max_results: int,
        sort_keys: Collection[str] = SORT_KEYS,
    ) -> ListQuery:
        """Read a List* request body (PascalCase members, timestamps as epoch numbers).

        ``sort_keys`` is the operation's ``SortBy`` enum (ListModels and
        ListEndpointConfigs pass ``("Name", "CreationTime")``). Absent and ``null``
        members take their defaults. Raises ``InvalidQuery`` listing every member of the
        wrong type or outside its constraint (enum, 1..100, pattern, length). The token
        is not checked here: ``list_page`` raises ``InvalidToken`` for a bad one.
        """
        reader = _Reader(body)
        sort_by = reader.enum("SortBy", tuple(sort_keys)) or "CreationTime"
        sort_order = reader.enum("SortOrder", SORT_ORDERS) or "Descending"
        name_contains = reader.name_contains("NameContains")
        creation_before = reader.timestamp("CreationTimeBefore")
        creation_after = reader.timestamp("CreationTimeAfter")
        modified_before = reader.timestamp("LastModifiedTimeBefore")
        modified_after = reader.timestamp("LastModifiedTimeAfter")
        status_equals = reader.enum("StatusEquals", ENDPOINT_STATUSES)
        max_results = reader.max_results("MaxResults")
        next_token = reader.string("NextToken")
        if reader.violations:
            raise InvalidQuery(reader.violations)
        return cls(
            sort_by=sort_by,
            sort_order=sort_order,
            name_contains=name_contains,
            creation_time_before=creation_before,
            creation_time_after=creation_after,
            last_modified_time_before=modified_before,
            last_modified_time_after=modified_after,
            status_equals=status_equals,
            max_results=default_max_results if max_results is None else max_results,
            next_token=next_token,
        )


def list_page(items: Iterable[Listable], query: ListQuery) -> tuple[list[Listable], str | None]:
    """One page of the items that pass the query's filters, in its order, and the next token.

    The token is ``None`` when no item follows the page. Raises ``InvalidToken`` (and
    nothing else) for a ``next_token`` that is empty, longer than ``MAX_TOKEN_LENGTH``,
    damaged, or issued for another sort or filters; it is checked before ``items`` is read.
    """
    fingerprint = _fingerprint(query)
    position = None if query.next_token is None else _decode(query.next_token, fingerprint)
    descending = query.sort_order == "Descending"
    keyed = [(_key_of(query.sort_by, item), item) for item in items if _matches(item, query)]
    if position is not None:
        start = _key_of(query.sort_by, position)
        keyed = [pair for pair in keyed if (pair[0] < start if descending else pair[0] > start)]
    keyed.sort(key=lambda pair: pair[0], reverse=descending)
    page = [item for _, item in keyed[: query.max_results]]
    more = len(keyed) > query.max_results
    return page, _encode(fingerprint, page[-1]) if more else None


def _matches(item: Listable, query: ListQuery) -> bool:
    if query.name_contains is not None and (
        query.name_contains.casefold() not in item.name.casefold()
    ):
        return False
    if not _within(item.created, query.creation_time_after, query.creation_time_before):
        return False
    modified = item.created if item.last_modified is None else item.last_modified
    if not _within(modified, query.last_modified_time_after, query.last_modified_time_before):
        return False
    return query.status_equals is None or item.status == query.status_equals


def _within(when: float, at_or_after: float | None, before: float | None) -> bool:
    return (at_or_after is None or when >= at_or_after) and (before is None or when < before)


def _key_of(sort_by: str, item: Listable) -> _SortKey:
    """The total order of items under ``sort_by`` (ascending)."""
    folded = item.name.casefold()
    created = float(item.created)
    if sort_by == "Name":
        return (folded, item.name, created)
    if sort_by == "Status":
        # [U] The real service's Status order is unconfirmed; alphabetical is a guess.
        return (item.status or "", folded, item.name, created)
    return (created, folded, item.name)


def _fingerprint(query: ListQuery) -> str:
    """A digest of everything a token must be used with again: the sort and the filters."""
    times = (
        query.creation_time_before,
        query.creation_time_after,
        query.last_modified_time_before,
        query.last_modified_time_after,
    )
    fields = [
        query.sort_by,
        query.sort_order,
        None if query.name_contains is None else query.name_contains.casefold(),
        # float() so that 1700000000 and 1700000000.0 are the same filter.
        *(None if when is None else float(when) for when in times),
        query.status_equals,
    ]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:32]


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()[:_CHECKSUM_BYTES]


def _encode(fingerprint: str, last: Listable) -> str:
    fields = [_TOKEN_VERSION, fingerprint, last.name, float(last.created), last.status]
    payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    raw = _checksum(payload) + payload
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str, fingerprint: str) -> Listable:
    """The position a token records; raises ``InvalidToken`` for anything else."""
    # Length and alphabet first: they bound the work and stop the lenient base64
    # decoder from silently dropping foreign characters.
    if not 0 < len(token) <= MAX_TOKEN_LENGTH or not _TOKEN_TEXT.fullmatch(token):
        raise InvalidToken("not URL-safe base64 text of an allowed length")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError as exc:
        raise InvalidToken("not decodable base64") from exc
    # One spelling per token: the decoder ignores stray bits of the last character.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise InvalidToken("not the canonical spelling")
    checksum, payload = raw[:_CHECKSUM_BYTES], raw[_CHECKSUM_BYTES:]
    if not hmac.compare_digest(checksum, _checksum(payload)):
        raise InvalidToken("checksum mismatch")
    try:
        fields = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise InvalidToken("payload is not JSON") from exc
    match fields:
        case [int(version), str(issued_for), str(name), float(created), str() | None as status]:
            pass
        case _:
            raise InvalidToken("payload has the wrong shape")
    if version != _TOKEN_VERSION:
        raise InvalidToken(f"unknown token version {version}")
    if issued_for != fingerprint:
        raise InvalidToken("issued for another sort or filters")
    return Listable(name=name, created=created, status=status)


class _Reader:
    """Reads typed members of one request body, collecting every violation."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self._body = body
        self.violations: list[str] = []

    def _violation(self, member: str, value: object, constraint: str) -> None:
        # The service names members in camelCase in these messages.
        path = member[:1].lower() + member[1:]
        self.violations.append(
            f"Value '{value}' at '{path}' failed to satisfy constraint: {constraint}"
        )

    def string(self, member: str) -> str | None:
        value = self._body.get(member)
        if value is None or isinstance(value, str):
            return value
        self._violation(member, value, "Member must be a string")
        return None

    def enum(self, member: str, allowed: tuple[str, ...]) -> str | None:
        value = self.string(member)
        if value is None or value in allowed:
            return value
        self._violation(
            member, value, f"Member must satisfy enum value set: [{', '.join(allowed)}]"
        )
        return None

    def name_contains(self, member: str) -> str | None:
        value = self.string(member)
        if value is None:
            return None
        valid = True
        if len(value) > _NAME_CONTAINS_MAX:
            valid = False
            self._violation(
                member,
                value,
                f"Member must have length less than or equal to {_NAME_CONTAINS_MAX}",
            )
        if not re.fullmatch(_NAME_CONTAINS_PATTERN, value):
            valid = False
            self._violation(
                member,
                value,
                f"Member must satisfy regular expression pattern: {_NAME_CONTAINS_PATTERN}",
            )
        return value if valid else None

    def timestamp(self, member: str) -> float | None:
        value = self._body.get(member)
        if value is None:
            return None
        # bool is an int subclass but never a timestamp.
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if is_number and math.isfinite(value):
            return float(value)
        self._violation(member, value, "Member must be a timestamp in epoch seconds")
        return None

    def max_results(self, member: str) -> int | None:
        value = self._body.get(member)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self._violation(member, value, "Member must be an integer")
        elif value < 1:
            self._violation(member, value, "Member must have value greater than or equal to 1")
        elif value > MAX_RESULTS_LIMIT:
            self._violation(
                member,
                value,
                f"Member must have value less than or equal to {MAX_RESULTS_LIMIT}",
            )
        else:
            return value
        return None
