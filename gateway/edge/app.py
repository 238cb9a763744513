"""Assemble the gateway: every collaborator built once, passed in, and owned by the
application's lifecycle (aiohttp cleanup contexts)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace.sampling import Sampler

from gateway.clock import Clock
from gateway.control.api import ControlPlane
from gateway.control.context import Services
from gateway.control.lifecycle import Lifecycle
from gateway.edge.awsjson import ControlRequests
from gateway.edge.invocations import InvokeEndpoint
from gateway.edge.router import make_dispatch
from gateway.edge.sigv4 import Credential, Verifier
from gateway.runtime.admission import AdmissionStore, LocalAdmission
from gateway.runtime.deployments import Deployments, PoolDefaults
from gateway.runtime.gauges import LiveState
from gateway.runtime.invoke import Runtime
from gateway.settings import Settings, SettingsError, effective_credentials
from gateway.store.artifacts import ArtifactStore
from gateway.store.registry import Registry
from gateway.telemetry.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from gateway.telemetry.recorder import Telemetry
from gateway.telemetry.spans import SpanBatch
from workers import (
    EnforcerUnavailable,
    Placer,
    PoolManager,
    Sandboxes,
    detect_enforcer,
    sandbox_unavailable,
)


@dataclass(frozen=True, slots=True)
class Gateway:
    """The collaborators of one running gateway."""

    settings: Settings
    clock: Clock
    registry: Registry
    deployments: Deployments
    admission: AdmissionStore
    pools: PoolManager
    lifecycle: Lifecycle


GATEWAY = web.AppKey("coldbrew.gateway", Gateway)


def credential_lookup(settings: Settings) -> dict[str, Credential]:
    return {
        c.access_key_id: Credential(c.access_key_id, c.secret_access_key, c.account_id)
        for c in effective_credentials(settings)
    }


class MetricsPage(Protocol):
    """The Prometheus text page of the gateway's metrics."""

    def render(self) -> str: ...


def metrics_handler(page: MetricsPage) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metrics(request: web.Request) -> web.Response:
        """Prometheus scrape target. Unsigned, like /health: scrapers do not sign."""
        # Rendered off the loop: a collection holds the SDK's lock while its gauges wait
        # for the loop (see runtime.gauges), so the loop must never wait for that lock.
        response = web.Response(text=await asyncio.to_thread(page.render))
        response.headers["Content-Type"] = PROMETHEUS_CONTENT_TYPE
        return response

    return metrics


async def health(request: web.Request) -> web.Response:
    """Liveness for load balancers and scripts: 200 once invocations are accepted."""
    return web.json_response({"status": "ok"})


def build_sandboxes(
    settings: Settings, log: logging.Logger, *, secrets: Iterable[Path] = ()
) -> Sandboxes | None:
    """How model code is sandboxed here (None: it is not), per ``[sandbox] mode``, the
    machine, and how many accounts are served. ``secrets``: paths (the config file)
    covered wherever a sandbox's read-only view of the system would show them.

    Raises SettingsError naming ``sandbox.mode`` when the mode is on and this machine
    cannot build sandboxes, or when it cannot while more than one account is served and
    the mode is not explicitly off: accounts do not trust each other."""
    sandbox = settings.sandbox
    accounts = sorted({credential.account_id for credential in effective_credentials(settings)})
    if sandbox.mode == "off":
        log.warning(
            "SANDBOX OFF: model code runs as the gateway's user (%s accounts), with its "
            "privileges and its view of the machine; nothing is isolated",
            len(accounts),
        )
        return None
    reason = (
        "pool.zygotes is false (sandboxes are built on a zygote's fork path)"
        if not settings.pool.zygotes
        else sandbox_unavailable()
    )
    if reason is not None:
        if sandbox.mode == "on":
            raise SettingsError(f"sandboxes cannot be built here: {reason}", "sandbox.mode")
        if len(accounts) > 1:
            raise SettingsError(
                f"{len(accounts)} accounts are configured, but sandboxes cannot be built here "
                f'({reason}); set mode = "off" to serve them without isolation',
                "sandbox.mode",
            )
        log.warning(
            "SANDBOX UNAVAILABLE (%s): model code runs as the gateway's user, with its "
            "privileges and its view of the machine; serving one account only",
            reason,
        )
        return None
    if len(accounts) > sandbox.uid_count:
        raise SettingsError(
            f"{len(accounts)} accounts need {len(accounts)} uids; uid_count is {sandbox.uid_count}",
            "sandbox.uid_count",
        )
    state_dir = settings.server.state_path()
    sandboxes = Sandboxes(
        accounts=tuple(accounts),
        uid_base=sandbox.uid_base,
        root=state_dir / "sandbox-root",
        hidden=tuple(str(path.resolve()) for path in (state_dir, *secrets)),
        tmp_bytes=sandbox.tmp_size_mb * 1024 * 1024,
    )
    log.info(
        "sandbox on: %d accounts, uids from %d, pids limit %d, private area %d MB",
        len(accounts),
        sandbox.uid_base,
        sandbox.pids_limit,
        sandbox.tmp_size_mb,
    )
    return sandboxes


