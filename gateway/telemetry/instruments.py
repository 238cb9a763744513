"""The gateway's metric instruments, made from the catalogue on a meter passed in."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    Observation,
    UpDownCounter,
)

from gateway.telemetry import catalog

GaugeSource = Callable[[], Iterable[tuple[float, dict[str, str]]]]


@dataclass(frozen=True, slots=True)
class Invoked:
    """What one finished invocation contributes to the metrics."""

    attributes: dict[str, str]
    memory_mb: int
    total_s: float
    model_s: float
    init_s: float | None
    tier: str | None
    bytes_in: int
    bytes_out: int
    cpu_s: float | None = None
    max_rss_bytes: int | None = None


class Instruments:
    """Counters and histograms the request path records into; observable gauges read
    the live state through the ``gauges`` sources (by catalogue name)."""

    def __init__(self, meter: Meter, gauges: dict[str, GaugeSource]) -> None:
        self.invocations = _counter(meter, catalog.INVOCATIONS)
        self.errors = _counter(meter, catalog.ERRORS)
        self.timeouts = _counter(meter, catalog.TIMEOUTS)
        self.coldstarts = _counter(meter, catalog.COLDSTARTS)
        self.init_duration = _histogram(meter, catalog.INIT_DURATION)
        self.invoke_duration = _histogram(meter, catalog.INVOKE_DURATION)
        self.overhead = _histogram(meter, catalog.OVERHEAD)
        self.cpu_usage = _histogram(meter, catalog.CPU_USAGE)
        self.mem_usage = _histogram(meter, catalog.MEM_USAGE)
        self.throttles = _counter(meter, catalog.THROTTLES)
        self.concurrency = _updown(meter, catalog.CONCURRENCY)
        self.billed = _counter(meter, catalog.BILLED_DURATION)
        self.usage = _counter(meter, catalog.USAGE)
        self.bytes_in = _counter(meter, catalog.BYTES_IN)
        self.bytes_out = _counter(meter, catalog.BYTES_OUT)
        for spec in (catalog.WORKERS, catalog.ZYGOTES, catalog.CONCURRENCY_LIMIT):
            source = gauges.get(spec.name)
            if source is not None:
                meter.create_observable_gauge(
                    spec.name,
                    callbacks=[_observe(source)],
                    unit=spec.unit,
                    description=spec.description,
                )

    def record(self, invoked: Invoked) -> None:
        """Record one answered invocation (a model error included)."""
        attributes = invoked.attributes
        self.invocations.add(1, attributes)
        self.invoke_duration.record(invoked.model_s, attributes)
        overhead = invoked.total_s - invoked.model_s - (invoked.init_s or 0.0)
        self.overhead.record(max(0.0, overhead), attributes)
        if invoked.init_s is not None:
            tiered = {**attributes, "coldbrew.tier": invoked.tier or "unknown"}
            self.coldstarts.add(1, tiered)
            self.init_duration.record(invoked.init_s, tiered)
        # SageMaker bills model time rounded up to the millisecond.
        billed_ms = math.ceil(invoked.model_s * 1000.0)
        self.billed.add(billed_ms, attributes)
        self.usage.add(billed_ms / 1000.0 * invoked.memory_mb / 1024.0, attributes)
        self.bytes_in.add(invoked.bytes_in, attributes)
        self.bytes_out.add(invoked.bytes_out, attributes)
        if invoked.cpu_s is not None:
            self.cpu_usage.record(invoked.cpu_s, attributes)
        if invoked.max_rss_bytes is not None:
            self.mem_usage.record(invoked.max_rss_bytes, attributes)


def _counter(meter: Meter, spec: catalog.MetricSpec) -> Counter:
    return meter.create_counter(spec.name, unit=spec.unit, description=spec.description)


def _updown(meter: Meter, spec: catalog.MetricSpec) -> UpDownCounter:
    return meter.create_up_down_counter(spec.name, unit=spec.unit, description=spec.description)


def _histogram(meter: Meter, spec: catalog.MetricSpec) -> Histogram:
    return meter.create_histogram(spec.name, unit=spec.unit, description=spec.description)


def _observe(source: GaugeSource) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attributes) for value, attributes in source()]

    return callback
