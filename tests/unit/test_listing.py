"""Sorting, filtering and pagination of the List* operations, and boto3's paginator over them."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from gateway.control.listing import (
    INVALID_TOKEN_MESSAGE,
    MAX_TOKEN_LENGTH,
    SORT_KEYS,
    SORT_ORDERS,
    InvalidQuery,
    InvalidToken,
    Listable,
    ListQuery,
    list_page,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"


def item(
    name: str, created: float, *, modified: float | None = None, status: str | None = None
) -> Listable:
    return Listable(name=name, created=created, last_modified=modified, status=status, item=name)


def names(page: list[Listable]) -> list[str]:
    return [entry.name for entry in page]


def paginate(items: list[Listable], query: ListQuery) -> tuple[list[list[str]], list[str]]:
    """Every page (as names) and every token of a listing, following tokens to the end."""
    pages: list[list[str]] = []
    tokens: list[str] = []
    while True:
        page, token = list_page(items, query)
        pages.append(names(page))
        if token is None:
            return pages, tokens
        assert len(tokens) < 1000, "pagination does not end"
        tokens.append(token)
        query = dataclasses.replace(query, next_token=token)


def first_token(items: list[Listable], query: ListQuery) -> str:
    _, token = list_page(items, query)
    assert token is not None
    return token


# Sorting

SORT_ITEMS = [
    item("Alpha", 30, status="InService"),
    item("beta", 10, status="Failed"),
    item("Delta", 20, status="InService"),
    item("gamma", 20, status="Creating"),
]


@pytest.mark.parametrize(
    ("sort_by", "sort_order", "expected"),
    [
        ("Name", "Ascending", ["Alpha", "beta", "Delta", "gamma"]),
        ("Name", "Descending", ["gamma", "Delta", "beta", "Alpha"]),
        ("CreationTime", "Ascending", ["beta", "Delta", "gamma", "Alpha"]),
        ("CreationTime", "Descending", ["Alpha", "gamma", "Delta", "beta"]),
        ("Status", "Ascending", ["gamma", "beta", "Alpha", "Delta"]),
        ("Status", "Descending", ["Delta", "Alpha", "beta", "gamma"]),
    ],
)
def test_sorts_by_each_key_and_order(sort_by: str, sort_order: str, expected: list[str]) -> None:
    """Each sort key and order gives its order; equal values fall back to the name."""
    page, token = list_page(SORT_ITEMS, ListQuery(sort_by=sort_by, sort_order=sort_order))
    assert names(page) == expected
    assert token is None


def test_default_order_is_newest_first() -> None:
    """With no sort given, items come by creation time, newest first."""
    page, _ = list_page(SORT_ITEMS, ListQuery())
    assert names(page) == ["Alpha", "gamma", "Delta", "beta"]


def test_result_carries_the_callers_record() -> None:
    """The page holds the very Listables given, so the caller's records come through."""
    records = [object(), object()]
    items = [Listable("a", 1, item=records[0]), Listable("b", 2, item=records[1])]
    page, _ = list_page(items, ListQuery(sort_order="Ascending"))
    assert [entry.item for entry in page] == records


def test_status_sort_puts_items_without_status_first() -> None:
    """An item with no status sorts before every status, ascending."""
    items = [item("a", 1, status="InService"), item("b", 2)]
    page, _ = list_page(items, ListQuery(sort_by="Status", sort_order="Ascending"))
    assert names(page) == ["b", "a"]


# Filtering

