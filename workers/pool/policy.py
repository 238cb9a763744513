"""Pure pool policy, every decision of the pool as a function of its state and ``now``:
whether a request reuses an idle worker (which one), starts one or waits; which idle
workers to reap and when to look again; how many workers to keep warm and when to try
again after a failed start; when an endpoint gets a model zygote and when that expires;
which tier serves a cold start, and where its time went.

No I/O and no clock: ``now`` is passed in, so tests simulate hours in microseconds. The
pool (``workers.pool.endpoint``) applies these decisions.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# An endpoint "has traffic", and gets a model zygote, from its second invocation: a
# one-off invocation would pay for loading its model twice on a busy machine.
MODEL_ZYGOTE_AFTER_INVOCATIONS: Final = 2
# Keeping min_workers warm never turns into a crash loop: after a failed start the next
# attempt waits, doubling from the first delay up to the last.
WARM_RETRY_FIRST_S: Final = 1.0
WARM_RETRY_MAX_S: Final = 60.0


class Dispatch(enum.Enum):
    """What a request that needs a worker does now."""

    REUSE = "reuse"  # take an idle worker: the one ``pick_most_recent`` names
    START = "start"  # start a new worker for it (a cold start)
    WAIT = "wait"  # every worker is busy and the pool is full: wait for a change


def choose_dispatch(*, idle: int, total: int, max_workers: int) -> Dispatch:
    """Reuse an idle worker when there is one; else start one while the pool has fewer
    than ``max_workers`` (idle, busy and starting ones all count); else wait."""
    if idle:
        return Dispatch.REUSE
    if total < max_workers:
        return Dispatch.START
    return Dispatch.WAIT


@dataclass(frozen=True, slots=True)
class ReapPlan:
    """What to do with the idle workers now.

    ``reap`` holds indexes into the idle list given to ``plan_reap``. ``next_check_at`` is
    the earliest moment another idle worker can expire (None: nothing can expire until
    something changes).
    """

    reap: tuple[int, ...]
    next_check_at: float | None


def pick_most_recent(idle_since: Sequence[float]) -> int | None:
    """Index of the idle worker to reuse: the most recently used one.

    Reusing the hottest worker keeps its caches warm and lets the coldest ones age out,
    so a pool shrinks to what the traffic needs. ``idle_since`` is in the order workers
    became idle, so the last is the most recent. None when nothing is idle.
    """
    return len(idle_since) - 1 if idle_since else None


def idle_to_keep(*, min_workers: int, busy: int, starting: int) -> int:
    """How many idle workers reaping must spare: warm workers are counted with the busy
    and starting ones, so only idle workers beyond ``min_workers`` in all may expire."""
    return min_workers - busy - starting


@dataclass(frozen=True, slots=True)
class WarmPlan:
    """How many workers to start now to keep ``min_workers`` warm, and when to look
    again by itself (None: only when something changes)."""

    start: int
    next_check_at: float | None


def plan_warm(
    *, min_workers: int, total: int, now: float, retry_at: float, closing: bool
) -> WarmPlan:
    """Start the missing warm workers, unless the pool is closing or a failed start
    asked to wait until ``retry_at``."""
    missing = min_workers - total
    if closing or missing <= 0:
        return WarmPlan(0, None)
    if now < retry_at:
        return WarmPlan(0, retry_at)
    return WarmPlan(missing, None)


def next_warm_retry_delay(delay: float) -> float:
    """The wait after the next failed warm start, given this one's: doubled, capped."""
    return min(delay * 2, WARM_RETRY_MAX_S)


def plan_reap(
    idle_since: Sequence[float],
    *,
    now: float,
    idle_timeout_s: float,
    keep: int = 0,
) -> ReapPlan:
    """Decide which idle workers to stop.

    ``idle_since[i]`` is when idle worker ``i`` was last released, oldest first. A worker
    idle for ``idle_timeout_s`` or longer is reaped, oldest first, except that ``keep``
    idle workers are never reaped (provisioned concurrency).
    """
    if idle_timeout_s <= 0:
        raise ValueError(f"idle_timeout_s must be > 0, got {idle_timeout_s}")
    reapable = max(0, len(idle_since) - max(0, keep))
    reap: list[int] = []
    next_check_at: float | None = None
    for i in range(reapable):
        expires_at = idle_since[i] + idle_timeout_s
        if now >= expires_at:
            reap.append(i)
        elif next_check_at is None or expires_at < next_check_at:
            next_check_at = expires_at
    return ReapPlan(reap=tuple(reap), next_check_at=next_check_at)


MODEL_ZYGOTE = "model-zygote"
RUNTIME_ZYGOTE = "runtime-zygote"
SPAWN = "spawn"


def cold_start_tiers(*, model_zygote: bool, runtime_zygote: bool) -> tuple[str, ...]:
    """The ways to start a worker, cheapest first: fork the endpoint's model zygote (the
    model is already in memory), fork the runtime zygote (frameworks imported, the model
    loads after the fork), or start a fresh interpreter. A tier whose zygote is not
    available is skipped; a fresh interpreter is always the last resort."""
    tiers = []
    if model_zygote:
        tiers.append(MODEL_ZYGOTE)
    if runtime_zygote:
        tiers.append(RUNTIME_ZYGOTE)
    tiers.append(SPAWN)
    return tuple(tiers)


def wants_model_zygote(
    *,
    invocations: int,
    has_one: bool,
    runtime_zygote: bool,
    closing: bool,
    now: float,
    retry_at: float,
) -> bool:
    """Whether an endpoint should start a model zygote now: it has traffic (its second
    invocation), has none (nor one starting, nor one found unsuitable), the runtime
    zygote to fork it from is up, the pool is not closing, and a failed start is not
    waiting out its retry delay."""
    return (
        invocations >= MODEL_ZYGOTE_AFTER_INVOCATIONS
        and not has_one
        and runtime_zygote
        and not closing
        and now >= retry_at
    )


@dataclass(frozen=True, slots=True)
class ZygotePlan:
    """Whether a model zygote expires now, and when to look again (None: it expired)."""

    expire: bool
    next_check_at: float | None


def plan_model_zygote(
    *, last_activity: float, zygote_idle_timeout_s: float, now: float
) -> ZygotePlan:
    """An endpoint's model zygote expires its own keep-alive after the endpoint's last
    invocation, so an idle endpoint returns to zero processes of its own."""
    expires_at = last_activity + zygote_idle_timeout_s
    if now >= expires_at:
        return ZygotePlan(True, None)
    return ZygotePlan(False, expires_at)


def cold_start_phases(
    tier: str | None, init_ms: float, launch_ms: float, import_ms: float, model_fn_ms: float
) -> tuple[tuple[str, float], ...]:
    """Where a cold start of ``init_ms`` went, in order: starting the process (a fork of
    a zygote, or a fresh interpreter), importing the inference code, model_fn, and the
    rest until READY. Pure; every phase is >= 0 and together they never exceed
    ``init_ms``."""
    launch = "spawn" if tier == SPAWN else "fork"
    loading = import_ms + model_fn_ms
    # A forked worker starts loading before the gateway has read the fork's reply, so
    # the launch as the gateway timed it overlaps the worker's own timings: it gets what
    # they leave.
    launch_ms = max(0.0, min(launch_ms, init_ms - loading))
    return (
        (launch, launch_ms),
        ("imports", import_ms),
        ("model_fn", model_fn_ms),
        ("ready", max(0.0, init_ms - launch_ms - loading)),
    )
