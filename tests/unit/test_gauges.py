"""The observable gauges read the gateway's live state (real deployments, admission and
pool manager) from whichever thread collects, while the event loop keeps changing it:
no reading is lost, the gauges of one collection agree, and a loop that does not answer
costs one collection its readings, not the collecting thread its progress."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData

from gateway.runtime.admission import Grant, LocalAdmission, Quotas
from gateway.runtime.deployments import Deployment, Deployments
from gateway.runtime.gauges import LiveState
from gateway.sagemaker.names import Scope
from gateway.sagemaker.variants import ServerlessVariant
from gateway.telemetry import catalog
from gateway.telemetry.instruments import Instruments
from gateway.telemetry.readers import cumulative_reader
from workers import PoolLimits, PoolManager, WorkerSpec

SCOPE = Scope("123456789012", "us-east-1")
# The gauges with a series per endpoint.
PER_ENDPOINT = (
    catalog.WORKERS.name,
    catalog.CONCURRENCY.name,
    catalog.CONCURRENCY_LIMIT.name,
    catalog.INVOCATIONS.name,
    catalog.BILLED_DURATION.name,
    catalog.USAGE.name,
    catalog.BYTES_IN.name,
    catalog.BYTES_OUT.name,
)
# Endpoints added, admitted and counted in one step of the loop, then removed in the next.
CHURN_BATCH = 200
COLLECTIONS = 30


def deployment(name: str, model_dir: Path) -> Deployment:
    return Deployment(
        scope=SCOPE,
        name=name,
        config_name=f"{name}-config",
        variant=ServerlessVariant(
            name="AllTraffic",
            model_name="model",
            memory_mb=1024,
            max_concurrency=5,
            provisioned_concurrency=None,
        ),
        image="",
        spec=WorkerSpec(label=name, model_dir=model_dir, memory_mb=1024),
        limits=PoolLimits(
            max_workers=5,
            idle_timeout_s=60.0,
            invocation_timeout_s=60.0,
            setup_timeout_s=60.0,
            max_response_bytes=1 << 20,
        ),
        generation=1,
    )


class Live:
    """A gateway's live state with its gauges, and a pull reader to collect them."""

    def __init__(self, pools: PoolManager, model_dir: Path, **options: Any) -> None:
        self.pools = pools
        self.model_dir = model_dir
        self.deployments = Deployments()
        self.admission = LocalAdmission()
        state = LiveState(pools, self.deployments, self.admission, 1000, **options)
        self.reader: InMemoryMetricReader = cumulative_reader()
        self.provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        Instruments(self.provider.get_meter("test"), state.sources())

    def serve(self, name: str) -> tuple[Deployment, Grant]:
        """Deploy ``name`` with a pool, admit one call and count it."""
        found = deployment(name, self.model_dir)
        self.deployments.put(found)
        self.pools.pool(found.pool_key, found.spec, found.limits)
        quotas = Quotas(("endpoint", *found.key), 5, ("region", *found.key[:2]), 1000)
        grant = self.admission.try_acquire(quotas)
        assert isinstance(grant, Grant)
        self.deployments.count_invocation(found)
        return found, grant

    def retire(self, found: Deployment, grant: Grant) -> None:
        self.admission.release(grant)
        self.deployments.remove(found.scope, found.name)
        self.pools.remove(found.pool_key)

    def collect(self) -> dict[str, list[dict[str, Any]]]:
        """One collection: each metric's data points' attributes, by metric name."""
        return attributes_by_metric(self.reader.get_metrics_data())


def attributes_by_metric(data: MetricsData | None) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = found.setdefault(metric.name, [])
                points.extend(dict(point.attributes or {}) for point in metric.data.data_points)
    return found


def endpoints(points: list[dict[str, Any]]) -> set[str]:
    return {point["faas.name"] for point in points if point.get("scope", "endpoint") == "endpoint"}


@contextlib.asynccontextmanager
async def live_state(tmp_path: Path, **options: Any) -> AsyncIterator[Live]:
    manager = PoolManager(private_root=tmp_path / "workers", log=logging.getLogger("test"))
    async with manager.running() as pools:
        live = Live(pools, tmp_path, **options)
        try:
            yield live
        finally:
            live.provider.shutdown()


@contextlib.contextmanager
def frequent_thread_switches() -> Iterator[None]:
    """The interpreter hands over between threads far more often than its default 5 ms,
    so that a reading on one thread interleaves with the loop's changes on the other."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


async def test_a_collection_on_another_thread_reads_one_consistent_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While the loop adds and removes endpoints, pools and grants in batches, every
    collection on another thread has every reading of the endpoint that stays, and all
    its gauges see the same endpoints; nothing fails or is logged."""
    caplog.set_level(logging.WARNING)
    async with live_state(tmp_path) as live:
        live.serve("steady")
        stop = asyncio.Event()

        async def churn() -> None:
            while not stop.is_set():
                served = [live.serve(f"churn-{index}") for index in range(CHURN_BATCH)]
                await asyncio.sleep(0)
                for found, grant in served:
                    live.retire(found, grant)
                await asyncio.sleep(0)

        with frequent_thread_switches():
            churning = asyncio.create_task(churn())
            try:
                collections = await asyncio.to_thread(
                    lambda: [live.collect() for _ in range(COLLECTIONS)]
                )
            finally:
                stop.set()
                await churning
    assert [record.getMessage() for record in caplog.records] == []
    for collection in collections:
        assert {name: "steady" in endpoints(collection.get(name, [])) for name in PER_ENDPOINT} == {
            name: True for name in PER_ENDPOINT
        }
        seen = {name: endpoints(collection[name]) for name in PER_ENDPOINT}
        assert len({frozenset(names) for names in seen.values()}) == 1, seen
        assert len(collection[catalog.ZYGOTES.name]) == 2


async def test_a_collection_on_the_loops_thread_reads_directly(tmp_path: Path) -> None:
    """Collected on the loop's own thread (which cannot answer itself), the readings are
    there at once."""
    async with live_state(tmp_path, wait_s=30.0) as live:
        live.serve("steady")
        collection = live.collect()
    assert all(endpoints(collection[name]) == {"steady"} for name in PER_ENDPOINT)


async def test_a_collection_the_loop_does_not_answer_has_no_live_readings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the loop's thread blocked past the wait, a collection on another thread ends
    without the live readings, says so once, and the next one has them again."""
    async with live_state(tmp_path, wait_s=0.05) as live:
        live.serve("steady")
        collected: list[dict[str, list[dict[str, Any]]]] = []
        collecting = threading.Thread(target=lambda: collected.append(live.collect()))
        collecting.start()
        # Blocks the loop's thread until the collection is done.
        collecting.join(timeout=30)
        assert not collecting.is_alive()
        answered = await asyncio.to_thread(live.collect)
    (unanswered,) = collected
    assert [name for name in PER_ENDPOINT if unanswered.get(name)] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "the event loop did not answer within 0.05 s" in warnings[0]
    assert all(endpoints(answered[name]) == {"steady"} for name in PER_ENDPOINT)