FILTER_ITEMS = [
    item("ModelOne", 100, modified=150, status="InService"),
    item("modeltwo", 200, modified=200, status="Failed"),
    item("Other", 300, modified=400, status="InService"),
    item("model-three", 400),
]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["ModelOne", "modeltwo", "Other", "model-three"]),
        ({"name_contains": "MODEL"}, ["ModelOne", "modeltwo", "model-three"]),
        ({"name_contains": "l-th"}, ["model-three"]),
        ({"name_contains": "absent"}, []),
        ({"creation_time_before": 200}, ["ModelOne"]),
        ({"creation_time_after": 200}, ["modeltwo", "Other", "model-three"]),
        ({"creation_time_after": 200, "creation_time_before": 400}, ["modeltwo", "Other"]),
        ({"last_modified_time_before": 200}, ["ModelOne"]),
        ({"last_modified_time_after": 200}, ["modeltwo", "Other", "model-three"]),
        # model-three has no last-modified time: its creation time stands in.
        ({"last_modified_time_after": 400}, ["Other", "model-three"]),
        ({"status_equals": "InService"}, ["ModelOne", "Other"]),
        ({"status_equals": "Deleting"}, []),
        (
            {"name_contains": "model", "creation_time_after": 150, "creation_time_before": 400},
            ["modeltwo"],
        ),
        ({"status_equals": "InService", "last_modified_time_after": 151}, ["Other"]),
        ({"name_contains": "o", "last_modified_time_before": 400}, ["ModelOne", "modeltwo"]),
        (
            {
                "name_contains": "e",
                "creation_time_after": 100,
                "creation_time_before": 301,
                "last_modified_time_after": 150,
                "last_modified_time_before": 401,
                "status_equals": "InService",
            },
            ["ModelOne", "Other"],
        ),
    ],
)
def test_filters_and_their_combinations(filters: dict[str, Any], expected: list[str]) -> None:
    """Each filter keeps what it documents (before: <, after: >=) and all given filters hold."""
    query = ListQuery(sort_order="Ascending", **filters)
    page, token = list_page(FILTER_ITEMS, query)
    assert names(page) == expected
    assert token is None


# Pagination


@pytest.mark.parametrize(("count", "pages"), [(0, 1), (1, 1), (3, 1), (4, 2), (25, 9)])
def test_pages_collect_every_item_once_in_order(count: int, pages: int) -> None:
    """Following tokens yields every item once, in order, with new tokens and none at the end."""
    items = [item(f"m{i:02d}", 1000 + i) for i in range(count)]
    collected, tokens = paginate(items, ListQuery(sort_order="Ascending", max_results=3))
    assert len(collected) == pages
    assert all(len(page) == 3 for page in collected[:-1])
    assert [name for page in collected for name in page] == [f"m{i:02d}" for i in range(count)]
    assert len(tokens) == pages - 1
    assert len(set(tokens)) == len(tokens)


