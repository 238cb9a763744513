"""Admission: concurrency tokens per endpoint (its MaxConcurrency) and per account and
region (the region's total serverless concurrency), taken together without blocking.

Pure logic over (state, ``now``): no I/O, no clock of its own. ``AdmissionStore`` is the
interface; ``LocalAdmission`` is the embedded in-memory implementation. A shared store for
several gateway nodes implements the same interface, and its leases are why ``now`` is
passed in: a grant not released within its lease (its node crashed) is reclaimed.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol


class Refusal(enum.Enum):
    """Which quota refused a request."""

    ENDPOINT = "endpoint"
    REGION = "region"


@dataclass(frozen=True, slots=True)
class Grant:
    """One endpoint token and one region token, held by one request until released."""

    grant_id: int
    endpoint_key: Hashable
    region_key: Hashable
    expires_at: float


@dataclass(frozen=True, slots=True)
class AdmissionStatistics:
    """Tokens in use per key, and totals since start."""

    in_use: dict[Hashable, int]
    granted: int
    refused_endpoint: int
    refused_region: int
    reclaimed: int


class AdmissionStore(Protocol):
    """Concurrency counters. Implementations never block and never do I/O on the request
    path beyond their own store."""

    def try_acquire(
        self,
        *,
        endpoint_key: Hashable,
        endpoint_limit: int,
        region_key: Hashable,
        region_limit: int,
        now: float,
    ) -> Grant | Refusal:
        """Take one token of each key, both or neither. Refusal says which was full."""
        ...

    def release(self, grant: Grant, *, now: float) -> bool:
        """Give the grant's tokens back. True the first time; False when the grant was
        already released or reclaimed, so a double release can never free a token twice."""
        ...

    def reclaim_expired(self, *, now: float) -> int:
        """Release every grant whose lease ended before ``now``; return how many."""
        ...

    def in_use(self, key: Hashable) -> int:
        """Tokens of ``key`` currently held."""
        ...

    def statistics(self) -> AdmissionStatistics: ...


class LocalAdmission:
    """In-memory ``AdmissionStore`` for a single gateway process.

    ``lease_s`` bounds how long a grant can be held; the request path's own deadlines
    (setup plus invocation) must end every request well within it.
    """

    def __init__(self, *, lease_s: float) -> None:
        if lease_s <= 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        self._lease_s = lease_s
        self._counts: dict[Hashable, int] = {}
        self._grants: dict[int, Grant] = {}
        self._next_id = 1
        self._granted = 0
        self._refused_endpoint = 0
        self._refused_region = 0
        self._reclaimed = 0

    def try_acquire(
        self,
        *,
        endpoint_key: Hashable,
        endpoint_limit: int,
        region_key: Hashable,
        region_limit: int,
        now: float,
    ) -> Grant | Refusal:
        # The endpoint is checked first: a request over its own endpoint's limit is that
        # endpoint's throttle even when the region is full too.
        if self._counts.get(endpoint_key, 0) >= endpoint_limit:
            self._refused_endpoint += 1
            return Refusal.ENDPOINT
        if self._counts.get(region_key, 0) >= region_limit:
            self._refused_region += 1
            return Refusal.REGION
        self._counts[endpoint_key] = self._counts.get(endpoint_key, 0) + 1
        self._counts[region_key] = self._counts.get(region_key, 0) + 1
        grant = Grant(self._next_id, endpoint_key, region_key, now + self._lease_s)
        self._next_id += 1
        self._grants[grant.grant_id] = grant
        self._granted += 1
        return grant

    def release(self, grant: Grant, *, now: float) -> bool:
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

    def reclaim_expired(self, *, now: float) -> int:
        expired = [grant for grant in self._grants.values() if grant.expires_at < now]
        for grant in expired:
            self.release(grant, now=now)
        self._reclaimed += len(expired)
        return len(expired)

    def in_use(self, key: Hashable) -> int:
        return self._counts.get(key, 0)

    def statistics(self) -> AdmissionStatistics:
        return AdmissionStatistics(
            in_use=dict(self._counts),
            granted=self._granted,
            refused_endpoint=self._refused_endpoint,
            refused_region=self._refused_region,
            reclaimed=self._reclaimed,
        )
