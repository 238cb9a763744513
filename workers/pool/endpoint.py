"""The pool of one endpoint: reuse warm workers, start new ones on demand from the
cheapest warm tier, keep a model zygote while the endpoint has traffic, reap what idles.

Decisions (which worker, which tier, what to reap) come from ``workers.pool.policy``; this
module applies them. One request holds one worker at a time, and a pool never runs more
than ``limits.max_workers`` workers: the gateway's admission already caps requests at the
endpoint's MaxConcurrency, and the pool enforces the same bound on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from workers.pool.environment import worker_environment
from workers.pool.output import forward_output
from workers.pool.placement import Placer, over_disk, over_memory
from workers.pool.policy import (
    MODEL_ZYGOTE,
    RUNTIME_ZYGOTE,
    cold_start_phases,
    cold_start_tiers,
    model_zygote_expires_at,
    pick_most_recent,
    plan_reap,
)
from workers.pool.process import WorkerProcess
from workers.pool.processes import describe_exit
from workers.pool.spec import Invocation, InvocationResult, PoolLimits, WorkerSpec
from workers.pool.zygote_link import ZygoteBroken, ZygoteLink, ZygoteUnsuitable, start_model_zygote
from workers.wire.errors import WorkerBroken, WorkerError, WorkerOutOfDisk, WorkerOutOfMemory
from workers.wire.messages import ForkRequest

# Keeping min_workers warm never turns into a crash loop: after a failed start the next
# attempt waits, doubling from the first delay up to the last.
WARM_RETRY_FIRST_S = 1.0
WARM_RETRY_MAX_S = 60.0
# A model zygote that failed to start is not tried again for this long.
MODEL_ZYGOTE_RETRY_S = 60.0
# An endpoint "has traffic", and gets a model zygote, from its second invocation: a
# one-off invocation would pay for loading its model twice on a busy machine.
MODEL_ZYGOTE_AFTER_INVOCATIONS = 2
# The watchdog of a running call: first look, then every tick; disk every few ticks.
WATCH_FIRST_S = 0.05
WATCH_EVERY_S = 0.05
DISK_EVERY_TICKS = 20
# How long a failed call waits for the worker's exit to be inspected.
SETTLE_S = 2.0

RunBackground = Callable[[Coroutine[Any, Any, None]], bool]


class ZygoteSource(Protocol):
    """What a pool needs from its owner about the runtime zygote."""

    def runtime(self) -> ZygoteLink | None:
        """The runtime zygote, when it is up and ready."""
        ...

    def learn(self, modules: Iterable[str]) -> None:
        """Modules an endpoint's handler imported; pre-import them from now on."""
        ...


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
    ) -> None:
        self.spec = spec
        self.limits = limits
        self._now = now
        self._private_root = private_root
        self._inherited_env = inherited_env
        self._run_background = run_background
        self._wake_reaper = wake_reaper
        self._log = log
        self._zygotes = zygotes
        self._placer = placer
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
        self._model_zygote: ZygoteLink | None = None
        self._model_zygote_state = "none"  # none | starting | ready | unsuitable
        self._model_zygote_retry_at = 0.0

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
            model_zygote=self._model_zygote_state,
            cold_starts_by_tier=dict(self._by_tier),
        )

    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (for introspection and tests)."""
        return sorted(worker.pid for worker in self._live)

    def model_zygote_pid(self) -> int | None:
        link = self._model_zygote
        return link.process.pid if link is not None and link.alive else None

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
        # A call that outlasts WATCH_FIRST_S gets a watchdog task, which this call owns
        # and ends; shorter calls (nearly all) cost one timer instead of a task.
        watchdog: list[asyncio.Task[None]] = []
        timer = (
            asyncio.get_running_loop().call_later(
                WATCH_FIRST_S, lambda: watchdog.append(asyncio.create_task(self._watch(worker)))
            )
            if self._placer is not None
            else None
        )
        try:
            result = await worker.call(
                invocation,
                timeout_s=self.limits.invocation_timeout_s,
                max_response_bytes=self.limits.max_response_bytes,
            )
        except WorkerBroken as error:
            raise await self._explain(worker, error) from error
        finally:
            if timer is not None:
                timer.cancel()
            for task in watchdog:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._release(worker)
        if cold:
            return replace(
                result,
                cold_start=True,
                tier=worker.tier,
                init_ms=worker.init_ms,
                phases=cold_start_phases(
                    worker.tier,
                    worker.init_ms or 0.0,
                    worker.launch_ms,
                    worker.import_ms,
                    worker.model_fn_ms,
                ),
            )
        return result

    async def _watch(self, worker: WorkerProcess) -> None:
        """While a call runs (from WATCH_FIRST_S into it): stop the worker once it uses more
        memory than its size (where no kernel limit does) or more disk than its private
        directory may hold."""
        assert self._placer is not None
        name = worker.private_name
        memory = self._placer.memory_bytes(name)
        disk = self._placer.disk_bytes(name)
        tick = 0
        while True:
            if self._placer.watches_memory and over_memory(worker.pid, memory):
                worker.out_of_memory = True
                worker.kill()
                return
            if tick % DISK_EVERY_TICKS == 0 and await asyncio.to_thread(
                over_disk, worker.private_dir, disk
            ):
                worker.out_of_disk = True
                worker.kill()
                return
            tick += 1
            await asyncio.sleep(WATCH_EVERY_S)

    async def _explain(self, worker: WorkerProcess, error: WorkerBroken) -> WorkerBroken:
        """The most precise account of a worker's death: out of memory or disk when it
        was stopped for that (by the watchdog or the kernel), else ``error``."""
        if self._placer is not None and not (worker.out_of_memory or worker.out_of_disk):
            # The kernel's verdict is read by the worker's supervisor at its exit.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SETTLE_S):
                    await worker.settled.wait()
        if worker.out_of_memory:
            return WorkerOutOfMemory(self.spec.memory_mb)
        if worker.out_of_disk:
            return WorkerOutOfDisk(
                self._placer.disk_bytes(worker.private_name) if self._placer else 0
            )
        return error

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

    # ------------------------------------------------------------- cold starts

    async def _start_worker(self) -> WorkerProcess:
        """Start a worker from the cheapest tier available and wait for READY. The
        caller places it (busy or idle)."""
        self._starting += 1
        self._cold_starts += 1
        started = self._now()
        private_dir = Path(tempfile.mkdtemp(prefix="worker-", dir=self._private_root))
        worker: WorkerProcess | None = None
        try:
            worker = await self._launch(private_dir)
            worker.launch_ms = (self._now() - started) * 1000.0
            self._live.add(worker)
            self._all_exited.clear()
            self._run_background(self._supervise(worker))
            await worker.wait_ready(self.limits.setup_timeout_s)
        except BaseException:
            if worker is None:
                shutil.rmtree(private_dir, ignore_errors=True)
                if self._placer is not None:
                    await asyncio.to_thread(self._placer.release, private_dir.name)
            raise
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

    def _fork_request(self, private_dir: Path) -> ForkRequest:
        placement = None
        if self._placer is not None:
            placement = self._placer.prepare(private_dir.name, self.spec.memory_mb)
            # Thread counts the model's own Environment sets win over the defaults.
            placement["env"] = {
                key: value
                for key, value in placement["env"].items()
                if key not in self.spec.environment
            }
        return {
            "role": "worker",
            "model_dir": str(self.spec.model_dir),
            "env": worker_environment(
                self.spec.environment,
                inherited={},
                private_dir=private_dir,
                model_dir=self.spec.model_dir,
            ),
            "private_dir": str(private_dir),
            "placement": placement,
            "max_response_bytes": self.limits.max_response_bytes,
        }

    async def _launch(self, private_dir: Path) -> WorkerProcess:
        runtime = self._zygotes.runtime() if self._zygotes is not None else None
        model = self._model_zygote if self._model_zygote_state == "ready" else None
        tiers = cold_start_tiers(
            model_zygote=model is not None and model.alive,
            runtime_zygote=runtime is not None,
        )
        request = self._fork_request(private_dir)
        for tier in tiers:
            zygote = model if tier == MODEL_ZYGOTE else runtime if tier == RUNTIME_ZYGOTE else None
            if zygote is None:
                return await WorkerProcess.spawn(
                    self.spec,
                    max_response_bytes=self.limits.max_response_bytes,
                    private_dir=private_dir,
                    inherited_env=self._inherited_env,
                    placement=request["placement"],
                )
            try:
                forked = await zygote.fork(request)
            except ZygoteBroken as error:
                # The next cheapest tier serves this cold start; a dead zygote is
                # replaced in the background.
                self._log.warning("%s: %s; falling back", self.spec.label, error)
                continue
            return await WorkerProcess.adopt(
                forked, private_dir=private_dir, label=self.spec.label, tier=tier
            )
        raise AssertionError("a fresh interpreter is always the last tier")

    # ----------------------------------------------------------- model zygote

    def _maybe_start_model_zygote(self) -> None:
        """Give an endpoint with traffic a model zygote for its next cold starts."""
        if (
            self._invocations < MODEL_ZYGOTE_AFTER_INVOCATIONS
            or self._zygotes is None
            or self._closing
            or self._model_zygote_state != "none"
            or self._now() < self._model_zygote_retry_at
            or self._zygotes.runtime() is None
        ):
            return
        self._model_zygote_state = "starting"
        self._run_background(self._start_model_zygote())

    async def _start_model_zygote(self) -> None:
        runtime = self._zygotes.runtime() if self._zygotes is not None else None
        private_dir = Path(tempfile.mkdtemp(prefix="zygote-", dir=self._private_root))
        request = {**self._fork_request(private_dir), "placement": None}
        try:
            if runtime is None:
                raise ZygoteBroken("runtime zygote is gone")
            link = await start_model_zygote(
                runtime, request, deadline_s=self.limits.setup_timeout_s
            )
        except ZygoteUnsuitable as reason:
            self._model_zygote_state = "unsuitable"
            self._log.info("%s: no model zygote: %s", self.spec.label, reason)
            shutil.rmtree(private_dir, ignore_errors=True)
            return
        except WorkerError as error:
            self._model_zygote_state = "none"
            self._model_zygote_retry_at = self._now() + MODEL_ZYGOTE_RETRY_S
            if not self._closing:  # closing cuts a start short; that is no failure
                self._log.warning("%s: model zygote failed to start: %s", self.spec.label, error)
            shutil.rmtree(private_dir, ignore_errors=True)
            return
        self._model_zygote = link
        self._model_zygote_state = "ready"
        self._all_exited.clear()
        self._run_background(self._supervise_zygote(link, private_dir))
        if self._closing:
            link.close()
        self._wake_reaper(None)
        self._log.info(
            "%s: model zygote %d ready, model loaded in %.1f ms",
            self.spec.label,
            link.process.pid,
            float(link.ready.get("load_ms", 0.0)),
        )

    async def _supervise_zygote(self, link: ZygoteLink, private_dir: Path) -> None:
        prefix = f"{self.spec.label}: model zygote {link.process.pid}"
        await forward_output(link.output, self._log, prefix)
        returncode = await link.process.wait()
        link.kill()
        if self._model_zygote is link:
            self._model_zygote = None
            if self._model_zygote_state == "ready":
                # It died (a reaped one was marked "none" before it was closed): an
                # endpoint with traffic gets a new one in the background at once.
                self._model_zygote_state = "none"
                self._maybe_start_model_zygote()
        await asyncio.to_thread(shutil.rmtree, private_dir, True)
        self._log.info("%s %s", prefix, describe_exit(returncode))
        self._check_all_exited()

    # ------------------------------------------------------- release and reap

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
                self._wake_reaper(worker.idle_since + self.limits.idle_timeout_s)
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
            self._wake_reaper(None)
            return
        self._warm_retry_delay = WARM_RETRY_FIRST_S
        self._make_idle(worker)

    async def _stop(self, worker: WorkerProcess) -> None:
        await worker.stop()

    async def _supervise(self, worker: WorkerProcess) -> None:
        """Forward the worker's output to the log until it closes, then clean up after
        the process: this is the one place a worker's exit is observed."""
        prefix = f"{self.spec.label}: worker {worker.pid}"
        await forward_output(
            worker.log_stream,
            self._log,
            prefix,
            lambda: {
                "endpoint": self.spec.label,
                "worker": worker.pid,
                "request_id": worker.current_request,
            },
        )
        returncode = await worker.wait_exited()
        if self._placer is not None:
            await self._release_placement(worker)
        worker.settled.set()
        self._live.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        self._check_all_exited()
        self._notify_waiters()
        self._wake_reaper(None)  # a kept-warm worker that died is replaced
        self._log.info("%s %s", prefix, describe_exit(returncode))

    async def _release_placement(self, worker: WorkerProcess) -> None:
        """Read the kernel's verdict on the exited worker, then remove its cgroups. A
        cgroup the kernel will not give up is logged, not fatal: it concerns one worker."""
        assert self._placer is not None
        name = worker.private_name
        try:
            if self._placer.out_of_memory(name):
                worker.out_of_memory = True
            worker.settled.set()
            # Removing a cgroup may wait briefly for the kernel to finish the exit.
            await asyncio.to_thread(self._placer.release, name)
        except OSError as error:
            self._log.error(
                "%s: could not release worker %s's limits: %s", self.spec.label, name, error
            )

    def _check_all_exited(self) -> None:
        zygote = self._model_zygote
        if not self._live and (zygote is None or not zygote.alive):
            self._all_exited.set()

    def reap_idle_nowait(self, now: float) -> float | None:
        """Stop the idle workers (and the model zygote) whose keep-alive has passed;
        return when to look again."""
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
        next_at = plan.next_check_at
        zygote = self._model_zygote
        if zygote is not None and zygote.alive:
            expires = model_zygote_expires_at(
                self._last_activity, self.limits.zygote_idle_timeout_s
            )
            if now >= expires:
                zygote.close()
                self._model_zygote_state = "none"
            elif next_at is None or expires < next_at:
                next_at = expires
        return next_at

    def close_nowait(self) -> None:
        """Take no new work; stop idle workers and the model zygote now, and busy
        workers when their request ends."""
        self._closing = True
        for worker in self._idle:
            if not self._run_background(self._stop(worker)):
                worker.kill()  # no task can stop it gracefully any more
        self._idle.clear()
        if self._model_zygote is not None:
            self._model_zygote.close()
        self._notify_waiters()

    async def wait_closed(self) -> None:
        """Wait until every worker and the model zygote of this pool have exited. Call
        after ``close_nowait``."""
        await self._all_exited.wait()
