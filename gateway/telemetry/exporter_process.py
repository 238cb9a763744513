"""The span exporter process: ``python -m gateway.telemetry.exporter_process``.

It reads frames of span records (see ``exporter`` for the gateway's side) from stdin,
encodes each span into OTLP protobuf as it arrives (see ``otlp``), and sends a request
when ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` spans are waiting or ``OTEL_BSP_SCHEDULE_DELAY``
has passed since the first of them (see ``transport`` for where and how). One thread,
one loop: while a request is on its way, new frames wait in the pipe, and the gateway
drops what goes past its backlog cap, so a slow collector costs spans, not memory. It
runs at the lowest CPU priority (``lower_priority``): on saturated CPUs invocations come
first, and spans wait in the pipe, then drop (logged by the gateway).

At end of input it sends what it still holds (within the export timeout) and exits 0.
A malformed record (model code's spans travel this way too) is dropped, never fatal.
Settings it cannot use are logged once; it then reads and drops everything, so that the
gateway does not restart it over and over.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from gateway.telemetry.otlp import TraceRequest, encode_span, scope_of
from gateway.telemetry.records import WORKER_SCOPE
from gateway.telemetry.transport import Outcome, Transport, deliver

FRAME_HEADER: Final = struct.Struct(">I")
READ_SIZE: Final = 1 << 20
# The SDK's defaults for the batch span processor's variables.
DEFAULT_SCHEDULE_DELAY_MS: Final = 5000
DEFAULT_MAX_EXPORT_BATCH_SIZE: Final = 512
# The lowest CPU priority there is.
NICENESS: Final = 19


class FrameDecoder:
    """Frames (a 4-byte big-endian length, then a JSON list of records) from a byte
    stream fed in pieces of any size."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Any]:
        """The batches completed by ``data``, decoded; a frame that is not JSON is
        skipped (the frames around it still are)."""
        self._buffer += data
        while len(self._buffer) >= FRAME_HEADER.size:
            (size,) = FRAME_HEADER.unpack_from(self._buffer)
            end = FRAME_HEADER.size + size
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[FRAME_HEADER.size : end])
            del self._buffer[:end]
            try:
                yield orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue


@dataclass(frozen=True)
class Batching:
    schedule_delay_s: float
    max_batch: int


def batching(environ: Mapping[str, str]) -> Batching:
    """OTEL_BSP_SCHEDULE_DELAY (ms) and OTEL_BSP_MAX_EXPORT_BATCH_SIZE; a malformed or
    non-positive value falls back to the default, as the SDK does."""

    def positive(name: str, default: int) -> int:
        try:
            value = int(environ.get(name, default))
        except ValueError:
            return default
        return value if value > 0 else default

    return Batching(
        positive("OTEL_BSP_SCHEDULE_DELAY", DEFAULT_SCHEDULE_DELAY_MS) / 1000.0,
        positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_MAX_EXPORT_BATCH_SIZE),
    )


class SpanShipper:
    """Encodes records into the pending request and sends it when it is full or due.
    Logs when sending starts failing and when it recovers, not for every request."""

    def __init__(
        self,
        transport: Transport,
        resource_attributes: Mapping[str, object],
        timeout_s: float,
        batch: Batching,
        log: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._request = TraceRequest(resource_attributes)
        self._timeout_s = timeout_s
        self._batch = batch
        self._log = log
        self._clock = clock
        self._due: float | None = None
        self._failing = False
        self.lost_spans = 0

    def add(self, records: object) -> None:
        """Encode each record of a decoded frame (a malformed one is skipped: model code's
        spans travel this way too), and ship as soon as a batch is full."""
        for record in records if isinstance(records, list) else ():
            try:
                span = encode_span(record)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            self._request.add(scope_of(record, WORKER_SCOPE), span)
            if self._due is None:
                self._due = self._clock() + self._batch.schedule_delay_s
            if self._request.spans >= self._batch.max_batch:
                self.ship()

    def wait_s(self) -> float | None:
        """How long input may be awaited before the pending spans are due (None: no
        spans pending)."""
        return None if self._due is None else max(self._due - self._clock(), 0.0)

    def ship_if_due(self) -> None:
        """Ship when the oldest pending span has waited ``schedule_delay_s``."""
        if self._due is not None and self._clock() >= self._due:
            self.ship()

    def ship(self) -> None:
        """Send the pending spans (blocking, retries included)."""
        count = self._request.spans
        self._due = None
        if not count:
            return
        attempt = deliver(self._transport, self._request.take(), self._timeout_s)
        if attempt.outcome is Outcome.SENT:
            if self._failing:
                self._log.warning("exporting spans again")
                self._failing = False
            return
        self.lost_spans += count
        if not self._failing:
            self._log.warning("could not export %d spans: %s", count, attempt.detail)
            self._failing = True


def pump(fd: int, shipper: SpanShipper) -> None:
    """Feed ``shipper`` from ``fd`` until end of input, then ship what is left."""
    decoder = FrameDecoder()
    try:
        while True:
            readable, _, _ = select.select([fd], [], [], shipper.wait_s())
            if readable:
                data = os.read(fd, READ_SIZE)
                if not data:
                    break
                for batch in decoder.feed(data):
                    shipper.add(batch)
            shipper.ship_if_due()
    finally:
        shipper.ship()


def lower_priority() -> None:
    """Take the lowest CPU priority (nice 19: on a busy CPU, about 1.5% of what a
    normal process gets): exporting then takes CPU from the gateway and its workers only
    when they leave some, yet still progresses on a saturated machine. On the bench's
    two cores, the exporter at normal priority (or nice 10) cost the traced gateway 5 to
    10% more of its throughput than at nice 19."""
    os.nice(NICENESS)


def drain(fd: int) -> None:
    """Read and drop everything until end of input."""
    while os.read(fd, READ_SIZE):
        pass


def main(argv: list[str] | None = None) -> int:
    """Export span records read from stdin until end of input, logging as the gateway
    does (``--log-format text|json``, ``--log-level``)."""
    import argparse

    from opentelemetry.sdk.resources import Resource

    from gateway.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
    from gateway.telemetry.transport import (
        SERVICE_NAME,
        export_settings,
        open_transport,
        protocol,
    )
    from workers import die_with_parent

    parser = argparse.ArgumentParser(prog="python -m gateway.telemetry.exporter_process")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    options = parser.parse_args(argv)
    die_with_parent(os.getppid())
    configure_logging(options.log_level, options.log_format)
    log = logging.getLogger("coldbrew.span-exporter")
    fd = sys.stdin.fileno()
    try:
        settings = export_settings(os.environ, protocol(os.environ, "traces"))
        transport = open_transport(settings)
    except (ValueError, OSError, ImportError) as exc:
        log.error("cannot export spans, dropping them all: %s", exc)
        drain(fd)
        return 0
    service = os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)
    resource = Resource.create({"service.name": service})
    shipper = SpanShipper(
        transport, dict(resource.attributes), settings.timeout_s, batching(os.environ), log
    )
    # Set up at normal priority (a prompt start); exported at the lowest.
    lower_priority()
    try:
        pump(fd, shipper)
    finally:
        transport.close()
        if shipper.lost_spans:
            log.warning("%d spans could not be exported", shipper.lost_spans)
    return 0


if __name__ == "__main__":
    sys.exit(main())
