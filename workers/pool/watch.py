"""Watching a worker while it serves a call, for the limits no kernel enforces here: its
memory (where no cgroup caps it) and its private directory's size; and telling, once a
call broke, whether the worker was stopped for going over one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import anyio

from workers.pool.placement import Placer, over_disk, over_memory
from workers.pool.process import WorkerProcess
from workers.wire.errors import WorkerBroken, WorkerOutOfDisk, WorkerOutOfMemory

# The watchdog of a running call: first look, then every tick; disk every few ticks.
WATCH_FIRST_S: Final = 0.05
WATCH_EVERY_S: Final = 0.05
DISK_EVERY_TICKS: Final = 20
# How long a failed call waits for the worker's exit to be inspected.
SETTLE_S: Final = 2.0


class Watch:
    """The watchdog of one call. Calls that end within ``WATCH_FIRST_S`` (nearly all)
    cost one timer; a longer one gets a task, which this object owns and ``disarm``
    ends."""

    __slots__ = ("_placer", "_task", "_timer", "_worker")

    def __init__(self, placer: Placer, worker: WorkerProcess) -> None:
        self._placer = placer
        self._worker = worker
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(WATCH_FIRST_S, self._begin)

    def _begin(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def disarm(self) -> None:
        """Stop watching (the call ended) and wait for the watch task, if any, to end."""
        self._timer.cancel()
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        """Stop the worker once it uses more memory than its size (where no kernel limit
        does) or more disk than its private directory may hold."""
        placer, worker = self._placer, self._worker
        name = worker.private_name
        memory = placer.memory_bytes(name)
        disk = placer.disk_bytes(name)
        tick = 0
        while True:
            if placer.watches_memory and over_memory(worker.pid, memory):
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


async def explain(
    worker: WorkerProcess, error: WorkerBroken, *, placer: Placer | None, memory_mb: int
) -> WorkerBroken:
    """The most precise account of a worker's death: out of memory or disk when it was
    stopped for that (by its watchdog or the kernel), else ``error``."""
    if placer is not None and not (worker.out_of_memory or worker.out_of_disk):
        # The kernel's verdict is read by the worker's supervisor at its exit.
        with anyio.move_on_after(SETTLE_S):
            await worker.settled.wait()
    if worker.out_of_memory:
        return WorkerOutOfMemory(memory_mb)
    if worker.out_of_disk:
        return WorkerOutOfDisk(placer.disk_bytes(worker.private_name) if placer else 0)
    return error
