"""A worker's life from its start to its exit, for one endpoint: the fork request a
zygote gets; the cheapest warm tier that can serve a cold start
(``workers.pool.policy.cold_start_tiers``), falling back tier by tier when a zygote turns
out to be broken; the READY handshake; and the supervision that observes the worker's
exit and releases what it held.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import anyio

from workers.pool.environment import worker_environment
from workers.pool.output import forward_output
from workers.pool.placement import Placer
from workers.pool.policy import MODEL_ZYGOTE, RUNTIME_ZYGOTE, cold_start_tiers
from workers.pool.process import WorkerProcess
from workers.pool.processes import describe_exit
from workers.pool.sandbox import Sandboxes
from workers.pool.spec import PoolLimits, WorkerSpec
from workers.pool.tasks import RunBackground
from workers.pool.zygote_link import ZygoteBroken, ZygoteLink
from workers.wire.errors import SetupFailed
from workers.wire.messages import ForkRequest
from workers.wire.sandbox import MODEL_DIR, PRIVATE_DIR


class ZygoteSource(Protocol):
    """What a pool needs from its owner about the runtime zygote."""

    def link(self) -> ZygoteLink | None:
        """The runtime zygote, when it is up and ready."""
        ...

    async def wait_link(self, timeout_s: float) -> ZygoteLink | None:
        """The runtime zygote once it is ready, waiting up to ``timeout_s`` for it."""
        ...

    def learn(self, modules: Iterable[str]) -> None:
        """Modules an endpoint's handler imported; pre-import them from now on."""
        ...


WorkerEvent = Callable[[WorkerProcess], None]