@pytest.mark.parametrize("sort_by", SORT_KEYS)
@pytest.mark.parametrize("sort_order", SORT_ORDERS)
def test_pages_match_the_full_listing_under_every_sort(sort_by: str, sort_order: str) -> None:
    """Paging with many ties on time and status gives exactly the one-page listing."""
    statuses = ["InService", "Creating", "Failed", None]
    items = [
        item(f"ep-{i}", 100 + i // 4, modified=500 - i, status=statuses[i % 4]) for i in range(30)
    ]
    whole, _ = list_page(items, ListQuery(sort_by=sort_by, sort_order=sort_order, max_results=100))
    collected, tokens = paginate(
        items, ListQuery(sort_by=sort_by, sort_order=sort_order, max_results=4)
    )
    assert [name for page in collected for name in page] == names(whole)
    assert len(names(whole)) == 30
    assert len(set(tokens)) == len(tokens) == 7


def test_page_size_may_change_between_pages() -> None:
    """A token carries on under another MaxResults, without skipping or repeating."""
    items = [item(f"m{i}", i) for i in range(10)]
    first, token = list_page(items, ListQuery(sort_order="Ascending", max_results=2))
    rest, last = list_page(
        items, ListQuery(sort_order="Ascending", max_results=50, next_token=token)
    )
    assert names(first) + names(rest) == [f"m{i}" for i in range(10)]
    assert last is None


def test_filtered_pages_follow_the_filter() -> None:
    """Pagination works over the filtered set, not the whole one."""
    items = [item(f"keep{i}" if i % 2 else f"drop{i}", i) for i in range(10)]
    query = ListQuery(sort_order="Ascending", name_contains="keep", max_results=2)
    collected, _ = paginate(items, query)
    assert collected == [["keep1", "keep3"], ["keep5", "keep7"], ["keep9"]]


def test_deletes_between_pages_do_not_skip_or_repeat_survivors() -> None:
    """Deleting the last item returned and an unseen one leaves every survivor listed once."""
    items = [item(f"m{i}", i) for i in range(9)]
    query = ListQuery(sort_order="Ascending", max_results=3)
    first, token = list_page(items, query)
    assert names(first) == ["m0", "m1", "m2"]
    survivors = [entry for entry in items if entry.name not in {"m2", "m5"}]
    rest, _ = paginate(survivors, dataclasses.replace(query, next_token=token))
    assert rest == [["m3", "m4", "m6"], ["m7", "m8"]]


def test_inserts_between_pages_do_not_skip_or_repeat_survivors() -> None:
    """An insert after the position is listed, one before it is not, and nothing else moves."""
    items = [item(f"m{i}", 10 * i) for i in range(6)]
    query = ListQuery(sort_order="Ascending", max_results=3)
    first, token = list_page(items, query)
    assert names(first) == ["m0", "m1", "m2"]
    grown = [*items, item("early", 5), item("late", 35)]
    rest, _ = paginate(grown, dataclasses.replace(query, next_token=token))
    assert rest == [["m3", "late", "m4"], ["m5"]]


def test_descending_pages_survive_inserts_and_deletes() -> None:
    """The position also holds newest-first, where a new item sorts before the position."""
    items = [item(f"m{i}", 10 * i) for i in range(6)]
    first, token = list_page(items, ListQuery(max_results=2))
    assert names(first) == ["m5", "m4"]
    changed = [entry for entry in items if entry.name != "m4"] + [item("newest", 99)]
    rest, _ = paginate(changed, ListQuery(max_results=2, next_token=token))
    assert rest == [["m3", "m2"], ["m1", "m0"]]


# Tokens


@pytest.mark.parametrize(
    "change",
    [
        {"name_contains": "m1"},
        {"creation_time_before": 5},
        {"creation_time_after": 1},
        {"last_modified_time_before": 5},
        {"last_modified_time_after": 1},
        {"status_equals": "InService"},
        {"sort_by": "Name"},
        {"sort_order": "Descending"},
    ],
)
def test_token_with_another_sort_or_filter_is_invalid(change: dict[str, Any]) -> None:
    """A token is refused under any sort or filter other than the one that issued it."""
    items = [item(f"m{i}", i, status="InService") for i in range(6)]
    query = ListQuery(sort_order="Ascending", max_results=2)
    token = first_token(items, query)
    with pytest.raises(InvalidToken):
        list_page(items, dataclasses.replace(query, next_token=token, **change))


def test_equal_filters_in_another_spelling_accept_the_token() -> None:
    """1700000000 and 1700000000.0 are one filter, so the token carries on."""
    items = [item(f"m{i}", 1_700_000_000 + i) for i in range(4)]
    query = ListQuery(sort_order="Ascending", max_results=2, creation_time_after=1_700_000_000)
    token = first_token(items, query)
    rest, _ = list_page(
        items, dataclasses.replace(query, creation_time_after=1_700_000_000.0, next_token=token)
    )
    assert names(rest) == ["m2", "m3"]


def _valid_token() -> str:
    return first_token([item(f"m{i}", i) for i in range(4)], ListQuery(max_results=1))


def _forged(payload: bytes) -> str:
    """A token whose checksum is right but whose content this module never wrote.

    Knows the token layout (an 8-byte SHA-256 prefix, then the payload) on purpose: it
    proves a forged but well-checksummed token still fails cleanly.
    """
    raw = hashlib.sha256(payload).digest()[:8] + payload
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
        pytest.param("!!!!", id="not-base64-alphabet"),
        pytest.param("bm90IGEgdG9rZW4=", id="padded-base64"),
        pytest.param("A", id="impossible-base64-length"),
        pytest.param("ÄÖÜ", id="non-ascii"),
        pytest.param("a" * (MAX_TOKEN_LENGTH + 1), id="oversized"),
        pytest.param(_valid_token()[:-1], id="truncated-by-one"),
        pytest.param(_valid_token()[: len(_valid_token()) // 2], id="truncated-by-half"),
        pytest.param(_valid_token() + "AA", id="extended"),
        pytest.param(base64.urlsafe_b64encode(b"x" * 40).decode().rstrip("="), id="random-bytes"),
        pytest.param(_forged(b"{}"), id="forged-object"),
        pytest.param(_forged(b"[1, 2]"), id="forged-short-list"),
        pytest.param(_forged(b"\xff\xfe"), id="forged-not-utf8"),
        pytest.param(_forged(b"[" * 6000 + b"]" * 6000), id="forged-deep-nesting"),
        pytest.param(_forged(b'[1, "f", "n", 1.0, null]'), id="forged-wrong-fingerprint"),
        pytest.param(_forged(b'[9, "f", "n", 1.0, null]'), id="forged-wrong-version"),
        pytest.param(_forged(b'[1, "f", "n", "1", null]'), id="forged-wrong-types"),
    ],
)
def test_malformed_tokens_are_invalid(token: str) -> None:
    """Any token this module did not issue raises InvalidToken and nothing else."""
    items = [item(f"m{i}", i) for i in range(4)]
    with pytest.raises(InvalidToken) as raised:
        list_page(items, ListQuery(max_results=1, next_token=token))
    assert str(raised.value) == INVALID_TOKEN_MESSAGE
    assert raised.value.reason


def test_flipping_any_character_invalidates_the_token() -> None:
    """Changing any one character of a token makes it invalid."""
    items = [item(f"m{i}", i) for i in range(4)]
    query = ListQuery(max_results=1)
    token = first_token(items, query)
    for index, char in enumerate(token):
        other = "B" if char != "B" else "C"
        damaged = token[:index] + other + token[index + 1 :]
        with pytest.raises(InvalidToken):
            list_page(items, dataclasses.replace(query, next_token=damaged))


def test_invalid_token_is_raised_before_items_are_read() -> None:
    """A bad token fails without consuming the items (no work for a doomed request)."""

    class Unreadable:
        def __iter__(self) -> Iterator[Listable]:
            raise AssertionError("items were read")

    with pytest.raises(InvalidToken):
        list_page(Unreadable(), ListQuery(next_token="garbage"))


def test_tokens_are_short_url_safe_text_for_the_longest_names() -> None:
    """Tokens for 63-character names stay URL-safe and far below the 8192-character limit."""
    items = [
        item(f"{chr(65 + i)}" + "x" * 62, 1.5 + i, status="UpdateRollbackFailed") for i in range(3)
    ]
    _, tokens = paginate(items, ListQuery(sort_by="Status", max_results=1))
    assert len(tokens) == 2
    for token in tokens:
        assert len(token) < 400
        assert token.isascii()
        assert all(char.isalnum() or char in "-_" for char in token)


# Reading requests


def test_from_request_reads_every_member() -> None:
    """Each PascalCase member lands in its field; epoch numbers become floats."""
    query = ListQuery.from_request(
        {
            "SortBy": "Status",
            "SortOrder": "Ascending",
            "NameContains": "ep-1",
            "CreationTimeBefore": 1_704_067_200,
            "CreationTimeAfter": 1_704_000_000.5,
            "LastModifiedTimeBefore": 1_704_067_300,
            "LastModifiedTimeAfter": 1_704_000_100,
            "StatusEquals": "InService",
            "MaxResults": 7,
            "NextToken": "abc",
        },
        default_max_results=10,
    )
    assert query == ListQuery(
        sort_by="Status",
        sort_order="Ascending",
        name_contains="ep-1",
        creation_time_before=1_704_067_200.0,
        creation_time_after=1_704_000_000.5,
        last_modified_time_before=1_704_067_300.0,
        last_modified_time_after=1_704_000_100.0,
        status_equals="InService",
        max_results=7,
        next_token="abc",
    )
    assert isinstance(query.creation_time_before, float)


@pytest.mark.parametrize("body", [{}, {"SortBy": None, "MaxResults": None, "NextToken": None}])
def test_from_request_defaults(body: dict[str, Any]) -> None:
    """Absent or null members take the documented defaults and the operation's page size."""
    query = ListQuery.from_request(body, default_max_results=37)
    assert query == ListQuery(max_results=37)
    assert (query.sort_by, query.sort_order) == ("CreationTime", "Descending")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"SortBy": "Status"}, "Member must satisfy enum value set: [Name, CreationTime]"),
        ({"SortBy": "name"}, "at 'sortBy'"),
        ({"SortOrder": "Up"}, "enum value set: [Ascending, Descending]"),
        ({"MaxResults": 0}, "Value '0' at 'maxResults' failed to satisfy constraint: "),
        ({"MaxResults": 0}, "Member must have value greater than or equal to 1"),
        ({"MaxResults": 101}, "Member must have value less than or equal to 100"),
        ({"MaxResults": "10"}, "at 'maxResults'"),
        ({"MaxResults": True}, "at 'maxResults'"),
        ({"MaxResults": 2.5}, "at 'maxResults'"),
        ({"NameContains": "a_b"}, "Member must satisfy regular expression pattern: [a-zA-"),
        ({"NameContains": ""}, "at 'nameContains'"),
        ({"NameContains": "a" * 64}, "Member must have length less than or equal to 63"),
        ({"CreationTimeBefore": "2024-01-01"}, "at 'creationTimeBefore'"),
        ({"CreationTimeAfter": False}, "at 'creationTimeAfter'"),
        ({"LastModifiedTimeBefore": float("inf")}, "at 'lastModifiedTimeBefore'"),
        ({"LastModifiedTimeAfter": [1]}, "at 'lastModifiedTimeAfter'"),
        ({"StatusEquals": "Running"}, "at 'statusEquals'"),
        ({"NextToken": 5}, "at 'nextToken'"),
    ],
)
def test_from_request_rejects_bad_members(body: dict[str, Any], fragment: str) -> None:
    """A wrong type or a broken constraint raises InvalidQuery in the service's wording."""
    with pytest.raises(InvalidQuery) as raised:
        ListQuery.from_request(body, default_max_results=10, sort_keys=("Name", "CreationTime"))
    assert str(raised.value).startswith("1 validation error detected: Value ")
    assert fragment in str(raised.value)


