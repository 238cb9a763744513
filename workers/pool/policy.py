"""Pure pool policy: which idle worker to reuse, which idle workers to reap, and when to
look again; which tier serves a cold start, and where its time went. No I/O and no
clock: ``now`` is passed in, so tests simulate hours in microseconds. The pool's thin
loop applies these decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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


def model_zygote_expires_at(last_activity: float, zygote_idle_timeout_s: float) -> float:
    """When an endpoint's model zygote is reaped: its own keep-alive after the endpoint's
    last invocation, so an idle endpoint returns to zero processes of its own."""
    return last_activity + zygote_idle_timeout_s


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
