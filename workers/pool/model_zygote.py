"""The model zygote of one endpoint: a process forked from the runtime zygote that loads
the endpoint's model once and forks workers with the model already in memory.

Its life is a small state machine (``ModelZygoteState``): NONE -> STARTING -> READY, back
to NONE when it expires or dies, or UNSUITABLE for good when the model cannot be held in
a zygote (threads after the load, or the handler sets FORK_AFTER_LOAD = False). When to
start one and when it expires are ``workers.pool.policy`` decisions; this class carries
them out and supervises the process until it exits.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import anyio

from workers.pool.output import forward_output
from workers.pool.policy import plan_model_zygote, wants_model_zygote
from workers.pool.processes import describe_exit
from workers.pool.tasks import RunBackground
from workers.pool.zygote_link import (
    ZygoteBroken,
    ZygoteLink,
    ZygoteUnsuitable,
    start_model_zygote,
)
from workers.wire.errors import WorkerError
from workers.wire.messages import ForkRequest

# A model zygote that failed to start is not tried again for this long.
RETRY_AFTER_FAILURE_S: Final = 60.0


class ModelZygoteState(enum.Enum):
    NONE = "none"  # none running or starting: one may be started
    STARTING = "starting"  # forked, loading the model
    READY = "ready"  # forks workers with the model loaded
    UNSUITABLE = "unsuitable"  # the model cannot be held in a zygote; never tried again


class ModelZygote:
    """One endpoint's model zygote, if any.

    ``fork_request`` builds the fork message for a zygote's private directory (its
    placement included: the zygote runs model_fn within the endpoint's limits), and
    ``release`` removes that placement after the zygote exited; ``deadline_s`` bounds its
    model load; ``closing`` tells whether the pool closed
    meanwhile (a zygote ready then is closed at once). ``run_background`` runs its start
    and its supervision under the pool owner's task group. ``on_ready`` is called when a
    zygote is ready (a process more to wait for at close, an expiry for the reaper),
    ``on_exit`` once a zygote process has exited and been cleaned up (the pool may then
    be all exited, or want a new one).
    """

    def __init__(
        self,
        *,
        label: str,
        private_root: Path,
        now: Callable[[], float],
        fork_request: Callable[[Path], ForkRequest],
        release: Callable[[str], Awaitable[None]],
        deadline_s: float,
        closing: Callable[[], bool],
        run_background: RunBackground,
        on_ready: Callable[[], None],
        on_exit: Callable[[], None],
        log: logging.Logger,
    ) -> None:
        self._label = label
        self._private_root = private_root
        self._now = now
        self._fork_request = fork_request
        self._release = release
        self._deadline_s = deadline_s
        self._closing = closing
        self._run_background = run_background
        self._on_ready = on_ready
        self._on_exit = on_exit
        self._log = log
        self.state = ModelZygoteState.NONE
        self.retry_at = 0.0
        self._link: ZygoteLink | None = None

    def ready(self) -> ZygoteLink | None:
        """The zygote to fork workers from: ready and alive, else None."""
        link = self._link
        if self.state is ModelZygoteState.READY and link is not None and link.alive:
            return link
        return None

    @property
    def alive(self) -> bool:
        """A zygote process of this endpoint still runs (ready, or closed and exiting)."""
        return self._link is not None and self._link.alive

    def maybe_begin(self, runtime: ZygoteLink | None, *, invocations: int) -> None:
        """Start a model zygote from ``runtime`` in the background (state STARTING) when
        policy says the endpoint wants one now (``wants_model_zygote``)."""
        wanted = wants_model_zygote(
            invocations=invocations,
            has_one=self.state is not ModelZygoteState.NONE,
            runtime_zygote=runtime is not None,
            closing=self._closing(),
            now=self._now(),
            retry_at=self.retry_at,
        )
        if runtime is None or not wanted:
            return
        self.state = ModelZygoteState.STARTING
        if not self._run_background(self._start(runtime)):
            self.state = ModelZygoteState.NONE

    async def _start(self, runtime: ZygoteLink) -> None:
        private_dir = Path(tempfile.mkdtemp(prefix="zygote-", dir=self._private_root))
        try:
            request = self._fork_request(private_dir)
            if not runtime.alive:
                raise ZygoteBroken("runtime zygote is gone")
            link = await start_model_zygote(runtime, request, deadline_s=self._deadline_s)
        except ZygoteUnsuitable as reason:
            self.state = ModelZygoteState.UNSUITABLE
            self._log.info("%s: no model zygote: %s", self._label, reason)
            await self._forget(private_dir)
            return
        except (WorkerError, OSError) as error:
            self.state = ModelZygoteState.NONE
            self.retry_at = self._now() + RETRY_AFTER_FAILURE_S
            if not self._closing():  # closing cuts a start short; that is no failure
                self._log.warning("%s: model zygote failed to start: %s", self._label, error)
            await self._forget(private_dir)
            return
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._forget(private_dir)
            raise
        self._link = link
        self.state = ModelZygoteState.READY
        self._on_ready()
        if not self._run_background(self._supervise(link, private_dir), on_bug=link.kill):
            link.kill()
        if self._closing():
            link.close()
        self._log.info(
            "%s: model zygote %d ready, model loaded in %.1f ms",
            self._label,
            link.process.pid,
            float(link.ready.get("load_ms", 0.0)),
        )

    async def _supervise(self, link: ZygoteLink, private_dir: Path) -> None:
        prefix = f"{self._label}: model zygote {link.process.pid}"
        await forward_output(link.output, self._log, prefix)
        returncode = await link.process.wait()
        link.kill()
        if self._link is link:
            self._link = None
            if self.state is ModelZygoteState.READY:
                # It died (an expired one was set to NONE before it was closed).
                self.state = ModelZygoteState.NONE
        await self._forget(private_dir)
        self._log.info("%s %s", prefix, describe_exit(returncode))
        self._on_exit()

    async def _forget(self, private_dir: Path) -> None:
        """Remove what a zygote that is gone (or never ran) held: its directory and its
        placement (which also ends whatever it left in its cgroups)."""
        await asyncio.to_thread(shutil.rmtree, private_dir, True)
        await self._release(private_dir.name)

    def expire_nowait(
        self, *, last_activity: float, idle_timeout_s: float, now: float
    ) -> float | None:
        """Stop the ready zygote once its keep-alive after the endpoint's
        ``last_activity`` has passed (a later one may be started); return when to look
        again (None: there is nothing to expire)."""
        if self.ready() is None:
            return None
        plan = plan_model_zygote(
            last_activity=last_activity, zygote_idle_timeout_s=idle_timeout_s, now=now
        )
        if plan.expire:
            self.state = ModelZygoteState.NONE
            self.close()
        return plan.next_check_at

    def close(self) -> None:
        """Ask the zygote to exit; its supervision notices the exit."""
        if self._link is not None:
            self._link.close()
