"""Every metric the gateway emits, declared once: name, kind, unit, meaning, buckets.

Names follow the OpenTelemetry FaaS semantic conventions (``faas.*``, semantic
conventions 1.26) for what a FaaS platform measures, and ``coldbrew.*`` for the gateway's
own figures. The instruments, the Prometheus page and the shipped dashboard's test all
read this table, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["counter", "updowncounter", "histogram", "gauge"]

# Seconds. Cold starts of ML models take minutes at worst (the setup deadline is 180 s),
# so the buckets reach well past the usual 10 s.
DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 180.0, 300.0, 600.0,
)  # fmt: skip
# The gateway's own share of a request is sub-millisecond when all is well.
OVERHEAD_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    unit: str
    description: str
    buckets: tuple[float, ...] | None = None


INVOCATIONS: Final = MetricSpec(
    "faas.invocations", "counter", "{invocation}", "Invocations admitted to an endpoint."
)
ERRORS: Final = MetricSpec(
    "faas.errors", "counter", "{error}", "Invocations that ended in an error, by error.type."
)
TIMEOUTS: Final = MetricSpec(
    "faas.timeouts", "counter", "{timeout}", "Invocations whose model passed its deadline."
)
COLDSTARTS: Final = MetricSpec(
    "faas.coldstarts", "counter", "{coldstart}", "Invocations that waited for a worker to start."
)
INIT_DURATION: Final = MetricSpec(
    "faas.init_duration",
    "histogram",
    "s",
    "Time from a cold start's beginning until its worker was READY, by warm tier.",
    DURATION_BUCKETS,
)
INVOKE_DURATION: Final = MetricSpec(
    "faas.invoke_duration", "histogram", "s", "Time the model took to answer.", DURATION_BUCKETS
)
OVERHEAD: Final = MetricSpec(
    "coldbrew.overhead_duration",
    "histogram",
    "s",
    "End-to-end time minus model time and cold start (SageMaker's OverheadLatency less "
    "ModelSetupTime): what the gateway itself adds.",
    OVERHEAD_BUCKETS,
)
CPU_USAGE: Final = MetricSpec(
    "faas.cpu_usage",
    "histogram",
    "s",
    "CPU time the worker spent on one invocation.",
    DURATION_BUCKETS,
)
MEM_USAGE: Final = MetricSpec(
    "faas.mem_usage",
    "histogram",
    "By",
    "Peak resident memory of the worker that served an invocation.",
    tuple(float(mib * 1024 * 1024) for mib in (16, 64, 128, 256, 512, 1024, 2048, 4096, 6144)),
)
THROTTLES: Final = MetricSpec(
    "coldbrew.throttles", "counter", "{invocation}", "Invocations throttled, by quota."
)
CONCURRENCY: Final = MetricSpec(
    "coldbrew.concurrency",
    "updowncounter",
    "{invocation}",
    "Invocations in flight, per endpoint (against its MaxConcurrency).",
)
CONCURRENCY_LIMIT: Final = MetricSpec(
    "coldbrew.concurrency_limit",
    "gauge",
    "{invocation}",
    "Concurrency quota, per endpoint (MaxConcurrency) and per region.",
)
WORKERS: Final = MetricSpec(
    "coldbrew.workers", "gauge", "{worker}", "Worker processes, by state (starting, idle, busy)."
)
ZYGOTES: Final = MetricSpec(
    "coldbrew.zygotes", "gauge", "{process}", "Zygote processes alive, by kind."
)
BILLED_DURATION: Final = MetricSpec(
    "coldbrew.billed_duration",
    "counter",
    "ms",
    "Model time billed, rounded up to the millisecond per invocation as SageMaker bills.",
)
USAGE: Final = MetricSpec(
    "coldbrew.usage",
    "counter",
    "GB.s",
    "Billed duration times MemorySizeInMB, in GB-seconds: the pay-per-use view.",
)
BYTES_IN: Final = MetricSpec(
    "coldbrew.request_bytes", "counter", "By", "Request payload bytes received."
)
BYTES_OUT: Final = MetricSpec(
    "coldbrew.response_bytes", "counter", "By", "Response payload bytes sent."
)
SPANS_DROPPED: Final = MetricSpec(
    "coldbrew.spans_dropped",
    "counter",
    "{span}",
    "Spans the gateway dropped: its span exporter was gone, or too far behind (a slow or "
    "absent collector, starved CPUs).",
)

CATALOG: Final = (
    INVOCATIONS,
    ERRORS,
    TIMEOUTS,
    COLDSTARTS,
    INIT_DURATION,
    INVOKE_DURATION,
    OVERHEAD,
    CPU_USAGE,
    MEM_USAGE,
    THROTTLES,
    CONCURRENCY,
    CONCURRENCY_LIMIT,
    WORKERS,
    ZYGOTES,
    BILLED_DURATION,
    USAGE,
    BYTES_IN,
    BYTES_OUT,
    SPANS_DROPPED,
)

_UNIT_SUFFIXES: Final = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "GB.s": "gb_seconds"}


def prometheus_name(spec: MetricSpec) -> str:
    """The metric's name on the Prometheus page, as OpenTelemetry's Prometheus
    conventions write it: dots to underscores, the unit as a suffix, ``_total`` for
    counters (``faas.init_duration`` -> ``faas_init_duration_seconds``)."""
    name = spec.name.replace(".", "_")
    suffix = _UNIT_SUFFIXES.get(spec.unit)
    if suffix and not name.endswith(suffix):
        name = f"{name}_{suffix}"
    if spec.kind == "counter":
        name = f"{name}_total"
    return name
