"""AddTags, ListTags and DeleteTags, by resource ARN within the caller's scope."""

from __future__ import annotations

from typing import Any, Final

from gateway.control.context import Call, Services, listed, tag_map
from gateway.control.listing import Listable
from gateway.sagemaker.errors import validation_exception
from gateway.store.registry import NotFound

Output = dict[str, Any]
MAX_TAGS: Final = 50


def _missing(resource_arn: str) -> Exception:
    # Another account's resource is indistinguishable from a missing one.
    return validation_exception(f'Could not find resource "{resource_arn}".')


def add_tags(services: Services, call: Call, body: dict[str, Any]) -> Output:
    resource_arn = body["ResourceArn"]
    tags = tag_map(body)
    try:
        existing = services.registry.list_tags(call.scope, resource_arn)
        total = len(existing.keys() | tags.keys())
        if total > MAX_TAGS:
            raise validation_exception(
                f"A resource can have at most {MAX_TAGS} tags; this request would give "
                f"{resource_arn} {total}."
            )
        services.registry.add_tags(call.scope, resource_arn, tags)
    except NotFound:
        raise _missing(resource_arn) from None
    return {"Tags": [{"Key": key, "Value": value} for key, value in tags.items()]}


def list_tags(services: Services, call: Call, body: dict[str, Any]) -> Output:
    resource_arn = body["ResourceArn"]
    try:
        tags = services.registry.list_tags(call.scope, resource_arn)
    except NotFound:
        raise _missing(resource_arn) from None
    # Tags page in the order they were added: their position stands in for a time.
    items = [
        Listable(name=key, created=float(index), item=(key, value))
        for index, (key, value) in enumerate(tags.items())
    ]
    query = {"NextToken": body.get("NextToken"), "MaxResults": body.get("MaxResults")}
    query = {key: value for key, value in query.items() if value is not None}
    return listed(
        {**query, "SortBy": "CreationTime", "SortOrder": "Ascending"},
        items,
        result_key="Tags",
        summary=lambda tag: {"Key": tag[0], "Value": tag[1]},
        default_max_results=50,
    )


def delete_tags(services: Services, call: Call, body: dict[str, Any]) -> Output:
    resource_arn = body["ResourceArn"]
    try:
        services.registry.delete_tags(call.scope, resource_arn, body["TagKeys"])
    except NotFound:
        raise _missing(resource_arn) from None
    return {}
