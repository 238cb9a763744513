"""Pool policy in simulated time: dispatch (reuse, start or wait), most-recent reuse, idle
reaping and the next check, keeping workers warm, and the model zygote's start and expiry."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.pool.policy import (
    MODEL_ZYGOTE_AFTER_INVOCATIONS,
    WARM_RETRY_FIRST_S,
    WARM_RETRY_MAX_S,
    Dispatch,
    ReapPlan,
    WarmPlan,
    ZygotePlan,
    choose_dispatch,
    cold_start_phases,
    idle_to_keep,
    next_warm_retry_delay,
    pick_most_recent,
    plan_model_zygote,
    plan_reap,
    plan_warm,
    wants_model_zygote,
)

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


# ------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize(
    ("idle", "total", "max_workers", "dispatch"),
    [
        (1, 1, 1, Dispatch.REUSE),  # an idle worker is reused even in a full pool
        (2, 5, 3, Dispatch.REUSE),
        (0, 0, 1, Dispatch.START),  # a cold start from zero
        (0, 2, 3, Dispatch.START),
        (0, 3, 3, Dispatch.WAIT),  # full: wait for a release, never start a fourth
        (0, 4, 3, Dispatch.WAIT),
    ],
)
def test_dispatch_reuses_then_starts_then_waits(
    idle: int, total: int, max_workers: int, dispatch: Dispatch
) -> None:
    assert choose_dispatch(idle=idle, total=total, max_workers=max_workers) is dispatch


@given(
    st.integers(min_value=1, max_value=8),
    st.lists(st.booleans(), min_size=1, max_size=200),
)
def test_dispatch_never_exceeds_max_workers_nor_waits_beside_an_idle_worker(
    max_workers: int, arrivals: list[bool]
) -> None:
    """Requests arrive (True) and finish (False) in any order: applying the dispatch
    decision never makes more than max_workers workers, and a request waits only when
    every worker is busy."""
    idle = busy = waiting = 0
    for arrive in arrivals:
        if arrive:
            waiting += 1
        elif busy:
            busy -= 1
            idle += 1
        while waiting:
            match choose_dispatch(idle=idle, total=idle + busy, max_workers=max_workers):
                case Dispatch.REUSE:
                    idle -= 1
                case Dispatch.START:
                    pass
                case Dispatch.WAIT:
                    assert idle == 0
                    assert busy == max_workers
                    break
            waiting -= 1
            busy += 1
            assert idle + busy <= max_workers


# ----------------------------------------------------------------------- warm workers


@pytest.mark.parametrize(
    ("min_workers", "busy", "starting", "keep"),
    [(0, 0, 0, 0), (2, 0, 0, 2), (2, 1, 0, 1), (2, 1, 1, 0), (2, 3, 0, -1)],
)
def test_idle_workers_kept_count_busy_and_starting_ones_as_warm(
    min_workers: int, busy: int, starting: int, keep: int
) -> None:
    assert idle_to_keep(min_workers=min_workers, busy=busy, starting=starting) == keep


def test_plan_warm_starts_what_is_missing() -> None:
    plan = plan_warm(min_workers=3, total=1, now=10.0, retry_at=0.0, closing=False)
    assert plan == WarmPlan(start=2, next_check_at=None)


def test_plan_warm_does_nothing_when_enough_or_closing() -> None:
    assert plan_warm(min_workers=2, total=2, now=0.0, retry_at=0.0, closing=False) == WarmPlan(
        0, None
    )
    assert plan_warm(min_workers=2, total=0, now=0.0, retry_at=0.0, closing=True) == WarmPlan(
        0, None
    )


def test_plan_warm_waits_out_the_retry_delay() -> None:
    """After a failed start nothing starts before retry_at, which is the next check."""
    assert plan_warm(min_workers=1, total=0, now=9.9, retry_at=10.0, closing=False) == WarmPlan(
        0, 10.0
    )
    assert plan_warm(min_workers=1, total=0, now=10.0, retry_at=10.0, closing=False) == WarmPlan(
        1, None
    )


def test_a_model_that_never_loads_is_retried_with_backoff_not_in_a_loop() -> None:
    """Keeping a worker warm for a model that always fails to load: over an hour of
    simulated time the attempts back off (1, 2, 4 ... 60 s apart), about once a minute
    at most once the delay is capped."""
    now, retry_at, delay = 0.0, 0.0, WARM_RETRY_FIRST_S
    attempts: list[float] = []
    while now < 3600.0:
        plan = plan_warm(min_workers=1, total=0, now=now, retry_at=retry_at, closing=False)
        if plan.start:
            attempts.append(now)  # the start fails at once
            retry_at, delay = now + delay, next_warm_retry_delay(delay)
            continue
        assert plan.next_check_at == retry_at
        now = retry_at  # the reaper sleeps until the plan's next check
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert set(gaps[6:]) == {WARM_RETRY_MAX_S}
    assert len(attempts) <= 6 + 3600 / WARM_RETRY_MAX_S + 1


# ----------------------------------------------------------------------- model zygote

ZYGOTE_WANTED = {
    "invocations": MODEL_ZYGOTE_AFTER_INVOCATIONS,
    "has_one": False,
    "runtime_zygote": True,
    "closing": False,
    "now": 100.0,
    "retry_at": 100.0,
}


def test_an_endpoint_with_traffic_wants_a_model_zygote() -> None:
    assert wants_model_zygote(**ZYGOTE_WANTED) is True


@pytest.mark.parametrize(
    "change",
    [
        {"invocations": MODEL_ZYGOTE_AFTER_INVOCATIONS - 1},  # a one-off invocation
        {"has_one": True},  # one runs, starts, or was found unsuitable
        {"runtime_zygote": False},  # nothing to fork it from
        {"closing": True},
        {"now": 99.9},  # a failed start waits out its retry delay
    ],
)
def test_a_model_zygote_is_not_started_when(change: dict[str, object]) -> None:
    assert wants_model_zygote(**{**ZYGOTE_WANTED, **change}) is False


def test_a_model_zygote_expires_its_keep_alive_after_the_last_invocation() -> None:
    assert plan_model_zygote(
        last_activity=50.0, zygote_idle_timeout_s=600.0, now=649.0
    ) == ZygotePlan(expire=False, next_check_at=650.0)
    assert plan_model_zygote(
        last_activity=50.0, zygote_idle_timeout_s=600.0, now=650.0
    ) == ZygotePlan(expire=True, next_check_at=None)