def build_placer(
    settings: Settings, log: logging.Logger, *, pids_limit: int | None = None
) -> Placer | None:
    """The worker resource limits in force (cgroups or the fallback), or None when off;
    ``pids_limit`` caps each worker's tasks. Raises SettingsError naming
    ``pool.cpu_limits`` when a forced mode is not available here."""
    mode = settings.pool.cpu_limits
    if mode == "off":
        log.info("worker limits: off")
        return None
    try:
        enforcer = detect_enforcer(prefer=mode, log=log, pids_limit=pids_limit)
    except EnforcerUnavailable as unavailable:
        raise SettingsError(
            f"{mode!r} cannot be used on this machine: {unavailable}", "pool.cpu_limits"
        ) from None
    placer = Placer(enforcer, mb_per_vcpu=settings.pool.mb_per_vcpu)
    log.info("worker limits: %s", placer.describe())
    return placer


def build_app(
    settings: Settings,
    *,
    registry: Registry,
    clock: Clock,
    log: logging.Logger,
    placer: Placer | None = None,
    sandboxes: Sandboxes | None = None,
    meter_provider: MeterProvider | None = None,
    spans: SpanBatch | None = None,
    sampler: Sampler | None = None,
    metrics_page: MetricsPage | None = None,
) -> web.Application:
    """The aiohttp application. The registry is the caller's (opened before, closed
    after); worker pools and endpoint transitions live exactly as long as the app runs,
    and every stored endpoint is restored before the first request is accepted."""
    pool_settings = settings.pool
    state_dir = settings.server.state_path()
    deployments = Deployments()
    admission = LocalAdmission()
    pools = PoolManager(
        private_root=state_dir / "workers",
        log=logging.getLogger("coldbrew.workers"),
        now=clock.monotonic,
        zygotes=pool_settings.zygotes,
        preload=pool_settings.preload,
        learned_path=state_dir / "learned-imports.json",
        placer=placer,
        sandboxes=sandboxes,
        runtime_idle_timeout_s=pool_settings.zygote_idle_timeout_s,
    )
    lifecycle = Lifecycle(
        registry=registry,
        deployments=deployments,
        pools=pools,
        artifacts=ArtifactStore(state_dir / "artifacts"),
        defaults=PoolDefaults(
            idle_timeout_s=pool_settings.idle_timeout_s,
            invocation_timeout_s=pool_settings.invocation_timeout_s,
            setup_timeout_s=pool_settings.setup_timeout_s,
            max_response_bytes=settings.quotas.max_payload_bytes,
            zygote_idle_timeout_s=pool_settings.zygote_idle_timeout_s,
        ),
        clock=clock,
        log=log,
    )
    verifier = Verifier(credential_lookup(settings).get, max_skew_s=settings.auth.max_clock_skew_s)
    telemetry = Telemetry(
        meter_provider=meter_provider or MeterProvider(),
        spans=spans,
        sampler=sampler,
        gauges=LiveState(
            pools, deployments, admission, settings.quotas.region_concurrency, spans
        ).sources(),
    )
    runtime = Runtime(
        deployments=deployments,
        pools=pools,
        admission=admission,
        region_concurrency=settings.quotas.region_concurrency,
        telemetry=telemetry,
    )
    invoke = InvokeEndpoint(
        runtime,
        verifier=verifier,
        clock=clock,
        telemetry=telemetry,
        max_payload_bytes=settings.quotas.max_payload_bytes,
        body_timeout_s=settings.server.body_timeout_s,
    )
    control = ControlRequests(
        ControlPlane(
            Services(
                registry,
                deployments,
                lifecycle,
                pools,
                settings.quotas,
                clock,
                mb_per_vcpu=settings.pool.mb_per_vcpu,
            )
        ),
        verifier=verifier,
        clock=clock,
        body_timeout_s=settings.server.body_timeout_s,
    )
    app = web.Application(
        # Bodies are read by the handlers themselves, within their own limits.
        client_max_size=settings.quotas.max_payload_bytes + 1,
    )
    app[GATEWAY] = Gateway(settings, clock, registry, deployments, admission, pools, lifecycle)

    async def run_pools(app: web.Application) -> AsyncIterator[None]:
        async with pools.running():
            yield

    async def run_lifecycle(app: web.Application) -> AsyncIterator[None]:
        # Entered after the pools and left before them: transitions use pools.
        async with lifecycle.running():
            await lifecycle.restore()
            yield

    app.cleanup_ctx.extend([run_pools, run_lifecycle])
    app.router.add_get("/health", health)
    if metrics_page is not None:
        app.router.add_get("/metrics", metrics_handler(metrics_page))
    # Every other path, newlines (%0A) included, gets an answer in the wire's own shape.
    app.router.add_route("*", r"/{tail:[\s\S]*}", make_dispatch(invoke, control, log))
    return app
