"""What the observable instruments read when metrics are collected: the gateway's live
state (workers, zygotes, tokens in use, limits, spans dropped) and its per-endpoint
totals.

That state belongs to the event loop's thread, which may change it between any two
steps of another thread's reading (a dictionary that changes size while it is walked
raises, and the SDK then drops that instrument's readings). Metrics are collected on
other threads: the OTLP exporter's, and the /metrics page's (rendered off the loop: a
collection waits for the loop while it holds the SDK's lock, so the loop must never wait
for that lock). So every reading comes from a ``LiveSnapshot``: immutable, and taken on
the loop's thread in one go. A collection on the loop's thread takes it directly; one on
another thread asks the loop for it (``call_soon_threadsafe``) and waits up to
``SNAPSHOT_WAIT_S``: if the loop does not answer by then, that collection has none of
these readings, and a warning says so.

One snapshot serves every gauge of a collection, so they agree with each other: the SDK
runs a collection's callbacks one after another, each once, one collection at a time
(under its lock). So when a gauge asks again, a new collection has begun, and a new
snapshot is taken.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Final

from gateway.runtime.admission import AdmissionStore
from gateway.runtime.deployments import Deployments, EndpointTotals
from gateway.telemetry import catalog
from gateway.telemetry.instruments import GaugeSource
from gateway.telemetry.spans import SpanBatch
from workers import PoolManager, PoolStatistics

Readings = Iterable[tuple[float, dict[str, str]]]

# How long a collection on another thread waits for the loop to take a snapshot.
SNAPSHOT_WAIT_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class EndpointState:
    """One serving endpoint, as the gauges read it."""

    account_id: str
    region: str
    name: str  # as spelled
    admission_limit: int
    in_use: int
    totals: EndpointTotals


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """Everything the gauges read, at one moment of the loop."""

    endpoints: tuple[EndpointState, ...]
    pools: tuple[tuple[Hashable, PoolStatistics], ...]
    runtime_zygote: bool
    region_concurrency: int
    spans_dropped: int | None  # None: not tracing


class LiveState:
    """The gauges' sources (``sources``), reading snapshots of the live state (see the
    module's docstring). Made on the event loop's thread while the loop runs (raises
    RuntimeError otherwise): that loop is the one whose state it reads."""

    def __init__(
        self,
        pools: PoolManager,
        deployments: Deployments,
        admission: AdmissionStore,
        region_concurrency: int,
        spans: SpanBatch | None = None,
        *,
        wait_s: float = SNAPSHOT_WAIT_S,
        log: logging.Logger | None = None,
    ) -> None:
        self._pools = pools
        self._deployments = deployments
        self._admission = admission
        self._region_concurrency = region_concurrency
        self._spans = spans
        self._loop = asyncio.get_running_loop()
        self._wait_s = wait_s
        self._log = log or logging.getLogger("coldbrew.metrics")
        self._lock = threading.Lock()
        self._snapshot: LiveSnapshot | None = None
        self._served: set[str] = set()  # the gauges that read _snapshot

    def sources(self) -> dict[str, GaugeSource]:
        readers: dict[str, Callable[[LiveSnapshot], Readings]] = {
            catalog.WORKERS.name: workers,
            catalog.ZYGOTES.name: zygotes,
            catalog.CONCURRENCY_LIMIT.name: limits,
            catalog.CONCURRENCY.name: in_use,
            catalog.INVOCATIONS.name: total("invocations"),
            catalog.BILLED_DURATION.name: total("billed_ms"),
            catalog.USAGE.name: total("gb_seconds"),
            catalog.BYTES_IN.name: total("bytes_in"),
            catalog.BYTES_OUT.name: total("bytes_out"),
            catalog.SPANS_DROPPED.name: spans_dropped,
        }
        return {name: self._source(name, read) for name, read in readers.items()}

    def snapshot(self) -> LiveSnapshot:
        """The live state now. Only on the loop's thread."""
        deployments = {deployment.key: deployment for deployment in self._deployments}
        endpoints = tuple(
            EndpointState(
                account_id=key[0],
                region=key[1],
                name=name,
                admission_limit=deployments[key].admission_limit,
                in_use=self._admission.in_use(("endpoint", *key)),
                totals=totals,
            )
            for key, name, totals in self._deployments.totals()
        )
        return LiveSnapshot(
            endpoints=endpoints,
            pools=tuple(self._pools.statistics().items()),
            runtime_zygote=self._pools.runtime_zygote_pid() is not None,
            region_concurrency=self._region_concurrency,
            spans_dropped=self._spans.dropped() if self._spans is not None else None,
        )

    def _source(self, gauge: str, read: Callable[[LiveSnapshot], Readings]) -> GaugeSource:
        def source() -> Readings:
            snapshot = self._for_gauge(gauge)
            return read(snapshot) if snapshot is not None else ()

        return source

    def _for_gauge(self, gauge: str) -> LiveSnapshot | None:
        """The snapshot of the current collection (None: the loop did not answer)."""
        with self._lock:
            fresh = not self._served or gauge in self._served
        # Taken outside the lock, so that the loop's thread never waits for the lock
        # while another thread waits for the loop.
        snapshot = self._take() if fresh else self._snapshot
        with self._lock:
            if fresh:
                self._snapshot, self._served = snapshot, set()
            self._served.add(gauge)
        return snapshot

    def _take(self) -> LiveSnapshot | None:
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:  # no loop runs on this thread
            on_loop = False
        if on_loop:
            return self.snapshot()
        answer: concurrent.futures.Future[LiveSnapshot] = concurrent.futures.Future()

        def take() -> None:
            if answer.set_running_or_notify_cancel():  # False: the collection gave up
                try:
                    answer.set_result(self.snapshot())
                except Exception as exc:
                    answer.set_exception(exc)

        try:
            self._loop.call_soon_threadsafe(take)
            return answer.result(timeout=self._wait_s)
        except (TimeoutError, RuntimeError) as exc:  # RuntimeError: the loop is closed
            answer.cancel()
            self._log.warning(
                "no live-state metrics in this collection: the event loop did not answer "
                "within %g s (%s)",
                self._wait_s,
                type(exc).__name__,
            )
            return None


