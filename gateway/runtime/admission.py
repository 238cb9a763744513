"""Admission: concurrency tokens per endpoint (its MaxConcurrency) and per account and
region (the region's total serverless concurrency), taken together without blocking.

Pure logic: ``invocation_quotas`` says which two quotas an invocation draws on and how
large each is; an ``AdmissionStore`` counts the tokens held. ``LocalAdmission`` is the
embedded in-memory store; a store shared by several gateway nodes implements the same
interface.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol


class Refusal(enum.Enum):
    """Which quota refused a request."""

    ENDPOINT = "endpoint"
    REGION = "region"


@dataclass(frozen=True, slots=True)
class Quotas:
    """The two quotas one invocation takes a token of: its endpoint's and its region's
    (for the account)."""

    endpoint_key: Hashable
    endpoint_limit: int
    region_key: Hashable
    region_limit: int


def invocation_quotas(
    *,
    endpoint_key: tuple[str, ...],
    endpoint_limit: int,
    account_id: str,
    region: str,
    serverless: bool,
    provisioned: int,
    reserved_in_region: int,
    region_concurrency: int,
) -> Quotas:
    """The quotas an invocation of one endpoint draws on.

    A serverless endpoint shares the account's region concurrency with the account's
    other serverless endpoints, less what those reserve with provisioned concurrency
    (``reserved_in_region`` counts every endpoint's reservation, this one's
    ``provisioned`` included): what another endpoint reserves is that endpoint's alone.
    Instance-based endpoints are not serverless: the region's serverless quota does not
    apply to them, so they count under a key of their own with no limit.
    """
    if serverless:
        region_key: tuple[str, ...] = ("region", account_id, region)
        region_limit = region_concurrency - (reserved_in_region - provisioned)
    else:
        region_key = ("instances", account_id, region)
        region_limit = sys.maxsize
    return Quotas(("endpoint", *endpoint_key), endpoint_limit, region_key, region_limit)


@dataclass(frozen=True, slots=True)
class Grant:
    """One endpoint token and one region token, held by one request until released."""

    grant_id: int
    endpoint_key: Hashable
    region_key: Hashable


@dataclass(frozen=True, slots=True)
class AdmissionStatistics:
    """Tokens in use per key, and totals since start."""

    in_use: dict[Hashable, int]
    granted: int
    refused_endpoint: int
    refused_region: int


class AdmissionStore(Protocol):
    """Concurrency counters. Implementations never block and never do I/O on the request
    path beyond their own store."""

    def try_acquire(self, quotas: Quotas) -> Grant | Refusal:
        """Take one token of each quota, both or neither. Refusal says which was full."""
        ...

    def release(self, grant: Grant) -> bool:
        """Give the grant's tokens back. True the first time; False when the grant was
        already released, so a double release can never free a token twice."""
        ...

    def in_use(self, key: Hashable) -> int:
        """Tokens of ``key`` currently held."""
        ...

    def statistics(self) -> AdmissionStatistics: ...


class LocalAdmission:
    """In-memory ``AdmissionStore`` for a single gateway process. Every grant is released
    by the request that holds it, on every path (the request path's deadlines end each
    request), so nothing here expires."""

    def __init__(self) -> None:
        self._counts: dict[Hashable, int] = {}
        self._grants: dict[int, Grant] = {}
        self._next_id = 1
        self._granted = 0
        self._refused_endpoint = 0
        self._refused_region = 0

    def try_acquire(self, quotas: Quotas) -> Grant | Refusal:
        endpoint_key, region_key = quotas.endpoint_key, quotas.region_key
        # The endpoint is checked first: a request over its own endpoint's limit is that
        # endpoint's throttle even when the region is full too.
        if self._counts.get(endpoint_key, 0) >= quotas.endpoint_limit:
            self._refused_endpoint += 1
            return Refusal.ENDPOINT
        if self._counts.get(region_key, 0) >= quotas.region_limit:
            self._refused_region += 1
            return Refusal.REGION
        self._counts[endpoint_key] = self._counts.get(endpoint_key, 0) + 1
        self._counts[region_key] = self._counts.get(region_key, 0) + 1
        grant = Grant(self._next_id, endpoint_key, region_key)
        self._next_id += 1
        self._grants[grant.grant_id] = grant
        self._granted += 1
        return grant

    def release(self, grant: Grant) -> bool:
        if self._grants.pop(grant.grant_id, None) is None:
            return False
        self._give_back(grant.endpoint_key)
        self._give_back(grant.region_key)
        return True

    def _give_back(self, key: Hashable) -> None:
        left = self._counts[key] - 1
        if left:
            self._counts[key] = left
        else:
            del self._counts[key]

    def in_use(self, key: Hashable) -> int:
        return self._counts.get(key, 0)

    def statistics(self) -> AdmissionStatistics:
        return AdmissionStatistics(
            in_use=dict(self._counts),
            granted=self._granted,
            refused_endpoint=self._refused_endpoint,
            refused_region=self._refused_region,
        )
