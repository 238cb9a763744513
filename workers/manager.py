"""The owner of every endpoint pool, and of the one reaper loop that applies their
keep-alive decisions.

``async with PoolManager(...) as manager`` is the whole lifetime: every background task
(worker supervision, stopping, reaping) runs in the manager's task group, and leaving the
block stops every worker and waits until each has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Hashable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from workers.pool import EndpointPool, PoolStatistics
from workers.spec import PoolLimits, WorkerSpec

# Shutdown waits this long for workers to exit after being told to, beyond their own
# stop grace, before giving up on a task that will not end.
SHUTDOWN_WAIT_S = 15.0


class PoolManager:
    """Creates pools on demand, keyed by the caller's endpoint key.

    ``private_root`` is where workers get their private directories. ``now`` is a
    monotonic clock in seconds. ``inherited_env`` is the environment the clean worker
    environment draws its base from (default: this process's).
    """

    def __init__(
        self,
        *,
        private_root: Path,
        log: logging.Logger,
        now: Callable[[], float] = time.monotonic,
        inherited_env: Mapping[str, str] | None = None,
    ) -> None:
        self._private_root = private_root
        self._log = log
        self._now = now
        self._inherited_env = dict(os.environ if inherited_env is None else inherited_env)
        self._pools: dict[Hashable, EndpointPool] = {}
        self._retired: set[EndpointPool] = set()
        self._wake = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._reaper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._private_root.mkdir(parents=True, exist_ok=True)
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._reaper = self._tasks.create_task(self._run_reaper(), name="coldbrew-reaper")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tasks is not None
        assert self._reaper is not None
        pools = [*self._pools.values(), *self._retired]
        for pool in pools:
            pool.close_nowait()
        self._reaper.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_WAIT_S):
                for pool in pools:
                    await pool.wait_closed()
        await self._tasks.__aexit__(exc_type, exc, tb)

    def _run_background(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._tasks is None:
            coro.close()
            raise RuntimeError("PoolManager used outside 'async with'")
        self._tasks.create_task(coro)

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
            wake_reaper=self._wake.set,
            log=self._log,
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
            delay = None if next_at is None else max(0.0, next_at - self._now())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
