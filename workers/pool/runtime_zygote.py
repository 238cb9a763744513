"""The runtime zygote: one per gateway, started fresh, restarted whenever it dies; it
pre-imports the frameworks and forks workers and model zygotes (``workers.child.zygote``).

What it pre-imports is the configured list plus every module an endpoint's handler
imported on its first load (``learn``), remembered in a file across restarts. A module
whose import starts a thread would leave the zygote unable to fork safely: it is dropped
for good and the zygote replaced by one that does not import it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, cast

import anyio
from anyio.abc import TaskStatus

from workers.pool.output import forward_output
from workers.pool.processes import describe_exit
from workers.pool.tasks import RunBackground
from workers.pool.zygote_link import ZygoteBroken, ZygoteLink, start_runtime_zygote
from workers.wire.messages import Preload, Preloaded, ZygoteReady

# The runtime zygote imports the frameworks at start; a restart after its death waits,
# doubling from the first delay up to the last, so a crashing import cannot spin.
START_DEADLINE_S: Final = 120.0
RETRY_FIRST_S: Final = 1.0
RETRY_MAX_S: Final = 60.0
# Modules named in the log line of a pre-import that failed; the rest are counted.
FAILED_NAMES_SHOWN: Final = 10


class RuntimeZygote:
    """Keeps the runtime zygote running and knows what it should pre-import.

    ``cwd`` is where the zygote runs (the workers' private root); ``inherited_env`` the
    environment its clean one draws from; ``learned_path`` (None: nothing remembered)
    the file of learned imports.
    """

    def __init__(
        self,
        *,
        preload: Iterable[str],
        learned_path: Path | None,
        inherited_env: Mapping[str, str],
        cwd: Path,
        run_background: RunBackground,
        log: logging.Logger,
        now: Callable[[], float] = time.monotonic,
        sandbox: dict[str, Any] | None = None,
    ) -> None:
        self._now = now
        self._sandbox = sandbox
        self._learned_path = learned_path
        self._inherited_env = inherited_env
        self._cwd = cwd
        self._run_background = run_background
        self._log = log
        # In the order learned (a module's dependencies before it); the set answers
        # "known?" for the thousands of names a deep-learning stack imports.
        self._configured = tuple(preload)
        self._preload = list(dict.fromkeys([*preload, *self._read_learned()]))
        self._preload_set = set(self._preload)
        # Modules whose import started a thread in the runtime zygote, or hung or crashed
        # it: never pre-imported again (for this gateway's life; the learned file drops
        # them).
        self._refused: set[str] = set()
        self._link: ZygoteLink | None = None
        self._up = asyncio.Event()
        self._closing = False
        # When it was last asked for (its owner may stop it after a quiet spell).
        self.last_used = now()

    def link(self) -> ZygoteLink | None:
        """The runtime zygote when it is up; None while it (re)starts."""
        self.last_used = self._now()
        link = self._link
        return link if link is not None and link.alive else None

    async def wait_link(self, timeout_s: float) -> ZygoteLink | None:
        """The runtime zygote once it is up, waiting up to ``timeout_s`` (None then)."""
        with anyio.move_on_after(timeout_s):
            while (link := self.link()) is None and not self._closing:
                await self._up.wait()
                self._up.clear()
            return link
        return None

    def pid(self) -> int | None:
        # Not through ``link``: looking (a metrics scrape) is no use of it.
        link = self._link
        return link.process.pid if link is not None and link.alive else None

    def learn(self, modules: Iterable[str]) -> None:
        """Pre-import ``modules`` in the runtime zygote from now on (and after restarts)."""
        new = [
            name
            for name in dict.fromkeys(modules)
            if name not in self._preload_set and name not in self._refused
        ]
        if not new:
            return
        self._preload.extend(new)
        self._preload_set.update(new)
        self._write_learned()
        link = self.link()
        if link is not None:
            self._run_background(self._preload_into(link, new))

    def close(self) -> None:
        """Stop it for good (shutdown): the keeper must be cancelled first."""
        self._closing = True
        self._up.set()
        if self._link is not None:
            self._link.close()

    async def wait_closed(self) -> None:
        """After ``close``: wait until the zygote process has exited (it exits when its
        control socket closes), so it does not outlive the gateway by a moment."""
        if self._link is not None:
            await self._link.process.wait()

    async def keep(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the runtime zygote and restart it whenever it dies; cold starts fall
        back to fresh interpreters meanwhile. Reports started (``task_status``) once the
        first attempt has ended, whichever way: the gateway serves from then on, so cold
        starts right after start are as cheap as later ones, and a failed first attempt
        is not waited for again."""
        delay = RETRY_FIRST_S
        first_attempt = True
        while True:
            try:
                self._link = await start_runtime_zygote(
                    preload=self._preload,
                    inherited_env=self._inherited_env,
                    cwd=str(self._cwd),
                    deadline_s=START_DEADLINE_S,
                    sandbox=self._sandbox,
                )
            except (ZygoteBroken, OSError) as error:
                self._log.error("runtime zygote failed to start: %s", error)
                self._forget_learned("its start failed")
            if first_attempt:
                task_status.started()
                first_attempt = False
            self._up.set()
            if self._link is not None:
                delay = RETRY_FIRST_S
                await self._serve(self._link)
            if self._closing:
                return
            await anyio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _serve(self, link: ZygoteLink) -> None:
        """While ``link`` runs: forward its output; after its death, forget it."""
        self._log.info(
            "runtime zygote %d ready in %.0f ms, pre-imported %d modules",
            link.process.pid,
            float(link.ready.get("load_ms", 0.0)),
            len(link.ready.get("imports") or []),
        )
        # Closed at once if what it pre-imported started a thread.
        self._drop_threaded(link, link.ready)
        prefix = f"runtime zygote {link.process.pid}"
        await forward_output(link.output, self._log, prefix)
        returncode = await link.process.wait()
        link.kill()
        self._link = None
        if self._closing:
            # Stopped by its owner after a quiet spell (at shutdown the keeper is
            # cancelled before the zygote is closed).
            self._log.info("%s stopped", prefix)
            return
        # An exit seen here is a death: the keeper starts a new one.
        self._log.warning("%s %s; restarting it", prefix, describe_exit(returncode))

    async def _preload_into(self, link: ZygoteLink, modules: list[str]) -> None:
        request: Preload = {"t": "preload", "modules": modules}
        try:
            # A runtime zygote answers a preload only with preloaded (it exits on failure).
            answer = cast(Preloaded, await link.request(request))
        except ZygoteBroken as error:
            if not self._closing:  # closing the zygote cuts its requests short
                # Importing them hung or crashed it: never again (it is replaced).
                self._drop(modules, f"pre-importing them failed ({error})")
            return
        self._drop_threaded(link, answer)
        failed = [str(name) for name in answer.get("failed") or []]
        if failed:
            self._log.info(
                "runtime zygote could not pre-import %d modules: %s", len(failed), named(failed)
            )

    def _drop_threaded(self, link: ZygoteLink, answer: Preloaded | ZygoteReady) -> None:
        """When importing some modules started a thread in the runtime zygote (its
        ``answer`` names them), it can no longer fork safely: never pre-import them again
        and have it replaced (closed, the keeper starts a new one without them)."""
        threaded = [str(name) for name in answer.get("threaded") or []]
        if not threaded:
            return
        self._refuse(threaded)
        self._log.warning(
            "runtime zygote: importing %s started a thread, so it cannot fork safely; "
            "replacing it with one that does not pre-import %s",
            ", ".join(threaded),
            "it" if len(threaded) == 1 else "them",
        )
        link.close()

    def _refuse(self, modules: list[str]) -> None:
        """Never pre-import ``modules`` again (and forget them in the learned file)."""
        self._refused.update(modules)
        self._preload = [name for name in self._preload if name not in self._refused]
        self._preload_set = set(self._preload)
        self._write_learned()

    def _drop(self, modules: list[str], why: str) -> None:
        """``_refuse`` ``modules``, saying ``why``."""
        self._refuse(modules)
        self._log.warning(
            "runtime zygote: dropped %s from its pre-imports: %s", named(modules), why
        )

    def _forget_learned(self, why: str) -> None:
        """Back to the configured pre-imports only, when the learned ones may be why the
        zygote cannot start (one of them hangs or crashes it)."""
        learned = [name for name in self._preload if name not in self._configured]
        if learned:
            self._drop(learned, why)

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


def named(modules: list[str]) -> str:
    """Up to ``FAILED_NAMES_SHOWN`` of ``modules`` by name, the rest counted: a model may
    import thousands."""
    shown = ", ".join(modules[:FAILED_NAMES_SHOWN])
    if len(modules) > FAILED_NAMES_SHOWN:
        shown += f" and {len(modules) - FAILED_NAMES_SHOWN} more"
    return shown
