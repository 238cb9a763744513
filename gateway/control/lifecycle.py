"""Endpoint transitions: Creating -> InService | Failed, Updating -> InService (or back,
with a reason), Deleting -> gone; and recovery of those states after a restart.

The control-plane operations decide and record the target state in the registry, then
ask for the transition here; each transition runs as a task of the lifecycle's task group
(no loose tasks) and at most one runs per endpoint at a time. A transition proves the
model loads by starting one worker (it then idles and is reaped like any other), and only
then switches traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Final

from gateway.clock import Clock
from gateway.runtime.deployments import (
    Deployment,
    Deployments,
    EndpointKey,
    PoolDefaults,
    build_deployment,
    endpoint_key,
)
from gateway.sagemaker.errors import ServiceError
from gateway.sagemaker.names import Scope
from gateway.sagemaker.variants import model_container, parse_config
from gateway.store.artifacts import ArtifactError, ArtifactStore
from gateway.store.registry import EndpointRecord, Registry
from workers import PoolManager, SetupFailed, SetupTimeout, WorkerError

# FailureReason is at most 1024 characters on the wire (spec §5.5).
MAX_REASON: Final = 1024


class DeploymentFailed(Exception):
    """A deployment could not be built or its model did not load; ``reason`` is the
    FailureReason to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_REASON]


