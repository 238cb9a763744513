"""The pool of one endpoint: which worker serves each request, and how many workers the
endpoint keeps. Reuse a warm worker, start one on demand, or wait; release it after the
call; keep ``min_workers`` warm; reap what idles; close.

Every decision comes from ``workers.pool.policy``, applied here. How a worker is started
is ``workers.pool.launch``, the model zygote's life ``workers.pool.model_zygote``, and the
watch over a running call ``workers.pool.watch``. One request holds one worker at a
time, and a pool never runs more than ``limits.max_workers`` workers: the gateway's
admission already caps requests at the endpoint's MaxConcurrency, and the pool enforces
the same bound on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from workers.pool.launch import Launcher, ZygoteSource
from workers.pool.model_zygote import ModelZygote
from workers.pool.placement import Placer
from workers.pool.policy import (
    WARM_RETRY_FIRST_S,
    Dispatch,
    choose_dispatch,
    cold_start_phases,
    idle_to_keep,
    next_warm_retry_delay,
    pick_most_recent,
    plan_reap,
    plan_warm,
)
from workers.pool.process import WorkerProcess
from workers.pool.sandbox import Sandboxes
from workers.pool.spec import Invocation, InvocationResult, PoolLimits, WorkerSpec
from workers.pool.tasks import RunBackground
from workers.pool.watch import Watch, explain
from workers.wire.errors import WorkerBroken, WorkerError


class PoolClosed(WorkerError):
    """The pool is closing (endpoint removed or gateway stopping); it takes no new work."""


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of one pool."""

    idle: int
    busy: int
    starting: int
    cold_starts: int
    reaped: int
    model_zygote: str
    cold_starts_by_tier: Mapping[str, int]


