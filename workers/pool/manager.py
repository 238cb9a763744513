"""The owner of every endpoint pool, of the runtime zygote, and of the one reaper loop
that applies the pools' keep-alive decisions.

``async with PoolManager(...) as manager`` is the whole lifetime: every background task
(worker supervision, stopping, reaping, the runtime zygote) runs in the manager's task
group, and leaving the block stops every worker and zygote and waits until each has
exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from workers.pool.endpoint import EndpointPool, PoolStatistics
from workers.pool.output import forward_output
from workers.pool.placement import Placer
from workers.pool.processes import describe_exit
from workers.pool.spec import PoolLimits, WorkerSpec
from workers.pool.zygote_link import ZygoteBroken, ZygoteLink, start_runtime_zygote
from workers.wire.kernel import become_subreaper
from workers.wire.messages import Preload, Preloaded, ZygoteReady

# Shutdown waits this long for workers to exit after being told to, beyond their own
# stop grace, before giving up on a task that will not end.
SHUTDOWN_WAIT_S = 15.0
# The runtime zygote imports the frameworks at start; a restart after its death waits,
# doubling from the first delay up to the last, so a crashing import cannot spin.
ZYGOTE_START_DEADLINE_S = 120.0
ZYGOTE_RETRY_FIRST_S = 1.0
ZYGOTE_RETRY_MAX_S = 60.0
# Modules named in the log line of a pre-import that failed; the rest are counted.
FAILED_NAMES_SHOWN = 10


class PoolManager:
    """Creates pools on demand, keyed by the caller's endpoint key.

    ``private_root`` is where workers get their private directories. ``now`` is a
    monotonic clock in seconds. ``inherited_env`` is the environment the clean worker
    environment draws its base from (default: this process's). With ``zygotes`` on, a
    runtime zygote pre-imports ``preload`` plus what handlers imported before (kept in
    ``learned_path``) and pools fork workers from it and from model zygotes. ``placer``
    places workers in their resource limits (None: no limits).
    """

    def __init__(
        self,
        *,
        private_root: Path,
        log: logging.Logger,
        now: Callable[[], float] = time.monotonic,
        inherited_env: Mapping[str, str] | None = None,
        zygotes: bool = False,
        preload: Iterable[str] = (),
        learned_path: Path | None = None,
        placer: Placer | None = None,
    ) -> None:
        self._private_root = private_root
        self._log = log
        self._now = now
        self._inherited_env = dict(os.environ if inherited_env is None else inherited_env)
        self._zygotes_on = zygotes
        self._learned_path = learned_path
        # In the order learned (a module's dependencies before it); the set answers
        # "known?" for the thousands of names a deep-learning stack imports.
        self._preload = list(dict.fromkeys([*preload, *self._read_learned()]))
        self._preload_set = set(self._preload)
        # Modules whose import started a thread in the runtime zygote: never pre-imported
        # again (for this gateway's life; the learned file drops them).
        self._start_threads: set[str] = set()
        self._placer = placer
        self._pools: dict[Hashable, EndpointPool] = {}
        self._retired: set[EndpointPool] = set()
        self._wake = asyncio.Event()
        # When the reaper looks next by itself (None: only when woken).
        self._reaper_due: float | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._runtime: ZygoteLink | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._first_zygote_attempt = asyncio.Event()
        self._closing = False

    async def __aenter__(self) -> Self:
        self._private_root.mkdir(parents=True, exist_ok=True)
        if self._zygotes_on:
            # Workers forked by zygotes are adopted by this process, so it can reap
            # them and they die with it.
            become_subreaper()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._reaper = self._tasks.create_task(self._run_reaper(), name="coldbrew-reaper")
        if self._zygotes_on:
            self._keeper = self._tasks.create_task(
                self._keep_runtime_zygote(), name="coldbrew-zygote"
            )
            # Serve only once the first attempt to start the runtime zygote has ended, so
            # cold starts right after start are as cheap as later ones (a failed attempt
            # is not waited for again: cold starts then spawn until a restart succeeds).
            await self._first_zygote_attempt.wait()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tasks is not None
        assert self._reaper is not None
        self._closing = True
        pools = [*self._pools.values(), *self._retired]
        try:
            for pool in pools:
                pool.close_nowait()
            self._reaper.cancel()
            if self._keeper is not None:
                self._keeper.cancel()
            if self._runtime is not None:
                self._runtime.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_WAIT_S):
                    for pool in pools:
                        await pool.wait_closed()
        finally:
            # Always leave the task group: it reports what a background task raised
            # (which may be why this wait was cancelled).
            try:
                await self._tasks.__aexit__(exc_type, exc, tb)
            finally:
                if self._placer is not None:
                    self._placer.close()

    def _run_background(self, coro: Coroutine[Any, Any, None]) -> bool:
        """Run ``coro`` in the task group; False when the group is shutting down after a
        failure (it reports that failure itself), and the caller must do without."""
        if self._tasks is None:
            coro.close()
            raise RuntimeError("PoolManager used outside 'async with'")
        try:
            self._tasks.create_task(coro)
        except RuntimeError:
            coro.close()
            return False
        return True

    # ------------------------------------------------------------------- pools

    def pool(self, key: Hashable, spec: WorkerSpec, limits: PoolLimits) -> EndpointPool:
        """The pool for ``key``, created on first use.

        When ``spec`` or ``limits`` differ from the existing pool's, the old pool is
        retired (it finishes its in-flight requests, then its workers stop) and a new one
        serves from now on.
        """
        pool = self._pools.get(key)
        if pool is not None and pool.spec == spec and pool.limits == limits:
            return pool
        if pool is not None:
            self._retire(pool)
        pool = EndpointPool(
            spec,
            limits,
            now=self._now,
            private_root=self._private_root,
            inherited_env=self._inherited_env,
            run_background=self._run_background,
            wake_reaper=self._wake_reaper,
            log=self._log,
            zygotes=self if self._zygotes_on else None,
            placer=self._placer,
        )
        self._pools[key] = pool
        return pool

    def remove(self, key: Hashable) -> None:
        """Retire the pool for ``key`` (in-flight requests finish, then workers stop)."""
        pool = self._pools.pop(key, None)
        if pool is not None:
            self._retire(pool)

    def _retire(self, pool: EndpointPool) -> None:
        pool.close_nowait()
        self._retired.add(pool)
        self._run_background(self._forget_when_closed(pool))

    async def _forget_when_closed(self, pool: EndpointPool) -> None:
        await pool.wait_closed()
        self._retired.discard(pool)

    def get(self, key: Hashable) -> EndpointPool | None:
        return self._pools.get(key)

    def statistics(self) -> dict[Hashable, PoolStatistics]:
        return {key: pool.statistics() for key, pool in self._pools.items()}

    def worker_pids(self) -> list[int]:
        pools = [*self._pools.values(), *self._retired]
        return sorted(pid for pool in pools for pid in pool.worker_pids())

    @property
    def placement_mode(self) -> str:
        """How worker resources are limited: cgroup2, cgroup1, fallback, or none."""
        return self._placer.mode if self._placer is not None else "none"

    # ---------------------------------------------------------- runtime zygote

    def runtime(self) -> ZygoteLink | None:
        """The runtime zygote when it is up; None while it (re)starts or when off."""
        runtime = self._runtime
        return runtime if runtime is not None and runtime.alive else None

    def runtime_zygote_pid(self) -> int | None:
        runtime = self.runtime()
        return runtime.process.pid if runtime is not None else None

    def learn(self, modules: Iterable[str]) -> None:
        """Pre-import ``modules`` in the runtime zygote from now on (and after restarts)."""
        new = [
            name
            for name in dict.fromkeys(modules)
            if name not in self._preload_set and name not in self._start_threads
        ]
        if not new:
            return
        self._preload.extend(new)
        self._preload_set.update(new)
        self._write_learned()
        runtime = self.runtime()
        if runtime is not None:
            self._run_background(self._preload_into(runtime, new))

    async def _preload_into(self, runtime: ZygoteLink, modules: list[str]) -> None:
        request: Preload = {"t": "preload", "modules": modules}
        try:
            # A runtime zygote answers a preload only with preloaded (it exits on failure).
            answer = cast(Preloaded, await runtime.request(request))
        except ZygoteBroken as error:
            if not self._closing:  # closing the zygote cuts its requests short
                self._log.warning("runtime zygote: %s", error)
            return
        self._drop_threaded(runtime, answer)
        failed = [str(name) for name in answer.get("failed") or []]
        if failed:
            # Named up to a few: a model may import thousands of modules.
            shown = ", ".join(failed[:FAILED_NAMES_SHOWN])
            if len(failed) > FAILED_NAMES_SHOWN:
                shown += f" and {len(failed) - FAILED_NAMES_SHOWN} more"
            self._log.info("runtime zygote could not pre-import %d modules: %s", len(failed), shown)

    def _drop_threaded(self, runtime: ZygoteLink, answer: Preloaded | ZygoteReady) -> None:
        """When importing some modules started a thread in the runtime zygote (its
        ``answer`` names them), it can no longer fork safely: never pre-import them again
        and have it replaced (closed, the keeper starts a new one without them)."""
        threaded = [str(name) for name in answer.get("threaded") or []]
        if not threaded:
            return
        self._start_threads.update(threaded)
        self._preload = [name for name in self._preload if name not in self._start_threads]
        self._preload_set = set(self._preload)
        self._write_learned()
        self._log.warning(
            "runtime zygote: importing %s started a thread, so it cannot fork safely; "
            "replacing it with one that does not pre-import %s",
            ", ".join(threaded),
            "it" if len(threaded) == 1 else "them",
        )
        runtime.close()

    def _read_learned(self) -> list[str]:
        if self._learned_path is None:
            return []
        try:
            names = json.loads(self._learned_path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [str(name) for name in names] if isinstance(names, list) else []

    def _write_learned(self) -> None:
        if self._learned_path is None:
            return
        temporary = self._learned_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._preload))
        temporary.replace(self._learned_path)

    async def _keep_runtime_zygote(self) -> None:
        """Start the runtime zygote and restart it whenever it dies; cold starts fall
        back to fresh interpreters meanwhile."""
        delay = ZYGOTE_RETRY_FIRST_S
        while not self._closing:
            try:
                runtime = await start_runtime_zygote(
                    preload=self._preload,
                    inherited_env=self._inherited_env,
                    cwd=str(self._private_root),
                    deadline_s=ZYGOTE_START_DEADLINE_S,
                )
            except (ZygoteBroken, OSError) as error:
                self._log.error("runtime zygote failed to start: %s", error)
                self._first_zygote_attempt.set()
            else:
                delay = ZYGOTE_RETRY_FIRST_S
                self._runtime = runtime
                self._first_zygote_attempt.set()
                self._log.info(
                    "runtime zygote %d ready in %.0f ms, pre-imported %d modules",
                    runtime.process.pid,
                    float(runtime.ready.get("load_ms", 0.0)),
                    len(runtime.ready.get("imports") or []),
                )
                # Closed at once if what it pre-imported started a thread.
                self._drop_threaded(runtime, runtime.ready)
                prefix = f"runtime zygote {runtime.process.pid}"
                await forward_output(runtime.output, self._log, prefix)
                returncode = await runtime.process.wait()
                runtime.kill()
                self._runtime = None
                # At shutdown this task is cancelled before the zygote is closed, so an
                # exit seen here is a death: the loop starts a new one.
                self._log.warning("%s %s; restarting it", prefix, describe_exit(returncode))
            await asyncio.sleep(delay)
            delay = min(delay * 2, ZYGOTE_RETRY_MAX_S)

    # ------------------------------------------------------------------ reaper

    def _wake_reaper(self, due: float | None = None) -> None:
        """Make the reaper look again: at once, or by ``due`` (when something expires),
        which needs no wake-up when it already looks by then. A worker made idle expires
        after every deadline the reaper already has, so a release costs no reaper pass."""
        if due is None or self._reaper_due is None or due < self._reaper_due:
            self._wake.set()

    async def _run_reaper(self) -> None:
        """Reap idle workers exactly when their keep-alive ends, and keep min_workers
        warm: sleep until the earliest expiry or retry, or until a release or an exit
        may have changed it."""
        while True:
            self._wake.clear()
            now = self._now()
            next_at: float | None = None
            for pool in self._pools.values():
                for at in (pool.reap_idle_nowait(now), pool.replenish_nowait(now)):
                    if at is not None and (next_at is None or at < next_at):
                        next_at = at
            self._reaper_due = next_at
            delay = None if next_at is None else max(0.0, next_at - self._now())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
