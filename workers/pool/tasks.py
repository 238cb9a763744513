"""The background work of the pools, and what a bug in it may break.

Pools run their background tasks (supervising each worker, stopping workers, keeping
workers warm, starting and supervising model zygotes, pre-importing) through
``BackgroundTasks``, in a task group the pool manager owns: no task is loose, and leaving
the manager waits for every one.

Such a task serves one worker or one endpoint, so an exception it did not expect (a bug)
is contained there: it is logged with its traceback at ERROR, the task's ``on_bug`` puts
its worker down (killed, so nothing of it keeps running unsupervised), and the gateway
keeps serving every other endpoint. The alternative, stopping the whole gateway, would let
one endpoint's bad luck take down every tenant's traffic. Bugs in the gateway-wide loops
(the reaper, the runtime zygote's keeper) are not contained: their state spans every
endpoint, so they stop the gateway, loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from anyio.abc import TaskGroup


class RunBackground(Protocol):
    """Runs ``coro`` as a contained background task; False when the owner is shutting
    down and takes no new task (``coro`` is then closed, unrun, and the caller must do
    without: kill the worker it was for, say)."""

    def __call__(
        self, coro: Coroutine[Any, Any, None], *, on_bug: Callable[[], None] | None = None
    ) -> bool: ...


class BackgroundTasks:
    """Runs contained background tasks in ``group`` (see the module docstring)."""

    def __init__(self, group: TaskGroup, log: logging.Logger) -> None:
        self._group = group
        self._log = log

    def __call__(
        self, coro: Coroutine[Any, Any, None], *, on_bug: Callable[[], None] | None = None
    ) -> bool:
        if self._group.cancel_scope.cancel_called:
            coro.close()
            return False
        try:
            self._group.start_soon(self._contained, coro, on_bug, name=_name(coro))
        except RuntimeError:  # the group has ended
            coro.close()
            return False
        return True

    async def _contained(
        self, coro: Coroutine[Any, Any, None], on_bug: Callable[[], None] | None
    ) -> None:
        try:
            await coro
        except Exception:
            self._log.exception("bug in background task %s; contained to it", _name(coro))
            if on_bug is not None:
                on_bug()


def _name(coro: Coroutine[Any, Any, None]) -> str:
    """The coroutine function's name, for task names and logs."""
    return str(getattr(coro, "__qualname__", coro))