class EndpointPool:
    """The workers of one endpoint.

    ``now`` is a monotonic clock in seconds. ``run_background`` runs a coroutine under the
    owner's task group (each worker's supervision and stopping run so, never as loose
    tasks); ``wake_reaper(due)`` tells the owner's reaper loop that the next reap time may
    have moved (to ``due`` at the latest; None: look now). ``zygotes`` is None where
    zygotes are off: every worker is then a fresh interpreter.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        limits: PoolLimits,
        *,
        now: Callable[[], float],
        private_root: Path,
        inherited_env: Mapping[str, str],
        run_background: RunBackground,
        wake_reaper: Callable[[float | None], None],
        log: logging.Logger,
        zygotes: ZygoteSource | None = None,
        placer: Placer | None = None,
        sandboxes: Sandboxes | None = None,
    ) -> None:
        self.spec = spec
        self.limits = limits
        self._now = now
        self._run_background = run_background
        self._wake_reaper = wake_reaper
        self._log = log
        self._zygotes = zygotes
        self._placer = placer
        self._launcher = Launcher(
            spec,
            limits,
            now=now,
            private_root=private_root,
            inherited_env=inherited_env,
            run_background=run_background,
            log=log,
            zygotes=zygotes,
            placer=placer,
            sandboxes=sandboxes,
        )
        self._model_zygote = ModelZygote(
            label=spec.label,
            private_root=private_root,
            now=now,
            # The model zygote runs model_fn: within the endpoint's limits, as a worker.
            fork_request=self._launcher.fork_request,
            release=self._launcher.release_placement,
            deadline_s=limits.setup_timeout_s,
            closing=lambda: self._closing,
            run_background=run_background,
            on_ready=self._model_zygote_ready,
            on_exit=self._model_zygote_exited,
            log=log,
        )
        self._idle: list[WorkerProcess] = []  # oldest release first: the last is reused first
        self._busy: set[WorkerProcess] = set()
        self._live: set[WorkerProcess] = set()  # spawned and not yet exited
        self._starting = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._closing = False
        self._cold_starts = 0
        self._by_tier: dict[str, int] = {}
        self._reaped = 0
        self._warm_retry_at = 0.0
        self._warm_retry_delay = WARM_RETRY_FIRST_S
        self._all_exited = asyncio.Event()
        self._all_exited.set()
        self._last_activity = now()
        self._invocations = 0

    @property
    def total(self) -> int:
        """Workers counted against ``max_workers``: idle, busy and starting."""
        return len(self._idle) + len(self._busy) + self._starting

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            idle=len(self._idle),
            busy=len(self._busy),
            starting=self._starting,
            cold_starts=self._cold_starts,
            reaped=self._reaped,
            model_zygote=self._model_zygote.state.value,
            cold_starts_by_tier=dict(self._by_tier),
        )

    # ------------------------------------------------------------- invocations

    async def invoke(self, invocation: Invocation) -> InvocationResult:
        """Run one invocation on a warm worker, or on a new one when none is idle.

        Raises PoolClosed, SetupFailed, SetupTimeout (cold start), WorkerTimeout,
        WorkerBroken or ResponseTooLarge. A worker that failed is never reused.
        Cancellation kills the worker if it was serving this request.
        """
        self._last_activity = self._now()
        self._invocations += 1
        self._maybe_start_model_zygote()
        worker, cold = await self._acquire()
        watch = Watch(self._placer, worker) if self._placer is not None else None
        try:
            result = await worker.call(
                invocation,
                timeout_s=self.limits.invocation_timeout_s,
                max_response_bytes=self.limits.max_response_bytes,
            )
        except WorkerBroken as error:
            raise await explain(
                worker, error, placer=self._placer, memory_mb=self.spec.memory_mb
            ) from error
        finally:
            if watch is not None:
                await watch.disarm()
            self._release(worker)
        if cold:
            return replace(
                result,
                cold_start=True,
                tier=worker.tier,
                init_ms=worker.init_ms,
                worker_pid=worker.pid,
                phases=cold_start_phases(
                    worker.tier,
                    worker.init_ms or 0.0,
                    worker.launch_ms,
                    worker.import_ms,
                    worker.model_fn_ms,
                ),
            )
        return result

    async def _acquire(self) -> tuple[WorkerProcess, bool]:
        while True:
            if self._closing:
                raise PoolClosed(f"endpoint {self.spec.label} is shutting down")
            match choose_dispatch(
                idle=len(self._idle), total=self.total, max_workers=self.limits.max_workers
            ):
                case Dispatch.REUSE:
                    index = pick_most_recent([worker.idle_since for worker in self._idle])
                    assert index is not None
                    worker = self._idle.pop(index)
                    if worker.alive:  # a dead one is dropped, and the choice made again
                        self._busy.add(worker)
                        return worker, False
                case Dispatch.START:
                    worker = await self._start_worker()
                    self._busy.add(worker)
                    return worker, True
                case Dispatch.WAIT:
                    await self._wait_for_change()

    async def _wait_for_change(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _notify_waiters(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    # ------------------------------------------------------------- cold starts

    async def _start_worker(self) -> WorkerProcess:
        """Start a worker from the cheapest tier available and wait for READY. The
        caller places it (busy or idle)."""
        self._starting += 1
        self._cold_starts += 1
        started = self._now()
        try:
            worker = await self._launcher.start(
                self._model_zygote.ready(),
                on_started=self._worker_started,
                on_exited=self._worker_exited,
            )
        finally:
            self._starting -= 1
            self._notify_waiters()
        worker.init_ms = (self._now() - started) * 1000.0
        self._by_tier[worker.tier] = self._by_tier.get(worker.tier, 0) + 1
        self._log.info(
            "%s: worker %d ready in %.1f ms (%s)",
            self.spec.label,
            worker.pid,
            worker.init_ms,
            worker.tier,
        )
        if self._zygotes is not None and worker.imports:
            self._zygotes.learn(worker.imports)
        self._maybe_start_model_zygote()
        return worker

    def _worker_started(self, worker: WorkerProcess) -> None:
        self._live.add(worker)
        self._all_exited.clear()

    def _worker_exited(self, worker: WorkerProcess) -> None:
        self._live.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        self._check_all_exited()
        self._notify_waiters()
        self._wake_reaper(None)  # a kept-warm worker that died is replaced

    # ----------------------------------------------------------- model zygote

    def _maybe_start_model_zygote(self) -> None:
        """Give an endpoint with traffic a model zygote for its next cold starts."""
        if self._zygotes is not None:
            self._model_zygote.maybe_begin(
                self._launcher.runtime_zygote(), invocations=self._invocations
            )

    def _model_zygote_ready(self) -> None:
        self._all_exited.clear()
        self._wake_reaper(None)  # it expires after its keep-alive

    def _model_zygote_exited(self) -> None:
        # An endpoint with traffic whose model zygote died gets a new one at once.
        self._maybe_start_model_zygote()
        self._check_all_exited()

    # ------------------------------------------------------- release and reap

    def _release(self, worker: WorkerProcess) -> None:
        self._busy.discard(worker)
        self._make_idle(worker)

    def _make_idle(self, worker: WorkerProcess) -> None:
        if worker.alive:
            if self._closing:
                self._stop_nowait(worker)
            else:
                worker.idle_since = self._now()
                self._idle.append(worker)
                self._wake_reaper(worker.idle_since + self.limits.idle_timeout_s)
        self._notify_waiters()

    def _stop_nowait(self, worker: WorkerProcess) -> None:
        """Stop ``worker`` in the background, or kill it now when no task can."""
        if not self._run_background(self._stop(worker), on_bug=worker.kill):
            worker.kill()

    async def _stop(self, worker: WorkerProcess) -> None:
        await worker.stop()

    async def prewarm(self) -> float:
        """Start one worker and leave it idle; return its model load time in ms.

        Used to prove a model loads (an endpoint becomes InService once one worker has
        answered READY). Raises PoolClosed, SetupFailed or SetupTimeout.
        """
        if self._closing:
            raise PoolClosed(f"endpoint {self.spec.label} is shutting down")
        worker = await self._start_worker()
        self._make_idle(worker)
        return worker.load_ms or 0.0

    def replenish_nowait(self, now: float) -> float | None:
        """Start workers until ``min_workers`` exist; return when to look again (after a
        failed start, not before the retry delay)."""
        plan = plan_warm(
            min_workers=self.limits.min_workers,
            total=self.total,
            now=now,
            retry_at=self._warm_retry_at,
            closing=self._closing,
        )
        for _ in range(plan.start):
            self._run_background(self._keep_warm())
        return plan.next_check_at

    async def _keep_warm(self) -> None:
        try:
            worker = await self._start_worker()
        except WorkerError as error:
            self._warm_retry_at = self._now() + self._warm_retry_delay
            self._warm_retry_delay = next_warm_retry_delay(self._warm_retry_delay)
            self._log.error(
                "%s: could not keep a worker warm: %s (next try in %g s)",
                self.spec.label,
                error,
                self._warm_retry_at - self._now(),
            )
            self._wake_reaper(None)
            return
        self._warm_retry_delay = WARM_RETRY_FIRST_S
        self._make_idle(worker)

    def reap_idle_nowait(self, now: float) -> float | None:
        """Stop the idle workers (and the model zygote) whose keep-alive has passed;
        return when to look again."""
        plan = plan_reap(
            [worker.idle_since for worker in self._idle],
            now=now,
            idle_timeout_s=self.limits.idle_timeout_s,
            keep=idle_to_keep(
                min_workers=self.limits.min_workers,
                busy=len(self._busy),
                starting=self._starting,
            ),
        )
        if plan.reap:
            doomed = set(plan.reap)
            victims = [w for i, w in enumerate(self._idle) if i in doomed]
            self._idle = [w for i, w in enumerate(self._idle) if i not in doomed]
            for worker in victims:
                self._reaped += 1
                self._stop_nowait(worker)
        zygote_at = self._model_zygote.expire_nowait(
            last_activity=self._last_activity,
            idle_timeout_s=self.limits.zygote_idle_timeout_s,
            now=now,
        )
        return min((at for at in (plan.next_check_at, zygote_at) if at is not None), default=None)

    @property
    def has_processes(self) -> bool:
        """A worker or the model zygote of this pool still runs."""
        return bool(self._live) or self._model_zygote.alive

    def _check_all_exited(self) -> None:
        if not self._live and not self._model_zygote.alive:
            self._all_exited.set()

    def close_nowait(self) -> None:
        """Take no new work; stop idle workers and the model zygote now, and busy
        workers when their request ends."""
        self._closing = True
        for worker in self._idle:
            self._stop_nowait(worker)
        self._idle.clear()
        self._model_zygote.close()
        self._notify_waiters()

    async def wait_closed(self) -> None:
        """Wait until every worker and the model zygote of this pool have exited. Call
        after ``close_nowait``."""
        await self._all_exited.wait()