def workers(snapshot: LiveSnapshot) -> Readings:
    for key, stats in snapshot.pools:
        assert isinstance(key, tuple)
        labels = {"cloud.account.id": key[0], "cloud.region": key[1], "faas.name": key[2]}
        yield float(stats.starting), {**labels, "state": "starting"}
        yield float(stats.idle), {**labels, "state": "idle"}
        yield float(stats.busy), {**labels, "state": "busy"}


def zygotes(snapshot: LiveSnapshot) -> Readings:
    models = sum(stats.model_zygote == "ready" for _, stats in snapshot.pools)
    yield float(snapshot.runtime_zygote), {"kind": "runtime"}
    yield float(models), {"kind": "model"}


def limits(snapshot: LiveSnapshot) -> Readings:
    for endpoint in snapshot.endpoints:
        yield float(endpoint.admission_limit), {**_labels(endpoint), "scope": "endpoint"}
    scopes = sorted({(endpoint.account_id, endpoint.region) for endpoint in snapshot.endpoints})
    for account, region in scopes:
        labels = {"cloud.account.id": account, "cloud.region": region, "scope": "region"}
        yield float(snapshot.region_concurrency), labels


def in_use(snapshot: LiveSnapshot) -> Readings:
    for endpoint in snapshot.endpoints:
        yield float(endpoint.in_use), _labels(endpoint)


def total(field: str) -> Callable[[LiveSnapshot], Readings]:
    def read(snapshot: LiveSnapshot) -> Readings:
        for endpoint in snapshot.endpoints:
            yield float(getattr(endpoint.totals, field)), _labels(endpoint)

    return read


def spans_dropped(snapshot: LiveSnapshot) -> Readings:
    # Only when tracing: a gateway that makes no spans drops none.
    if snapshot.spans_dropped is not None:
        yield float(snapshot.spans_dropped), {}


def _labels(endpoint: EndpointState) -> dict[str, str]:
    return {
        "cloud.account.id": endpoint.account_id,
        "cloud.region": endpoint.region,
        "faas.name": endpoint.name,
    }
