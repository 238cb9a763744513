"""The pool of one endpoint: reuse warm workers, start new ones on demand, reap idle ones.

Decisions (which worker, which to reap) come from ``workers.policy``; this module applies
them. One request holds one worker at a time, and a pool never runs more than
``limits.max_workers`` workers: the gateway's admission already caps requests at the
endpoint's MaxConcurrency, and the pool enforces the same bound on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from workers.errors import WorkerError
from workers.policy import pick_most_recent, plan_reap
from workers.process import WorkerProcess, describe_exit
from workers.spec import Invocation, InvocationResult, PoolLimits, WorkerSpec

# A worker's output is logged line by line; a longer run without a newline is cut here.
MAX_LOG_LINE = 16 * 1024
# Keeping min_workers warm never turns into a crash loop: after a failed start the next
# attempt waits, doubling from the first delay up to the last.
WARM_RETRY_FIRST_S = 1.0
WARM_RETRY_MAX_S = 60.0

RunBackground = Callable[[Coroutine[Any, Any, None]], None]


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


class EndpointPool:
    """The workers of one endpoint.

    ``now`` is a monotonic clock in seconds. ``run_background`` runs a coroutine under the
    owner's task group (each worker's supervision and stopping run so, never as loose
    tasks); ``wake_reaper`` tells the owner's reaper loop that the next reap time may have
    moved.
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
        wake_reaper: Callable[[], None],
        log: logging.Logger,
    ) -> None:
        self.spec = spec
        self.limits = limits
        self._now = now
        self._private_root = private_root
        self._inherited_env = inherited_env
        self._run_background = run_background
        self._wake_reaper = wake_reaper
        self._log = log
        self._idle: list[WorkerProcess] = []  # oldest release first: the last is reused first
        self._busy: set[WorkerProcess] = set()
        self._live: set[WorkerProcess] = set()  # spawned and not yet exited
        self._starting = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._closing = False
        self._cold_starts = 0
        self._reaped = 0
        self._warm_retry_at = 0.0
        self._warm_retry_delay = WARM_RETRY_FIRST_S
        self._all_exited = asyncio.Event()
        self._all_exited.set()

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
        )

    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (for introspection and tests)."""
        return sorted(worker.pid for worker in self._live)

    async def invoke(self, invocation: Invocation) -> InvocationResult:
        """Run one invocation on a warm worker, or on a new one when none is idle.

        Raises PoolClosed, SetupFailed, SetupTimeout (cold start), WorkerTimeout,
        WorkerBroken or ResponseTooLarge. A worker that failed is never reused.
        Cancellation kills the worker if it was serving this request.
        """
        worker, cold = await self._acquire()
        try:
            result = await worker.call(
                invocation,
                timeout_s=self.limits.invocation_timeout_s,
                max_response_bytes=self.limits.max_response_bytes,
            )
        finally:
            self._release(worker)
        return replace(result, cold_start=True) if cold else result

    async def _acquire(self) -> tuple[WorkerProcess, bool]:
        while True:
            if self._closing:
                raise PoolClosed(f"endpoint {self.spec.label} is shutting down")
            worker = self._take_idle_nowait()
            if worker is not None:
                self._busy.add(worker)
                return worker, False
            if self.total < self.limits.max_workers:
                break
            await self._wait_for_change()
        worker = await self._start_worker()
        self._busy.add(worker)
        return worker, True

    def _take_idle_nowait(self) -> WorkerProcess | None:
        while self._idle:
            index = pick_most_recent([worker.idle_since for worker in self._idle])
            assert index is not None
            worker = self._idle.pop(index)
            if worker.alive:
                return worker
        return None

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

    async def _start_worker(self) -> WorkerProcess:
        """Spawn a worker and wait for READY. The caller places it (busy or idle)."""
        self._starting += 1
        self._cold_starts += 1
        try:
            worker = await WorkerProcess.spawn(
                self.spec,
                max_response_bytes=self.limits.max_response_bytes,
                private_root=self._private_root,
                inherited_env=self._inherited_env,
            )
            self._live.add(worker)
            self._all_exited.clear()
            self._run_background(self._supervise(worker))
            load_ms = await worker.wait_ready(self.limits.setup_timeout_s)
        finally:
            self._starting -= 1
            self._notify_waiters()
        self._log.info(
            "%s: worker %d ready, model loaded in %.1f ms", self.spec.label, worker.pid, load_ms
        )
        return worker

    def _release(self, worker: WorkerProcess) -> None:
        self._busy.discard(worker)
        self._make_idle(worker)

    def _make_idle(self, worker: WorkerProcess) -> None:
        if worker.alive:
            if self._closing:
                self._run_background(self._stop(worker))
            else:
                worker.idle_since = self._now()
                self._idle.append(worker)
                self._wake_reaper()
        self._notify_waiters()

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
        missing = self.limits.min_workers - self.total
        if self._closing or missing <= 0:
            return None
        if now < self._warm_retry_at:
            return self._warm_retry_at
        for _ in range(missing):
            self._run_background(self._keep_warm())
        return None

    async def _keep_warm(self) -> None:
        try:
            worker = await self._start_worker()
        except WorkerError as error:
            self._warm_retry_at = self._now() + self._warm_retry_delay
            self._warm_retry_delay = min(self._warm_retry_delay * 2, WARM_RETRY_MAX_S)
            self._log.error(
                "%s: could not keep a worker warm: %s (next try in %g s)",
                self.spec.label,
                error,
                self._warm_retry_at - self._now(),
            )
            self._wake_reaper()
            return
        self._warm_retry_delay = WARM_RETRY_FIRST_S
        self._make_idle(worker)

    async def _stop(self, worker: WorkerProcess) -> None:
        await worker.stop()

    async def _supervise(self, worker: WorkerProcess) -> None:
        """Forward the worker's output to the log until it closes, then clean up after
        the process: this is the one place a worker's exit is observed."""
        stream = worker.log_stream
        pending = b""
        while chunk := await stream.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LOG_LINE:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._log_output(worker, line)
        if pending:
            self._log_output(worker, pending)
        returncode = await worker.wait_exited()
        self._live.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        if not self._live:
            self._all_exited.set()
        self._notify_waiters()
        self._wake_reaper()  # a kept-warm worker that died is replaced
        self._log.info("%s: worker %d %s", self.spec.label, worker.pid, describe_exit(returncode))

    def _log_output(self, worker: WorkerProcess, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        self._log.info("%s: worker %d: %s", self.spec.label, worker.pid, text)

    def reap_idle_nowait(self, now: float) -> float | None:
        """Stop the idle workers whose keep-alive has passed; return when to look again."""
        # Warm workers are counted with the busy and starting ones: only idle workers
        # beyond min_workers in all may expire.
        keep = self.limits.min_workers - len(self._busy) - self._starting
        plan = plan_reap(
            [worker.idle_since for worker in self._idle],
            now=now,
            idle_timeout_s=self.limits.idle_timeout_s,
            keep=keep,
        )
        if plan.reap:
            doomed = set(plan.reap)
            victims = [w for i, w in enumerate(self._idle) if i in doomed]
            self._idle = [w for i, w in enumerate(self._idle) if i not in doomed]
            for worker in victims:
                self._reaped += 1
                self._run_background(self._stop(worker))
        return plan.next_check_at

    def close_nowait(self) -> None:
        """Take no new work; stop idle workers now and busy ones when their request ends."""
        self._closing = True
        for worker in self._idle:
            self._run_background(self._stop(worker))
        self._idle.clear()
        self._notify_waiters()

    async def wait_closed(self) -> None:
        """Wait until every worker of this pool has exited. Call after ``close_nowait``."""
        await self._all_exited.wait()
