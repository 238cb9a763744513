"""Tracer and meter providers for a running gateway, configured only by the standard
``OTEL_*`` environment variables (endpoint, protocol, headers, service name, resource
attributes, batch and export intervals, read as the OpenTelemetry SDK reads them).

With no OTLP endpoint set nothing is exported and nothing slows down: spans are not
even recorded, and metrics feed only the Prometheus page. Spans are exported by a process
of their own (see exporter) and metrics on the SDK's thread, so a slow or absent
collector loses telemetry, never invocations.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Sampler

from gateway.telemetry import catalog
from gateway.telemetry.readers import (
    ExportingPageReader,
    cumulative_reader,
    exports_as_the_page_reads,
)
from gateway.telemetry.transport import SERVICE_NAME, protocol


@dataclass(frozen=True, slots=True)
class Providers:
    meter_provider: MeterProvider
    # Spans are exported (by the exporter process); otherwise the gateway makes none.
    tracing: bool
    # Which traces to keep, from OTEL_TRACES_SAMPLER (default: parent-based, always on).
    sampler: Sampler
    # What the Prometheus page reads (cumulative), attached to meter_provider.
    page_reader: InMemoryMetricReader | ExportingPageReader

    def shutdown(self) -> None:
        """Flush and stop exporting metrics (at gateway shutdown)."""
        self.meter_provider.shutdown()


def histogram_views() -> list[View]:
    """Bucket boundaries from the catalogue (ML cold starts need minutes, not 10 s)."""
    return [
        View(
            instrument_name=spec.name,
            aggregation=ExplicitBucketHistogramAggregation(list(spec.buckets)),
        )
        for spec in catalog.CATALOG
        if spec.kind == "histogram" and spec.buckets
    ]


def wants_otlp(environ: Mapping[str, str], signal: str) -> bool:
    """True when the environment names an OTLP endpoint for ``signal`` (traces or
    metrics) and does not turn its exporter off."""
    if environ.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp") == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def otlp_metric_exporter(protocol: str) -> MetricExporter:
    """The OTLP metric exporter for ``protocol`` (grpc needs coldbrew[otlp-grpc])."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def build_providers(environ: Mapping[str, str], log: logging.Logger) -> Providers:
    """Providers with a reader for the Prometheus page (``page_reader``) plus OTLP export
    when the environment asks for it, through the same reader when it can (see
    ``readers``). Resource attributes come from OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES (the SDK reads them); the default service name is
    coldbrew-gateway."""
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    tracing = wants_otlp(environ, "traces")
    if tracing:
        # Spans are exported by the exporter process (see exporter), which builds the
        # OTLP exporter from the same variables.
        log.info("exporting traces over OTLP (%s)", protocol(environ, "traces"))
    page_reader: InMemoryMetricReader | ExportingPageReader = cumulative_reader()
    metric_readers: list[MetricReader] = [page_reader]
    if wants_otlp(environ, "metrics"):
        metric_exporter = otlp_metric_exporter(protocol(environ, "metrics"))
        if exports_as_the_page_reads(environ):
            page_reader = ExportingPageReader(metric_exporter)
            metric_readers = [page_reader]
        else:
            metric_readers.append(PeriodicExportingMetricReader(metric_exporter))
        log.info("exporting metrics over OTLP (%s)", protocol(environ, "metrics"))
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=metric_readers,
        views=histogram_views(),
        # Exemplars only when asked for (OTEL_METRICS_EXEMPLAR_FILTER=trace_based): the
        # SDK's default samples one on every histogram record made inside a sampled
        # span, four per invocation, which cost about 4% of a traced gateway's
        # throughput; the Prometheus page does not show them.
        exemplar_filter=None
        if environ.get("OTEL_METRICS_EXEMPLAR_FILTER")
        else AlwaysOffExemplarFilter(),
    )
    # The SDK reads OTEL_TRACES_SAMPLER and its argument when a provider is made; a
    # gateway that makes no spans needs neither.
    sampler = TracerProvider().sampler if tracing else DEFAULT_ON
    return Providers(meter_provider, tracing, sampler, page_reader)