def test_from_request_reports_every_violation() -> None:
    """Several bad members are all reported, counted in the message."""
    with pytest.raises(InvalidQuery) as raised:
        ListQuery.from_request(
            {"SortOrder": "x", "MaxResults": 500, "NameContains": "_" * 70},
            default_max_results=10,
        )
    assert len(raised.value.violations) == 4
    assert str(raised.value).startswith("4 validation errors detected: ")


def test_from_request_leaves_tokens_to_list_page() -> None:
    """An oversized token is read as given; list_page then rejects it as InvalidToken."""
    query = ListQuery.from_request({"NextToken": "x" * 9000}, default_max_results=10)
    with pytest.raises(InvalidToken):
        list_page([], query)


@pytest.mark.parametrize(
    "fields", [{"sort_by": "Size"}, {"sort_order": "Sideways"}, {"max_results": 0}]
)
def test_query_refuses_impossible_values(fields: dict[str, Any]) -> None:
    """A query built in code with an unknown sort, order or empty page raises ValueError."""
    with pytest.raises(ValueError, match=r"sort|max_results"):
        ListQuery(**fields)


# boto3's own paginator over list_page


class _Body:
    """The raw body of a canned HTTP response, in the form botocore reads it."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _summary(op: str, entry: Listable) -> dict[str, Any]:
    kind = {"ListModels": "model", "ListEndpoints": "endpoint"}[op]
    prefix = {"ListModels": "Model", "ListEndpoints": "Endpoint"}[op]
    summary: dict[str, Any] = {
        f"{prefix}Name": entry.name,
        f"{prefix}Arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{entry.name.lower()}",
        "CreationTime": entry.created,
    }
    if op == "ListEndpoints":
        summary["LastModifiedTime"] = entry.last_modified
        summary["EndpointStatus"] = entry.status
    return summary


class FakeService:
    """Answers List* HTTP requests with list_page over a fixed item set; records each body."""

    def __init__(self, items: list[Listable]) -> None:
        self.items = items
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        op = request.headers["X-Amz-Target"].decode().split(".", 1)[1]
        assert isinstance(request.body, bytes)
        body = json.loads(request.body)
        self.bodies.append(body)
        assert len(self.bodies) < 100, "the paginator does not stop"
        sort_keys = SORT_KEYS if op == "ListEndpoints" else ("Name", "CreationTime")
        query = ListQuery.from_request(body, default_max_results=10, sort_keys=sort_keys)
        page, token = list_page(self.items, query)
        result_key = {"ListModels": "Models", "ListEndpoints": "Endpoints"}[op]
        out: dict[str, Any] = {result_key: [_summary(op, entry) for entry in page]}
        if token is not None:
            out["NextToken"] = token
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "x-amzn-RequestId": "00000000-0000-4000-8000-000000000000",
        }
        return AWSResponse(request.url, 200, headers, _Body(json.dumps(out).encode()))


@pytest.fixture(scope="module")
def session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name=REGION
    )


def _client(session: boto3.session.Session, service: FakeService) -> Any:
    client = session.client("sagemaker", endpoint_url="http://listing.invalid")
    client.meta.events.register("before-send.sagemaker.*", service)
    return client


def test_boto3_paginator_lists_every_model_once_and_stops(session: boto3.session.Session) -> None:
    """boto3's real list_models paginator, page size 3, yields all 10 models once and stops."""
    service = FakeService([item(f"model-{i}", 1_700_000_000.25 + i) for i in range(10)])
    client = _client(session, service)
    pages = list(client.get_paginator("list_models").paginate(PaginationConfig={"PageSize": 3}))
    listed = [model["ModelName"] for page in pages for model in page["Models"]]
    assert listed == [f"model-{i}" for i in reversed(range(10))]
    assert [len(page["Models"]) for page in pages] == [3, 3, 3, 1]
    assert "NextToken" not in pages[-1]
    assert len(service.bodies) == 4
    assert all(body["MaxResults"] == 3 for body in service.bodies)
    assert pages[0]["Models"][0]["CreationTime"] == datetime.fromtimestamp(1_700_000_009.25, UTC)


