"""``coldbrew serve``: run the gateway in the foreground until SIGINT or SIGTERM.

Signal handlers only record the request to stop; the main coroutine acts on it: stop
accepting, let in-flight invocations finish (bounded by ``shutdown_grace_s``), then stop
every worker and wait for each to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import uvloop
from aiohttp import web

from gateway.clock import Clock
from gateway.control.declared import deploy_declared, deploy_demo
from gateway.edge.app import build_app, build_placer, build_sandboxes
from gateway.settings import Settings, check_bind_safety
from gateway.store.registry import Registry
from gateway.telemetry.exporter import ExporterLogging, exporting_spans
from gateway.telemetry.prometheus import PrometheusReader
from gateway.telemetry.setup import build_providers
from gateway.telemetry.spans import SpanBatch

LOG = logging.getLogger("coldbrew")


def run(settings: Settings, *, demo: bool = False, config_path: Path | None = None) -> int:
    """Serve until stopped. Returns the process exit code. Raises SettingsError when the
    settings are unsafe to serve with. ``config_path``: the file they came from (model
    code never sees it)."""
    check_bind_safety(settings)
    secrets = () if config_path is None else (config_path,)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings, demo=demo, clock=Clock(), secrets=secrets))
    return 0


def listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


async def serve(
    settings: Settings, *, demo: bool, clock: Clock, secrets: tuple[Path, ...] = ()
) -> None:
    """Start, log one line once invocations are accepted, and run until a stop signal."""
    sandboxes = build_sandboxes(settings, LOG, secrets=secrets)
    state_dir = settings.server.state_path()
    state_dir.mkdir(parents=True, exist_ok=True)
    with Registry(state_dir / "registry.sqlite3") as registry:
        deploy_declared(registry, settings, now=clock.wall())
        if demo:
            from gateway.control.demo import ensure_demo_model

            LOG.info("preparing the demo model in %s", state_dir)
            model_dir = await asyncio.to_thread(ensure_demo_model, state_dir)
            deploy_demo(registry, settings, model_dir, now=clock.wall())
        pids_limit = settings.sandbox.pids_limit if sandboxes is not None else None
        placer = build_placer(settings, LOG, pids_limit=pids_limit)
        providers = build_providers(os.environ, LOG)
        page = PrometheusReader(providers.page_reader)
        try:
            async with span_batch(providers.tracing, settings) as spans:
                app = build_app(
                    settings,
                    registry=registry,
                    clock=clock,
                    log=LOG,
                    placer=placer,
                    sandboxes=sandboxes,
                    meter_provider=providers.meter_provider,
                    spans=spans,
                    sampler=providers.sampler,
                    metrics_page=page,
                )
                await run_app(app, settings)
        finally:
            # Flushes what is still to export; bounded by the exporters' own timeouts.
            await asyncio.to_thread(providers.shutdown)


@contextlib.asynccontextmanager
async def span_batch(tracing: bool, settings: Settings) -> AsyncIterator[SpanBatch | None]:
    """Where the gateway's spans go while it runs: None when not tracing; otherwise a
    batch feeding the span exporter process, which outlives the app just long enough to
    export its last spans, and logs as the gateway does."""
    if not tracing:
        yield None
        return
    logging_as = ExporterLogging(settings.server.log_format, settings.server.log_level)
    async with exporting_spans(os.environ, LOG, logging_as) as spans:
        yield spans


async def run_app(app: web.Application, settings: Settings) -> None:
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.server.shutdown_grace_s,
    )
    await runner.setup()
    try:
        sock = listen_socket(settings.server.host, settings.server.port)
        site = web.SockSite(runner, sock)
        await site.start()
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        LOG.info("accepting invocations on http://%s:%d", shown, port)
        await stop.wait()
        LOG.info(
            "stopping: finishing in-flight invocations (up to %g s)",
            settings.server.shutdown_grace_s,
        )
    finally:
        await runner.cleanup()
    LOG.info("stopped")
