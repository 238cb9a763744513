"""The owner of every endpoint pool, of their background tasks, of the runtime zygote, and
of the one reaper loop that applies the pools' keep-alive decisions.

``async with manager.running()`` is the whole lifetime: every background task (worker
supervision, stopping, keeping warm, model zygotes, the runtime zygote, the reaper) runs
in the manager's task groups, and leaving the block stops every worker and zygote and
waits until each has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Final

import anyio
import anyio.abc

from workers.pool.endpoint import EndpointPool, PoolStatistics
from workers.pool.placement import Placer
from workers.pool.runtime_zygote import RuntimeZygote
from workers.pool.sandbox import Sandboxes
from workers.pool.spec import PoolLimits, WorkerSpec
from workers.pool.tasks import BackgroundTasks
from workers.pool.zygote_link import ZygoteLink
from workers.wire.kernel import become_subreaper

# Shutdown waits this long for workers to exit after being told to, beyond their own
# stop grace, before giving up on a task that will not end.
SHUTDOWN_WAIT_S: Final = 15.0


class AccountZygote:
    """An account's runtime zygote as its pools see it: whichever runs now, started again
    on demand after its owner stopped it for a quiet spell (``ZygoteSource``)."""

    def __init__(self, runtime_for: Callable[[str], RuntimeZygote], account: str) -> None:
        self._runtime_for = runtime_for
        self._account = account

    def link(self) -> ZygoteLink | None:
        return self._runtime_for(self._account).link()

    async def wait_link(self, timeout_s: float) -> ZygoteLink | None:
        return await self._runtime_for(self._account).wait_link(timeout_s)

    def learn(self, modules: Iterable[str]) -> None:
        self._runtime_for(self._account).learn(modules)


class PoolManager:
    """Creates pools on demand, keyed by the caller's endpoint key, and reaps them.

    ``private_root`` is where workers get their private directories. ``now`` is a
    monotonic clock in seconds. ``inherited_env`` is the environment the clean worker
    environment draws its base from (default: this process's). With ``zygotes`` on, a
    runtime zygote pre-imports ``preload`` plus what handlers imported before (kept in
    ``learned_path``) and pools fork workers from it and from model zygotes. ``placer``
    places workers in their resource limits (None: no limits). ``sandboxes``: model code
    runs sandboxed, each account's workers forked from the account's own runtime zygote:
    those of ``sandboxes.accounts`` start with the manager, and each is stopped after
    ``runtime_idle_timeout_s`` without a cold start while its account runs no process,
    and started again on the account's next cold start.
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
        sandboxes: Sandboxes | None = None,
        runtime_idle_timeout_s: float = 600.0,
    ) -> None:
        self._private_root = private_root
        self._log = log
        self._now = now
        self._inherited_env = dict(os.environ if inherited_env is None else inherited_env)
        self._zygotes_on = zygotes
        self._preload = tuple(preload)
        self._learned_path = learned_path
        self._placer = placer
        self._sandboxes = sandboxes
        self._runtime_idle_timeout_s = runtime_idle_timeout_s
        self._pools: dict[Hashable, EndpointPool] = {}
        self._retired: set[EndpointPool] = set()
        self._wake = asyncio.Event()
        # When the reaper looks next by itself (None: only when woken).
        self._reaper_due: float | None = None
        self._background: BackgroundTasks | None = None
        self._services: anyio.abc.TaskGroup | None = None
        # Runtime zygotes by account: with sandboxes, one per account, started on demand
        # (what one account's models import never reaches another's); without, one
        # shared (key ""), started with the manager.
        self._runtimes: dict[str, RuntimeZygote] = {}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PoolManager]:
        """Run the manager: on leaving, stop every worker and zygote and wait for each
        (up to ``SHUTDOWN_WAIT_S`` beyond their own grace), then release the placer."""
        self._private_root.mkdir(parents=True, exist_ok=True)
        if self._sandboxes is not None:
            # The empty directory sandboxes mount their root on.
            self._sandboxes.root.mkdir(parents=True, exist_ok=True)
        if self._zygotes_on:
            # Workers forked by zygotes are adopted by this process, so it can reap
            # them and they die with it.
            become_subreaper()
        try:
            async with anyio.create_task_group() as tasks:
                self._background = BackgroundTasks(tasks, self._log)
                async with anyio.create_task_group() as services:
                    self._services = services
                    services.start_soon(self._run_reaper, name="coldbrew-reaper")
                    if self._zygotes_on and self._sandboxes is None:
                        # Serve once its first attempt to start has ended.
                        await services.start(self._runtime_for("").keep, name="coldbrew-zygote")
                    elif self._zygotes_on and self._sandboxes is not None:
                        # Cold starts wait for their account's (see Launcher): no waiting here.
                        for account in self._sandboxes.accounts:
                            self._runtime_for(account)
                    try:
                        yield self
                    finally:
                        # The reaper and the keeper end first, so no pool is reaped and
                        # no zygote restarted while everything stops.
                        self._services = None
                        services.cancel_scope.cancel()
                pools = [*self._pools.values(), *self._retired]
                for pool in pools:
                    pool.close_nowait()
                runtimes = list(self._runtimes.values())
                for runtime in runtimes:
                    runtime.close()
                with anyio.move_on_after(SHUTDOWN_WAIT_S, shield=True):
                    for pool in pools:
                        await pool.wait_closed()
                    for runtime in runtimes:
                        await runtime.wait_closed()
        finally:
            if self._placer is not None:
                self._placer.close()

    def _runtime_for(self, account: str) -> RuntimeZygote:
        """The runtime zygote of ``account`` (``""``: the shared one), made on first use;
        its keeper (which starts it) runs in the manager's services."""
        runtime = self._runtimes.get(account)
        if runtime is not None:
            return runtime
        learned = self._learned_path
        if learned is not None and account:
            learned = learned.with_name(f"{learned.stem}-{account}{learned.suffix}")
        runtime = RuntimeZygote(
            preload=self._preload,
            learned_path=learned,
            inherited_env=self._inherited_env,
            cwd=self._private_root,
            run_background=self._tasks(),
            log=self._log,
            now=self._now,
            # It lays out what its account's sandboxes share once (any model will do).
            sandbox=self._sandboxes.spec_for(account, Path("/"), network=True).to_json()
            if self._sandboxes is not None and account
            else None,
        )
        self._runtimes[account] = runtime
        if account:
            if self._services is None:
                # Shutting down: no new zygote starts (cold starts then find none).
                runtime.close()
            else:
                self._services.start_soon(runtime.keep, name=f"coldbrew-zygote-{account}")
        return runtime

    def _tasks(self) -> BackgroundTasks:
        if self._background is None:
            raise RuntimeError("PoolManager used outside 'async with manager.running()'")
        return self._background

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
            run_background=self._tasks(),
            wake_reaper=self._wake_reaper,
            log=self._log,
            zygotes=self._zygote_source(spec.account),
            placer=self._placer,
            sandboxes=self._sandboxes,
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
        self._tasks()(self._forget_when_closed(pool))

    async def _forget_when_closed(self, pool: EndpointPool) -> None:
        await pool.wait_closed()
        self._retired.discard(pool)

    def get(self, key: Hashable) -> EndpointPool | None:
        return self._pools.get(key)

    def statistics(self) -> dict[Hashable, PoolStatistics]:
        return {key: pool.statistics() for key, pool in self._pools.items()}

    def _zygote_source(self, account: str) -> AccountZygote | None:
        if not self._zygotes_on:
            return None
        return AccountZygote(self._runtime_for, account if self._sandboxes is not None else "")

    def runtime_zygote_pid(self, account: str | None = None) -> int | None:
        """The pid of ``account``'s runtime zygote (None: of any that is up)."""
        if account is not None:
            runtime = self._runtimes.get(account)
            return runtime.pid() if runtime is not None else None
        pids = [runtime.pid() for runtime in self._runtimes.values()]
        return next((pid for pid in pids if pid is not None), None)

    @property
    def placement_mode(self) -> str:
        """How worker resources are limited: cgroup2, cgroup1, fallback, or none."""
        return self._placer.mode if self._placer is not None else "none"

    # ------------------------------------------------------------------ reaper

    def _stop_idle_runtimes(self, now: float) -> float | None:
        """Stop each account's runtime zygote unused for ``runtime_idle_timeout_s`` while
        its account runs no process; return when one may next be due (None: none)."""
        busy = {pool.spec.account for pool in self._pools.values() if pool.has_processes}
        next_at: float | None = None
        for account, runtime in list(self._runtimes.items()):
            if not account:
                continue  # the shared one lives as long as the manager
            if account in busy:
                runtime.last_used = now
            due = runtime.last_used + self._runtime_idle_timeout_s
            if due > now:
                next_at = due if next_at is None else min(next_at, due)
                continue
            del self._runtimes[account]
            runtime.close()
        return next_at

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
            at = self._stop_idle_runtimes(now)
            if at is not None and (next_at is None or at < next_at):
                next_at = at
            self._reaper_due = next_at
            delay = None if next_at is None else max(0.0, next_at - self._now())
            with anyio.move_on_after(delay):
                await self._wake.wait()
