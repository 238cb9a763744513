"""Admission: which quotas an invocation draws on, per-endpoint and per-region tokens, and
exactly-once release."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable

import pytest

from gateway.runtime.admission import (
    AdmissionStatistics,
    Grant,
    LocalAdmission,
    Quotas,
    Refusal,
    invocation_quotas,
)

REGION = ("region", "111111111111", "us-east-1")
OTHER_REGION = ("region", "111111111111", "eu-west-1")


def endpoint(name: str) -> tuple[str, str, str, str]:
    return ("endpoint", "111111111111", "us-east-1", name)


EP_A = endpoint("a")
EP_B = endpoint("b")


def acquire(
    store: LocalAdmission,
    endpoint_key: Hashable = EP_A,
    endpoint_limit: int = 2,
    region_key: Hashable = REGION,
    region_limit: int = 10,
) -> Grant | Refusal:
    return store.try_acquire(Quotas(endpoint_key, endpoint_limit, region_key, region_limit))


def granted(result: Grant | Refusal) -> Grant:
    assert isinstance(result, Grant), result
    return result


def test_grant_takes_one_token_of_each_key() -> None:
    """A grant holds one endpoint token and one region token."""
    store = LocalAdmission()
    grant = granted(acquire(store))
    assert grant.endpoint_key == EP_A
    assert grant.region_key == REGION
    assert store.in_use(EP_A) == 1
    assert store.in_use(REGION) == 1
    assert store.in_use(EP_B) == 0


def test_grant_ids_are_unique() -> None:
    """Every grant gets its own id, so releasing one can never release another."""
    store = LocalAdmission()
    grants = [granted(acquire(store, endpoint_limit=50, region_limit=50)) for _ in range(50)]
    assert len({g.grant_id for g in grants}) == 50


def test_endpoint_full_refuses_endpoint_and_takes_nothing() -> None:
    """At the endpoint's limit the refusal names the endpoint and no token is taken."""
    store = LocalAdmission()
    granted(acquire(store, endpoint_limit=2))
    granted(acquire(store, endpoint_limit=2))
    assert acquire(store, endpoint_limit=2) is Refusal.ENDPOINT
    assert store.in_use(EP_A) == 2
    assert store.in_use(REGION) == 2


def test_region_full_refuses_region_and_takes_nothing() -> None:
    """At the region's limit another endpoint is refused with REGION and takes no token."""
    store = LocalAdmission()
    granted(acquire(store, EP_A, endpoint_limit=5, region_limit=2))
    granted(acquire(store, EP_A, endpoint_limit=5, region_limit=2))
    assert acquire(store, EP_B, endpoint_limit=5, region_limit=2) is Refusal.REGION
    assert store.in_use(EP_B) == 0
    assert EP_B not in store.statistics().in_use
    assert store.in_use(REGION) == 2


def test_endpoint_refusal_wins_when_both_are_full() -> None:
    """When both quotas are full the endpoint's own limit is named."""
    store = LocalAdmission()
    granted(acquire(store, endpoint_limit=1, region_limit=1))
    assert acquire(store, endpoint_limit=1, region_limit=1) is Refusal.ENDPOINT


def test_zero_limits_refuse() -> None:
    """A limit of zero admits nothing."""
    store = LocalAdmission()
    assert acquire(store, endpoint_limit=0) is Refusal.ENDPOINT
    assert acquire(store, region_limit=0) is Refusal.REGION
    assert store.statistics().in_use == {}


def test_regions_are_independent() -> None:
    """A full region does not refuse endpoints of another region."""
    store = LocalAdmission()
    granted(acquire(store, EP_A, region_key=REGION, region_limit=1))
    assert acquire(store, EP_B, region_key=REGION, region_limit=1) is Refusal.REGION
    other = granted(acquire(store, EP_B, region_key=OTHER_REGION, region_limit=1))
    assert other.region_key == OTHER_REGION
    assert store.in_use(OTHER_REGION) == 1


def test_release_frees_the_tokens_for_the_next_request() -> None:
    """Releasing a grant gives both tokens back and admits the next request."""
    store = LocalAdmission()
    grant = granted(acquire(store, endpoint_limit=1, region_limit=1))
    assert acquire(store, endpoint_limit=1, region_limit=1) is Refusal.ENDPOINT
    assert store.release(grant) is True
    assert store.in_use(EP_A) == 0
    assert store.in_use(REGION) == 0
    granted(acquire(store, endpoint_limit=1, region_limit=1))


def test_second_release_returns_false_and_frees_nothing() -> None:
    """A double release is refused and cannot free another request's token."""
    store = LocalAdmission()
    first = granted(acquire(store))
    granted(acquire(store))
    assert store.release(first) is True
    assert store.release(first) is False
    assert store.in_use(EP_A) == 1
    assert store.in_use(REGION) == 1


