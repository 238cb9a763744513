"""Pool policy: most-recent reuse, idle reaping and the next check, in simulated time."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.pool.policy import ReapPlan, cold_start_phases, pick_most_recent, plan_reap

TIMEOUT = 60.0


def test_pick_most_recent_of_nothing_is_none() -> None:
    """With no idle worker there is nothing to reuse."""
    assert pick_most_recent([]) is None


def test_pick_most_recent_chooses_the_last_released() -> None:
    """The most recently released idle worker (the last) is reused."""
    assert pick_most_recent([5.0]) == 0
    assert pick_most_recent([1.0, 2.0, 3.0]) == 2


@pytest.mark.parametrize("timeout", [0.0, -5.0])
def test_plan_reap_rejects_a_non_positive_timeout(timeout: float) -> None:
    """A timeout that is not positive is refused."""
    with pytest.raises(ValueError, match="idle_timeout_s"):
        plan_reap([0.0], now=100.0, idle_timeout_s=timeout)


def test_nothing_idle_means_nothing_to_do() -> None:
    """An empty idle list reaps nothing and needs no check."""
    assert plan_reap([], now=1e9, idle_timeout_s=TIMEOUT) == ReapPlan(reap=(), next_check_at=None)


def test_nothing_is_reaped_before_the_timeout() -> None:
    """Workers idle for less than the timeout stay; the next check is the first expiry."""
    plan = plan_reap([0.0, 10.0, 20.0], now=TIMEOUT - 0.001, idle_timeout_s=TIMEOUT)
    assert plan == ReapPlan(reap=(), next_check_at=TIMEOUT)


def test_a_worker_is_reaped_exactly_at_the_timeout() -> None:
    """A worker idle for exactly the timeout is reaped."""
    plan = plan_reap([0.0, 10.0, 20.0], now=TIMEOUT, idle_timeout_s=TIMEOUT)
    assert plan == ReapPlan(reap=(0,), next_check_at=10.0 + TIMEOUT)


def test_reaping_goes_oldest_first() -> None:
    """All expired workers are reaped, listed oldest first."""
    plan = plan_reap([0.0, 10.0, 20.0, 500.0], now=100.0, idle_timeout_s=TIMEOUT)
    assert plan == ReapPlan(reap=(0, 1, 2), next_check_at=500.0 + TIMEOUT)


def test_everything_expired_leaves_no_next_check() -> None:
    """When every idle worker is reaped nothing else can expire."""
    plan = plan_reap([0.0, 1.0], now=1e6, idle_timeout_s=TIMEOUT)
    assert plan == ReapPlan(reap=(0, 1), next_check_at=None)


def test_keep_protects_the_most_recent_workers() -> None:
    """``keep`` workers, the most recently released, are never reaped nor waited for."""
    idle = [0.0, 10.0, 20.0, 30.0]
    assert plan_reap(idle, now=1e6, idle_timeout_s=TIMEOUT, keep=1) == ReapPlan((0, 1, 2), None)
    assert plan_reap(idle, now=1e6, idle_timeout_s=TIMEOUT, keep=3) == ReapPlan((0,), None)
    assert plan_reap(idle, now=15.0 + TIMEOUT, idle_timeout_s=TIMEOUT, keep=2) == ReapPlan(
        (0, 1), None
    )


def test_keep_at_least_the_pool_reaps_nothing() -> None:
    """With ``keep`` at or above the idle count nothing is reaped and nothing can expire."""
    for keep in (3, 10):
        plan = plan_reap([0.0, 1.0, 2.0], now=1e6, idle_timeout_s=TIMEOUT, keep=keep)
        assert plan == ReapPlan(reap=(), next_check_at=None)


def test_negative_keep_keeps_nothing() -> None:
    """A negative ``keep`` protects nothing rather than failing."""
    plan = plan_reap([0.0, 1.0], now=1e6, idle_timeout_s=TIMEOUT, keep=-3)
    assert plan.reap == (0, 1)


def test_next_check_is_the_earliest_future_expiry() -> None:
    """next_check_at is the soonest expiry among the workers not reaped now."""
    idle = [0.0, 40.0, 45.0, 90.0]
    plan = plan_reap(idle, now=50.0, idle_timeout_s=TIMEOUT)
    assert plan.reap == ()
    assert plan.next_check_at == 60.0
    plan = plan_reap(idle, now=60.0, idle_timeout_s=TIMEOUT)
    assert plan.reap == (0,)
    assert plan.next_check_at == 100.0


@dataclass
class SimulatedPool:
    """A pool applying the policy as its loop would, driven by synthetic timestamps."""

    timeout: float
    idle: list[tuple[float, int]] = field(default_factory=list)  # (idle_since, worker id)
    busy: int = 0
    spawned: int = 0
    reaped: list[int] = field(default_factory=list)
    reaped_at: list[float] = field(default_factory=list)
    used: set[int] = field(default_factory=set)

    @property
    def size(self) -> int:
        return len(self.idle) + self.busy

    def take(self) -> int:
        index = pick_most_recent([since for since, _ in self.idle])
        if index is None:
            self.spawned += 1
            worker = self.spawned
        else:
            _, worker = self.idle.pop(index)
        self.busy += 1
        self.used.add(worker)
        return worker

    def give_back(self, worker: int, now: float) -> None:
        self.busy -= 1
        self.idle.append((now, worker))

    def reap(self, now: float) -> float | None:
        plan = plan_reap([since for since, _ in self.idle], now=now, idle_timeout_s=self.timeout)
        for index in plan.reap:
            since, worker = self.idle[index]
            assert now - since >= self.timeout, "reaped a worker before its timeout"
            self.reaped.append(worker)
            self.reaped_at.append(now)
        gone = set(plan.reap)
        self.idle = [entry for i, entry in enumerate(self.idle) if i not in gone]
        return plan.next_check_at


ARRIVE, FINISH, CHECK, SAMPLE = range(4)


def simulate_hour(seed: int, timeout: float) -> tuple[SimulatedPool, float, dict[float, int]]:
    """One hour: a burst of parallel requests in the first minute, then one at a time.

    Returns the pool, the time of the last release and the pool size at sample moments.
    """
    rng = random.Random(seed)
    events: list[tuple[float, int, int, int]] = []  # (time, order, kind, worker)
    order = 0

    def push(at: float, kind: int, worker: int = 0) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (at, order, kind, worker))

    for _ in range(200):
        push(rng.uniform(0.0, 60.0), ARRIVE)
    at = 60.0
    while at < 3600.0:
        at += rng.uniform(20.0, 40.0)
        push(at, ARRIVE)
    samples = {60.0 + 1.5 * timeout: 0, 1800.0: 0}
    for moment in samples:
        push(moment, SAMPLE)

    pool = SimulatedPool(timeout=timeout)
    checks: set[float] = set()
    last_release = 0.0
    while events:
        now, _, kind, worker = heapq.heappop(events)
        if kind == ARRIVE:
            push(now + rng.uniform(0.5, 5.0), FINISH, pool.take())
        elif kind == FINISH:
            pool.give_back(worker, now)
            last_release = now
        elif kind == SAMPLE:
            samples[now] = pool.size
        next_check = pool.reap(now)
        # The pool loop sleeps until the plan's next check; nothing else wakes it here.
        if next_check is not None and next_check not in checks:
            checks.add(next_check)
            push(next_check, CHECK)
    return pool, last_release, samples


@pytest.mark.parametrize("seed", range(4))
def test_an_hour_of_traffic_shrinks_the_pool_to_zero(seed: int) -> None:
    """After a burst the pool shrinks to one warm worker, and to zero one timeout after the end."""
    timeout = 300.0
    pool, last_release, samples = simulate_hour(seed, timeout)
    assert pool.spawned > 5, "the burst should need several workers"
    # Sequential traffic after the burst reuses one hot worker; the others age out.
    assert all(size == 1 for size in samples.values()), samples
    assert pool.size == 0
    assert sorted(pool.reaped) == list(range(1, pool.spawned + 1))
    # The last worker goes exactly one timeout after the last release, not before.
    assert max(pool.reaped_at) == last_release + timeout


# ------------------------------------------------------------------ cold-start phases

durations = st.floats(min_value=0.0, max_value=1e5, allow_nan=False)


@given(init=durations, launch=durations, imports=durations, model_fn=durations)
def test_cold_start_phases_never_exceed_the_cold_start(
    init: float, launch: float, imports: float, model_fn: float
) -> None:
    """Whatever the measurements (the gateway's launch time overlaps the worker's own
    timings), the phases come in order, none is negative, and the worker's timings of
    imports and model_fn are kept; when those fit, the phases add up to the cold start."""
    phases = cold_start_phases("runtime-zygote", init, launch, imports, model_fn)
    assert [name for name, _ in phases] == ["fork", "imports", "model_fn", "ready"]
    assert all(ms >= 0.0 for _, ms in phases)
    assert phases[1][1] == imports
    assert phases[2][1] == model_fn
    if imports + model_fn <= init:
        assert sum(ms for _, ms in phases) == pytest.approx(init, abs=1e-6)


def test_cold_start_phases_overlapping_launch_is_clipped() -> None:
    """A launch the gateway timed at 5 ms, overlapping 3 ms of a 6 ms load in a 8 ms cold
    start, is given the 2 ms the load left, and nothing remains for READY."""
    assert cold_start_phases("model-zygote", 8.0, 5.0, 2.0, 4.0) == (
        ("fork", 2.0),
        ("imports", 2.0),
        ("model_fn", 4.0),
        ("ready", 0.0),
    )
    assert cold_start_phases("spawn", 20.0, 5.0, 2.0, 4.0)[0] == ("spawn", 5.0)
    assert cold_start_phases("spawn", 20.0, 5.0, 2.0, 4.0)[-1] == ("ready", 9.0)