def test_boto3_paginator_with_filters_on_endpoints(session: boto3.session.Session) -> None:
    """boto3's list_endpoints paginator sends its filters as epoch numbers and they apply."""
    statuses = ["InService", "Failed"]
    service = FakeService(
        [
            item(f"ep-{i}", 1_704_067_200 + i, modified=1_704_067_300 + i, status=statuses[i % 2])
            for i in range(12)
        ]
    )
    client = _client(session, service)
    paginator = client.get_paginator("list_endpoints")
    pages = paginator.paginate(
        SortBy="Name",
        SortOrder="Ascending",
        StatusEquals="InService",
        CreationTimeAfter=datetime.fromtimestamp(1_704_067_202, UTC),
        PaginationConfig={"PageSize": 2},
    )
    listed = [ep["EndpointName"] for page in pages for ep in page["Endpoints"]]
    assert listed == ["ep-10", "ep-2", "ep-4", "ep-6", "ep-8"]
    assert service.bodies[0]["CreationTimeAfter"] == 1_704_067_202
    assert len(service.bodies) == 3


def test_boto3_build_full_result_matches_one_page(session: boto3.session.Session) -> None:
    """build_full_result over many small pages equals one big page."""
    service = FakeService([item(f"m{i:03d}", 1_000 + i % 7) for i in range(50)])
    client = _client(session, service)
    paginator = client.get_paginator("list_models")
    full = paginator.paginate(PaginationConfig={"PageSize": 4}).build_full_result()
    single = client.list_models(MaxResults=100)
    assert [m["ModelName"] for m in full["Models"]] == [m["ModelName"] for m in single["Models"]]
    assert len(full["Models"]) == 50
    assert "NextToken" not in single