def test_statistics_count_grants_refusals_and_usage() -> None:
    """Statistics report tokens in use per key and totals of grants and refusals."""
    store = LocalAdmission()
    a = granted(acquire(store, EP_A, endpoint_limit=1, region_limit=2))
    assert acquire(store, EP_A, endpoint_limit=1, region_limit=2) is Refusal.ENDPOINT
    granted(acquire(store, EP_B, endpoint_limit=1, region_limit=2))
    assert acquire(store, endpoint("c"), endpoint_limit=1, region_limit=2) is Refusal.REGION
    store.release(a)
    assert store.statistics() == AdmissionStatistics(
        in_use={EP_B: 1, REGION: 1},
        granted=2,
        refused_endpoint=1,
        refused_region=1,
    )


def test_statistics_are_a_snapshot() -> None:
    """Changing a returned statistics dict does not change the store."""
    store = LocalAdmission()
    granted(acquire(store))
    stats = store.statistics()
    stats.in_use[EP_A] = 99
    stats.in_use.clear()
    assert store.in_use(EP_A) == 1
    assert store.statistics().in_use == {EP_A: 1, REGION: 1}


ENDPOINT_LIMITS: dict[Hashable, int] = {
    endpoint(f"e{i}"): limit for i, limit in enumerate([1, 2, 3, 5, 8])
}
REGION_LIMIT = 10  # below the endpoints' sum (19), so the region quota really binds


def check_against_model(
    store: LocalAdmission, outstanding: dict[int, Grant], counts: Counter[Hashable]
) -> None:
    assert sum(counts[key] for key in ENDPOINT_LIMITS) == counts[REGION]
    for key, limit in ENDPOINT_LIMITS.items():
        assert store.in_use(key) == counts[key] <= limit
    assert store.in_use(REGION) == counts[REGION] <= REGION_LIMIT
    assert counts[REGION] == len(outstanding)
    assert store.statistics().in_use == {k: v for k, v in counts.items() if v}


def expected_outcome(counts: Counter[Hashable], key: Hashable) -> Refusal | None:
    if counts[key] >= ENDPOINT_LIMITS[key]:
        return Refusal.ENDPOINT
    if counts[REGION] >= REGION_LIMIT:
        return Refusal.REGION
    return None


@pytest.mark.parametrize("seed", range(8))
def test_random_interleavings_keep_every_invariant(seed: int) -> None:
    """Thousands of random acquires, releases and double releases match a model."""
    rng = random.Random(seed)
    store = LocalAdmission()
    outstanding: dict[int, Grant] = {}
    finished: list[Grant] = []
    counts: Counter[Hashable] = Counter()
    totals: Counter[str] = Counter()
    keys = list(ENDPOINT_LIMITS)
    for _ in range(3000):
        roll = rng.random()
        if roll < 0.55:
            key = rng.choice(keys)
            want = expected_outcome(counts, key)
            result = acquire(store, key, ENDPOINT_LIMITS[key], REGION, REGION_LIMIT)
            if want is None:
                grant = granted(result)
                assert grant.grant_id not in outstanding
                outstanding[grant.grant_id] = grant
                counts[key] += 1
                counts[REGION] += 1
                totals["granted"] += 1
            else:
                assert result is want
                totals[want.value] += 1
        elif roll < 0.9 and outstanding:
            grant = outstanding.pop(rng.choice(list(outstanding)))
            assert store.release(grant) is True
            counts[grant.endpoint_key] -= 1
            counts[REGION] -= 1
            finished.append(grant)
        elif finished:
            assert store.release(rng.choice(finished)) is False
        check_against_model(store, outstanding, counts)

    for grant in list(outstanding.values()):
        assert store.release(grant) is True
    for grant in outstanding.values():
        assert store.release(grant) is False
    for used in [*keys, REGION]:
        assert store.in_use(used) == 0
    stats = store.statistics()
    assert stats.in_use == {}
    assert totals["granted"] > 0
    assert totals["endpoint"] > 0
    assert totals["region"] > 0
    assert (stats.granted, stats.refused_endpoint, stats.refused_region) == (
        totals["granted"],
        totals["endpoint"],
        totals["region"],
    )


def test_serverless_region_quota_leaves_out_what_other_endpoints_reserve() -> None:
    """A serverless endpoint may use the region's concurrency less what the account's other
    endpoints reserve with provisioned concurrency; its own reservation stays usable."""
    quotas = invocation_quotas(
        endpoint_key=("111111111111", "us-east-1", "a"),
        endpoint_limit=20,
        account_id="111111111111",
        region="us-east-1",
        serverless=True,
        provisioned=5,
        reserved_in_region=5 + 30,
        region_concurrency=200,
    )
    assert quotas == Quotas(
        ("endpoint", "111111111111", "us-east-1", "a"),
        20,
        ("region", "111111111111", "us-east-1"),
        200 - 30,
    )


def test_instance_endpoints_are_outside_the_serverless_region_quota() -> None:
    """Instance-based endpoints count under a key of their own, which never throttles."""
    quotas = invocation_quotas(
        endpoint_key=("111111111111", "us-east-1", "big"),
        endpoint_limit=16,
        account_id="111111111111",
        region="us-east-1",
        serverless=False,
        provisioned=0,
        reserved_in_region=200,
        region_concurrency=200,
    )
    assert quotas.region_key == ("instances", "111111111111", "us-east-1")
    store = LocalAdmission()
    for _ in range(16):
        granted(store.try_acquire(quotas))
    assert store.try_acquire(quotas) is Refusal.ENDPOINT
