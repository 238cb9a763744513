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


class Instruments:
    """Counters and histograms the request path records into; observable gauges read
    the live state through the ``gauges`` sources (by catalogue name)."""

    def __init__(self, meter: Meter, gauges: dict[str, GaugeSource]) -> None:
        self.invocations = meter.create_counter(
            catalog.INVOCATIONS.name,
            unit=catalog.INVOCATIONS.unit,
            description=catalog.INVOCATIONS.description,
        )
        self.errors = meter.create_counter(
            catalog.ERRORS.name, unit=catalog.ERRORS.unit, description=catalog.ERRORS.description
        )
        self.timeouts = meter.create_counter(
            catalog.TIMEOUTS.name,
            unit=catalog.TIMEOUTS.unit,
            description=catalog.TIMEOUTS.description,
        )
        self.coldstarts = meter.create_counter(
            catalog.COLDSTARTS.name,
            unit=catalog.COLDSTARTS.unit,
            description=catalog.COLDSTARTS.description,
        )
        self.init_duration = meter.create_histogram(
            catalog.INIT_DURATION.name,
            unit=catalog.INIT_DURATION.unit,
            description=catalog.INIT_DURATION.description,
        )
        self.invoke_duration = meter.create_histogram(
            catalog.INVOKE_DURATION.name,
            unit=catalog.INVOKE_DURATION.unit,
            description=catalog.INVOKE_DURATION.description,
        )
        self.overhead = meter.create_histogram(
            catalog.OVERHEAD.name,
            unit=catalog.OVERHEAD.unit,
            description=catalog.OVERHEAD.description,
        )
        self.throttles = meter.create_counter(
            catalog.THROTTLES.name,
            unit=catalog.THROTTLES.unit,
            description=catalog.THROTTLES.description,
        )
        self.concurrency = meter.create_up_down_counter(
            catalog.CONCURRENCY.name,
            unit=catalog.CONCURRENCY.unit,
            description=catalog.CONCURRENCY.description,
        )
        self.billed = meter.create_counter(
            catalog.BILLED_DURATION.name,
            unit=catalog.BILLED_DURATION.unit,
            description=catalog.BILLED_DURATION.description,
        )
        self.usage = meter.create_counter(
            catalog.USAGE.name, unit=catalog.USAGE.unit, description=catalog.USAGE.description
        )
        self.bytes_in = meter.create_counter(
            catalog.BYTES_IN.name,
            unit=catalog.BYTES_IN.unit,
            description=catalog.BYTES_IN.description,
        )
        self.bytes_out = meter.create_counter(
            catalog.BYTES_OUT.name,
            unit=catalog.BYTES_OUT.unit,
            description=catalog.BYTES_OUT.description,
        )
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