class Launcher:
    """Starts and supervises the workers of one endpoint (``spec``, ``limits``), each in a
    private directory under ``private_root``. ``zygotes`` is None where zygotes are off
    (every worker is then a fresh interpreter); ``placer`` None where workers have no
    resource limits; ``run_background`` runs each worker's supervision."""

    def __init__(
        self,
        spec: WorkerSpec,
        limits: PoolLimits,
        *,
        now: Callable[[], float],
        private_root: Path,
        inherited_env: Mapping[str, str],
        run_background: RunBackground,
        log: logging.Logger,
        zygotes: ZygoteSource | None,
        placer: Placer | None,
        sandboxes: Sandboxes | None = None,
    ) -> None:
        self._spec = spec
        self._limits = limits
        self._now = now
        self._private_root = private_root
        self._inherited_env = inherited_env
        self._run_background = run_background
        self._log = log
        self._zygotes = zygotes
        self._placer = placer
        self._sandbox: dict[str, Any] | None = None
        # Why no worker of this endpoint may start (an account without a uid here).
        self._refusal: str | None = None
        if sandboxes is not None:
            try:
                self._sandbox = sandboxes.spec_for(
                    spec.account, spec.model_dir, network=not spec.network_isolation
                ).to_json()
            except LookupError as error:
                self._refusal = f"no sandbox for this endpoint: {error}"
        if sandboxes is None and spec.network_isolation:
            log.warning(
                "%s: EnableNetworkIsolation is not honoured without the sandbox: its "
                "workers keep the gateway's network",
                spec.label,
            )

    def runtime_zygote(self) -> ZygoteLink | None:
        return self._zygotes.link() if self._zygotes is not None else None

    def fork_request(self, private_dir: Path, *, place: bool = True) -> ForkRequest:
        """What a zygote is asked to fork a worker (or a model zygote) with: its model,
        clean environment, private directory, sandbox and, with ``place``, its placement
        (prepared here: once per worker, released when the worker is gone). Raises
        SetupFailed when no worker of this endpoint may start."""
        if self._refusal is not None:
            raise SetupFailed(self._refusal)
        spec = self._spec
        placement = None
        if place and self._placer is not None:
            placement = self._placer.prepare(private_dir.name, spec.memory_mb)
            # Thread counts the model's own Environment sets win over the defaults.
            placement["env"] = {
                key: value for key, value in placement["env"].items() if key not in spec.environment
            }
        sandboxed = self._sandbox is not None
        return {
            "role": "worker",
            "model_dir": str(spec.model_dir),
            "env": worker_environment(
                spec.environment,
                inherited={},
                # Inside a sandbox: its private area and the model's SageMaker path.
                private_dir=Path(PRIVATE_DIR) if sandboxed else private_dir,
                model_dir=Path(MODEL_DIR) if sandboxed else spec.model_dir,
            ),
            "private_dir": str(private_dir),
            "placement": placement,
            "max_response_bytes": self._limits.max_response_bytes,
            "sandbox": self._sandbox,
        }

    async def start(
        self,
        model_zygote: ZygoteLink | None,
        *,
        on_started: WorkerEvent,
        on_exited: WorkerEvent,
    ) -> WorkerProcess:
        """Start a worker and wait until it is READY; from its start until its exit, it
        is supervised in the background. ``on_started`` is called once its process runs,
        ``on_exited`` once it has exited and what it held (its directory, its
        placement) is released.

        Raises SetupFailed or SetupTimeout (the worker has then been killed; its exit
        still reaches ``on_exited``; or, sandboxed, none could be started for want of a
        runtime zygote) or OSError (no process could be started; what was
        prepared for it is removed, even when the start is cancelled).
        """
        started = self._now()
        private_dir = Path(tempfile.mkdtemp(prefix="worker-", dir=self._private_root))
        worker: WorkerProcess | None = None
        try:
            worker = await self._launch(private_dir, model_zygote)
            worker.launch_ms = (self._now() - started) * 1000.0
            on_started(worker)
            supervised = self._run_background(
                self._supervise(worker, on_exited),
                on_bug=lambda: self._abandon(worker, on_exited),
            )
            if not supervised:
                worker.kill()
            await worker.wait_ready(self._limits.setup_timeout_s)
        except BaseException:
            if worker is None:
                # The release must not be cut short by the cancellation that may be why
                # we are here.
                with anyio.CancelScope(shield=True):
                    shutil.rmtree(private_dir, ignore_errors=True)
                    if self._placer is not None:
                        await asyncio.to_thread(self._placer.release, private_dir.name)
            raise
        return worker

    async def _launch(self, private_dir: Path, model_zygote: ZygoteLink | None) -> WorkerProcess:
        """Start a worker in ``private_dir`` from the cheapest tier available: a fork of
        ``model_zygote`` (the endpoint's, if ready), of the runtime zygote, or a fresh
        interpreter. It begins loading at once; call ``wait_ready`` next. Raises OSError
        when not even a fresh interpreter can be started."""
        runtime = self.runtime_zygote()
        if runtime is None and self._sandbox is not None and self._zygotes is not None:
            # Sandboxes are built on a zygote's fork path: wait for this account's.
            runtime = await self._zygotes.wait_link(self._limits.setup_timeout_s)
        tiers = cold_start_tiers(
            model_zygote=model_zygote is not None and model_zygote.alive,
            runtime_zygote=runtime is not None,
        )
        request = self.fork_request(private_dir)
        zygotes = {MODEL_ZYGOTE: model_zygote, RUNTIME_ZYGOTE: runtime}
        for tier in tiers:
            zygote = zygotes.get(tier)
            if zygote is None:
                if self._sandbox is not None:
                    # Never a fresh interpreter outside the sandbox instead.
                    raise SetupFailed(
                        "no runtime zygote of this account is up to start a sandboxed "
                        "worker from (see the gateway's log)"
                    )
                return await WorkerProcess.spawn(
                    self._spec,
                    max_response_bytes=self._limits.max_response_bytes,
                    private_dir=private_dir,
                    inherited_env=self._inherited_env,
                    placement=request["placement"],
                )
            try:
                forked = await zygote.fork(request)
            except ZygoteBroken as error:
                # The next cheapest tier serves this cold start; a dead zygote is
                # replaced in the background.
                self._log.warning("%s: %s; falling back", self._spec.label, error)
                continue
            return await WorkerProcess.adopt(
                forked, private_dir=private_dir, label=self._spec.label, tier=tier
            )
        raise AssertionError("a fresh interpreter is always the last tier")

    async def _supervise(self, worker: WorkerProcess, on_exited: WorkerEvent) -> None:
        """Forward the worker's output to the log until it closes, then clean up after
        the process: this is the one place a worker's exit is observed."""
        prefix = f"{self._spec.label}: worker {worker.pid}"
        await forward_output(
            worker.log_stream,
            self._log,
            prefix,
            lambda: {
                "endpoint": self._spec.label,
                "worker": worker.pid,
                "request_id": worker.current_request,
            },
        )
        returncode = await worker.wait_exited()
        if self._placer is not None:
            await self._release_placement(worker)
        worker.settled.set()
        on_exited(worker)
        self._log.info("%s %s", prefix, describe_exit(returncode))

    def _abandon(self, worker: WorkerProcess, on_exited: WorkerEvent) -> None:
        """After a bug in its supervision: put the worker down and forget it, so neither
        its callers nor the pool's close wait for an exit nobody will observe. Its
        private directory goes now; its cgroups, if any, with the gateway's at exit."""
        worker.kill()
        worker.settled.set()
        shutil.rmtree(worker.private_dir, ignore_errors=True)
        on_exited(worker)

    async def release_placement(self, name: str, what: str = "model zygote") -> None:
        """Remove the placement prepared under ``name`` (a process, ``what``, that has
        exited). A cgroup the kernel will not give up is logged, not fatal: it concerns
        one process."""
        if self._placer is None:
            return
        try:
            # Removing a cgroup may wait briefly for the kernel to finish the exit.
            await asyncio.to_thread(self._placer.release, name)
        except OSError as error:
            self._log.error(
                "%s: could not release %s %s's limits: %s", self._spec.label, what, name, error
            )

    async def _release_placement(self, worker: WorkerProcess) -> None:
        """Read the kernel's verdict on the exited worker, then remove its cgroups."""
        assert self._placer is not None
        name = worker.private_name
        try:
            if self._placer.out_of_memory(name):
                worker.out_of_memory = True
        except OSError as error:
            self._log.error(
                "%s: could not read worker %s's verdict: %s", self._spec.label, name, error
            )
        worker.settled.set()
        await self.release_placement(name, "worker")
