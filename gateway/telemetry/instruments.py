"""The gateway's metric instruments, made from the catalogue on a meter passed in."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    Observation,
)

from gateway.telemetry import catalog

GaugeSource = Callable[[], Iterable[tuple[float, dict[str, str]]]]


@dataclass(frozen=True, slots=True)
class Invoked:
    """What one finished invocation contributes to the histograms."""

    attributes: dict[str, str]
    total_s: float
    model_s: float
    init_s: float | None
    tier: str | None
    cpu_s: float | None = None
    max_rss_bytes: int | None = None


# Totals the gateway keeps anyway (invocations, billed time, bytes, tokens in use) are
# read when metrics are collected instead of being recorded on every request: recording
# into the SDK costs microseconds per instrument, and a request would pay it many times.
OBSERVED: Final = (
    catalog.INVOCATIONS,
    catalog.BILLED_DURATION,
    catalog.USAGE,
    catalog.BYTES_IN,
    catalog.BYTES_OUT,
    catalog.CONCURRENCY,
    catalog.CONCURRENCY_LIMIT,
    catalog.WORKERS,
    catalog.ZYGOTES,
    catalog.SPANS_DROPPED,
)


class Instruments:
    """What the request path records (distributions, and counts of rare events), and
    observable instruments reading the live totals through ``sources`` (by catalogue
    name) when metrics are collected."""

    def __init__(self, meter: Meter, sources: dict[str, GaugeSource]) -> None:
        self.errors = _counter(meter, catalog.ERRORS)
        self.timeouts = _counter(meter, catalog.TIMEOUTS)
        self.coldstarts = _counter(meter, catalog.COLDSTARTS)
        self.throttles = _counter(meter, catalog.THROTTLES)
        self.init_duration = _histogram(meter, catalog.INIT_DURATION)
        self.invoke_duration = _histogram(meter, catalog.INVOKE_DURATION)
        self.overhead = _histogram(meter, catalog.OVERHEAD)
        self.cpu_usage = _histogram(meter, catalog.CPU_USAGE)
        self.mem_usage = _histogram(meter, catalog.MEM_USAGE)
        create = {
            "counter": meter.create_observable_counter,
            "updowncounter": meter.create_observable_up_down_counter,
            "gauge": meter.create_observable_gauge,
        }
        for spec in OBSERVED:
            source = sources.get(spec.name)
            if source is not None:
                create[spec.kind](
                    spec.name,
                    callbacks=[_observe(source)],
                    unit=spec.unit,
                    description=spec.description,
                )

    def record(self, invoked: Invoked) -> None:
        """Record one answered invocation (a model error included)."""
        attributes = invoked.attributes
        self.invoke_duration.record(invoked.model_s, attributes)
        overhead = invoked.total_s - invoked.model_s - (invoked.init_s or 0.0)
        self.overhead.record(max(0.0, overhead), attributes)
        if invoked.init_s is not None:
            tiered = {**attributes, "coldbrew.tier": invoked.tier or "unknown"}
            self.coldstarts.add(1, tiered)
            self.init_duration.record(invoked.init_s, tiered)
        if invoked.cpu_s is not None:
            self.cpu_usage.record(invoked.cpu_s, attributes)
        if invoked.max_rss_bytes is not None:
            self.mem_usage.record(invoked.max_rss_bytes, attributes)


def _counter(meter: Meter, spec: catalog.MetricSpec) -> Counter:
    return meter.create_counter(spec.name, unit=spec.unit, description=spec.description)


def _histogram(meter: Meter, spec: catalog.MetricSpec) -> Histogram:
    return meter.create_histogram(spec.name, unit=spec.unit, description=spec.description)


def _observe(source: GaugeSource) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attributes) for value, attributes in source()]

    return callback
