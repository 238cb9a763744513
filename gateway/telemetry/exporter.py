"""The gateway's side of the span exporter process (``exporter_process``).

Turning spans into protobuf and posting them is most of what tracing costs; on a thread
of the gateway it competes with every request for the interpreter lock. So the gateway
writes batches of span records (see ``records``) to the exporter process's stdin, as
frames: a 4-byte big-endian length, then a JSON list of records. At end of input the
process sends what it holds (within the export timeout) and exits. It dies with the
gateway (parent-death signal), so a SIGKILLed gateway leaves no exporter behind.

``exporting_spans`` runs the process for the length of a block and gives a sink for
``SpanBatch``. The sink never blocks: when the process falls behind (a slow or
absent collector) by more than ``MAX_BACKLOG_BYTES``, batches are dropped and counted, so
a collector loses telemetry, never invocations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from gateway.telemetry.exporter_process import FRAME_HEADER
from gateway.telemetry.spans import SpanBatch
from workers import json_safe

# What may wait in the pipe to the exporter before batches are dropped.
MAX_BACKLOG_BYTES: Final = 8 * 1024 * 1024
# A partial batch is handed over at least this often.
FLUSH_INTERVAL_S: Final = 0.1
# A dead exporter is replaced at most this often.
RESTART_INTERVAL_S: Final = 5.0
# How long the exporter may take to flush at shutdown (its export timeout is 10 s).
STOP_DEADLINE_S: Final = 15.0
# The exporter's environment: the OTEL_* settings and what reaching a collector may need
# (proxies, CA bundles), never the gateway's other variables (credentials among them).
PASSED_PREFIXES: Final = ("OTEL_", "GRPC_", "SSL_CERT_", "LC_")
PASSED_NAMES: Final = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "TZ",
        "PYTHONPATH",
        "REQUESTS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)


def exporter_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        key: value
        for key, value in environ.items()
        if key in PASSED_NAMES or key.startswith(PASSED_PREFIXES)
    }


@dataclass(frozen=True)
class ExporterLogging:
    """How the exporter process logs: as the gateway does ([server] log_format and
    log_level), so its lines fit the same log pipeline."""

    log_format: str = "text"
    log_level: str = "info"


async def spawn_exporter(
    environ: Mapping[str, str], logging_as: ExporterLogging
) -> asyncio.subprocess.Process:
    """Start ``python -m gateway.telemetry.exporter_process`` with its stdin a pipe to
    us."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.telemetry.exporter_process",
        "--log-format",
        logging_as.log_format,
        "--log-level",
        logging_as.log_level,
        stdin=asyncio.subprocess.PIPE,
        env=exporter_environment(environ),
    )


class ExporterPipe:
    """The gateway's end of the exporter process: frames written without blocking,
    dropped while the process is gone or too far behind. A process that died is
    replaced by ``revive``, at most once per ``RESTART_INTERVAL_S``."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        spawn: Callable[[], Awaitable[asyncio.subprocess.Process]],
        log: logging.Logger,
    ) -> None:
        self.proc = proc
        self._spawn = spawn
        self._log = log
        self._next_restart = 0.0
        self.dropped_spans = 0
        self._dropping = False

    def send(self, batch: list[dict[str, Any]]) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        transport = stdin.transport
        if self.proc.returncode is not None or transport.is_closing():
            self._drop(batch, f"the span exporter exited with status {self.proc.returncode}")
            return
        if transport.get_write_buffer_size() > MAX_BACKLOG_BYTES:
            self._drop(batch, "the span exporter is behind (is the collector slow or down?)")
            return
        try:
            payload = orjson.dumps(batch)
        except orjson.JSONEncodeError:
            # A string JSON cannot carry (a header's undecodable byte): replace it, on
            # this rare path only.
            try:
                payload = orjson.dumps(json_safe(batch))
            except orjson.JSONEncodeError as exc:
                self._drop(batch, f"spans that cannot be written as JSON ({exc})")
                return
        self._dropping = False
        stdin.write(FRAME_HEADER.pack(len(payload)) + payload)

    async def revive(self, now: float) -> None:
        """Replace an exporter process that died (it should not: this is the safety net
        that keeps a crash from ending tracing for the gateway's lifetime)."""
        if self.proc.returncode is None or now < self._next_restart:
            return
        self._next_restart = now + RESTART_INTERVAL_S
        self._log.warning(
            "the span exporter exited with status %s; starting a new one", self.proc.returncode
        )
        await _stop(self.proc, self._log)
        self.proc = await self._spawn()

    def _drop(self, batch: list[dict[str, Any]], why: str) -> None:
        # Logged when dropping starts, not for every batch.
        if not self._dropping:
            self._log.warning("dropping spans: %s", why)
            self._dropping = True
        self.dropped_spans += len(batch)


@contextlib.asynccontextmanager
async def exporting_spans(
    environ: Mapping[str, str], log: logging.Logger, logging_as: ExporterLogging
) -> AsyncIterator[SpanBatch]:
    """Run the exporter process for the block; yield the span batch that feeds it. The
    batch is flushed every ``FLUSH_INTERVAL_S`` (a dead exporter is replaced on the same
    beat) and once more at the end. On the way out the process gets end of input and up
    to ``STOP_DEADLINE_S`` to flush, then SIGKILL."""

    async def spawn() -> asyncio.subprocess.Process:
        return await spawn_exporter(environ, logging_as)

    pipe = ExporterPipe(await spawn(), spawn, log)
    spans = SpanBatch(pipe.send, lambda: pipe.dropped_spans)
    try:
        async with asyncio.TaskGroup() as tasks:
            ticker = tasks.create_task(_tend(pipe, spans))
            try:
                yield spans
            finally:
                ticker.cancel()
                spans.flush()
    finally:
        await _stop(pipe.proc, log)
        if pipe.dropped_spans:
            log.warning("dropped %d spans the exporter could not take", pipe.dropped_spans)


async def _tend(pipe: ExporterPipe, spans: SpanBatch) -> None:
    """Every ``FLUSH_INTERVAL_S``: hand over what the batch holds, and replace a dead
    exporter."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        spans.flush()
        await pipe.revive(loop.time())


async def _stop(proc: asyncio.subprocess.Process, log: logging.Logger) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        async with asyncio.timeout(STOP_DEADLINE_S):
            await proc.wait()
    except TimeoutError:
        log.warning("the span exporter did not finish flushing; stopping it")
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