class Lifecycle:
    """Runs endpoint transitions, each as a task of its own (``wait_settled`` waits for
    it), while ``running()``."""

    def __init__(
        self,
        *,
        registry: Registry,
        deployments: Deployments,
        pools: PoolManager,
        artifacts: ArtifactStore,
        defaults: PoolDefaults,
        clock: Clock,
        log: logging.Logger,
    ) -> None:
        self._registry = registry
        self._deployments = deployments
        self._pools = pools
        self._artifacts = artifacts
        self._defaults = defaults
        self._clock = clock
        self._log = log
        self._running: dict[EndpointKey, asyncio.Task[None]] = {}
        self._tasks: asyncio.TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Lifecycle]:
        """Run transitions until the block is left; leaving cancels those still running
        (their endpoints resume after the next start) and waits for them to end."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            try:
                yield self
            finally:
                for task in self._running.values():
                    task.cancel()

    # ------------------------------------------------------------------ requests

    def begin_create(self, scope: Scope, name: str) -> None:
        """The endpoint was recorded as Creating: load its model, then serve."""
        self._start(scope, name, self._create)

    def begin_update(self, scope: Scope, name: str) -> None:
        """The endpoint was recorded as Updating (to its pending config, or with new
        overrides): load the new deployment, then switch traffic to it."""
        self._start(scope, name, self._update)

    def begin_delete(self, scope: Scope, name: str) -> None:
        """The endpoint was recorded as Deleting: stop serving, drain, remove it."""
        self._start(scope, name, self._delete)

    async def wait_settled(self, scope: Scope, name: str, timeout_s: float) -> None:
        """Wait, at most ``timeout_s``, for the endpoint's running transition to end."""
        task = self._running.get(endpoint_key(scope, name))
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout_s)

    async def restore(self) -> None:
        """Bring every stored endpoint back after a start: serve the InService ones and
        resume the transitions a stop interrupted. Returns once InService endpoints serve
        (resumed transitions go on in the background)."""
        for record in self._registry.all_endpoints():
            if record.status == "InService":
                await self._restore_in_service(record)
            elif record.status == "Creating":
                self.begin_create(record.scope, record.name)
            elif record.status == "Updating":
                self.begin_update(record.scope, record.name)
            elif record.status == "Deleting":
                self.begin_delete(record.scope, record.name)

    # --------------------------------------------------------------- transitions

    def _start(
        self,
        scope: Scope,
        name: str,
        transition: Callable[[Scope, str], Coroutine[Any, Any, None]],
    ) -> None:
        if self._tasks is None:
            raise RuntimeError("Lifecycle used outside 'async with lifecycle.running()'")
        key = endpoint_key(scope, name)
        previous = self._running.get(key)
        task = self._tasks.create_task(self._run(previous, transition, scope, name))
        self._running[key] = task
        task.add_done_callback(lambda done: self._forget(key, done))

    def _forget(self, key: EndpointKey, task: asyncio.Task[None]) -> None:
        if self._running.get(key) is task:
            del self._running[key]

    async def _run(
        self,
        previous: asyncio.Task[None] | None,
        transition: Callable[[Scope, str], Coroutine[Any, Any, None]],
        scope: Scope,
        name: str,
    ) -> None:
        # One transition per endpoint at a time: a delete during a create waits for it.
        if previous is not None:
            await asyncio.wait({previous})
        try:
            await transition(scope, name)
        except Exception as error:
            # A bug must not take the gateway down with it, nor leave the endpoint stuck
            # in a transitional state: it is logged whole and shown as the reason.
            self._log.exception("transition of endpoint %s/%s failed", scope, name)
            self._fail(scope, name, f"Internal error: {type(error).__name__}: {error}")

    async def _create(self, scope: Scope, name: str) -> None:
        record = self._registry.get_endpoint(scope, name)
        if record is None or record.status != "Creating":
            return
        try:
            deployment = await self._deploy(record, record.config_name)
        except DeploymentFailed as failure:
            self._fail(scope, name, failure.reason)
            return
        self._registry.update_endpoint(
            scope, name, now=self._clock.wall(), status="InService", failure_reason=None
        )
        self._serve(deployment)
        self._log.info("endpoint %s is InService", record.arn)

    async def _update(self, scope: Scope, name: str) -> None:
        record = self._registry.get_endpoint(scope, name)
        if record is None or record.status != "Updating":
            return
        target = record.pending_config_name or record.config_name
        try:
            deployment = await self._deploy(record, target)
        except DeploymentFailed as failure:
            # Roll back: the endpoint keeps serving what it served, and says why.
            self._registry.update_endpoint(
                scope,
                name,
                now=self._clock.wall(),
                status="InService",
                failure_reason=f"Update failed and was rolled back: {failure.reason}"[:MAX_REASON],
                pending_config_name=None,
            )
            if self._deployments.get(scope, name) is None:
                # Nothing served before (a restart during the update): serve the old one.
                await self._restore_in_service(self._registry.get_endpoint(scope, name))
            return
        self._registry.update_endpoint(
            scope,
            name,
            now=self._clock.wall(),
            status="InService",
            failure_reason=None,
            config_name=target,
            pending_config_name=None,
        )
        self._serve(deployment)
        self._log.info("endpoint %s updated to %s", record.arn, target)

    async def _delete(self, scope: Scope, name: str) -> None:
        record = self._registry.get_endpoint(scope, name)
        if record is None or record.status != "Deleting":
            return
        deployment = self._deployments.remove(scope, name)
        if deployment is not None:
            pool = self._pools.get(deployment.pool_key)
            self._pools.remove(deployment.pool_key)
            if pool is not None:
                await pool.wait_closed()
        self._registry.delete_endpoint(scope, name)
        self._log.info("endpoint %s deleted", record.arn)

    # ------------------------------------------------------------------- helpers

    def _serve(self, deployment: Deployment) -> None:
        previous = self._deployments.put(deployment)
        if previous is not None and previous.pool_key != deployment.pool_key:
            # In-flight invocations finish on the old workers; then they stop.
            self._pools.remove(previous.pool_key)

    def _fail(self, scope: Scope, name: str, reason: str) -> None:
        if self._registry.get_endpoint(scope, name) is None:
            return
        self._registry.update_endpoint(
            scope,
            name,
            now=self._clock.wall(),
            status="Failed",
            failure_reason=reason[:MAX_REASON],
            pending_config_name=None,
        )
        self._log.warning("endpoint %s/%s failed: %s", scope, name, reason)

    async def _restore_in_service(self, record: EndpointRecord | None) -> None:
        if record is None:
            return
        try:
            deployment = await self._build(record, record.config_name)
        except DeploymentFailed as failure:
            self._fail(record.scope, record.name, failure.reason)
            return
        self._deployments.put(deployment)

    async def _deploy(self, record: EndpointRecord, config_name: str) -> Deployment:
        """Build the deployment and prove its model loads on one worker."""
        deployment = await self._build(record, config_name)
        pool = self._pools.pool(deployment.pool_key, deployment.spec, deployment.limits)
        try:
            await pool.prewarm()
        except SetupFailed as error:
            self._pools.remove(deployment.pool_key)
            raise DeploymentFailed(
                f"The primary container for production variant {deployment.variant.name} "
                f"did not pass the ping health check: the model failed to load: "
                f"{error.message}"
            ) from error
        except SetupTimeout as error:
            self._pools.remove(deployment.pool_key)
            raise DeploymentFailed(
                f"The primary container for production variant {deployment.variant.name} "
                f"did not pass the ping health check within {error.timeout_s:g} seconds."
            ) from error
        except WorkerError as error:
            self._pools.remove(deployment.pool_key)
            raise DeploymentFailed(str(error)) from error
        return deployment

    async def _build(self, record: EndpointRecord, config_name: str) -> Deployment:
        scope = record.scope
        config = self._registry.get_endpoint_config(scope, config_name)
        if config is None:
            raise DeploymentFailed(f'Could not find endpoint configuration "{config_name}".')
        try:
            variant = parse_config(config.document)
        except ServiceError as error:
            raise DeploymentFailed(str(error.message)) from error
        model = self._registry.get_model(scope, variant.model_name)
        if model is None:
            raise DeploymentFailed(f'Could not find model "{variant.model_name}".')
        url = str(model_container(model.document).get("ModelDataUrl", ""))
        try:
            model_dir = await asyncio.to_thread(self._artifacts.resolve, url)
        except ArtifactError as error:
            raise DeploymentFailed(error.message) from error
        return build_deployment(
            scope=scope,
            endpoint_name=record.name,
            config_name=config.name,
            config_document=config.document,
            model_document=model.document,
            model_dir=model_dir,
            overrides=record.overrides if config_name == record.config_name else {},
            defaults=self._defaults,
            generation=self._deployments.next_generation(),
        )
