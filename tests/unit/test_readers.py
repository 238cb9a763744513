"""One metric reader for the Prometheus page and OTLP export: a scrape collects without
exporting, the export period exports, and both see the same totals."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from gateway.telemetry.prometheus import PrometheusReader
from gateway.telemetry.readers import (
    ALL_CUMULATIVE,
    ExportingPageReader,
    exports_as_the_page_reads,
)
from gateway.telemetry.setup import build_providers


class KeptExports(MetricExporter):
    """An SDK metric exporter that keeps what it is given."""

    def __init__(self) -> None:
        super().__init__(preferred_temporality=ALL_CUMULATIVE)
        self.exported: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **_: Any) -> Any:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **_: Any) -> None:
        pass


def counted(data: MetricsData) -> float:
    (resource,) = data.resource_metrics
    (scope,) = resource.scope_metrics
    (metric,) = scope.metrics
    (point,) = metric.data.data_points
    return float(point.value)  # type: ignore[union-attr]


@pytest.fixture
def shared() -> Iterator[tuple[ExportingPageReader, KeptExports, MeterProvider]]:
    exporter = KeptExports()
    # No period: exports happen only when flushed, so the test decides when.
    reader = ExportingPageReader(exporter, export_interval_millis=math.inf)
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield reader, exporter, provider
    provider.shutdown()


def test_a_scrape_collects_without_exporting(
    shared: tuple[ExportingPageReader, KeptExports, MeterProvider],
) -> None:
    reader, exporter, provider = shared
    provider.get_meter("test").create_counter("coldbrew.test").add(3)
    page = PrometheusReader(reader).render()
    assert "coldbrew_test_total 3" in page
    assert exporter.exported == []
    data = reader.get_metrics_data()
    assert data is not None
    assert counted(data) == 3


def test_an_export_sends_the_same_totals_the_page_shows(
    shared: tuple[ExportingPageReader, KeptExports, MeterProvider],
) -> None:
    reader, exporter, provider = shared
    counter = provider.get_meter("test").create_counter("coldbrew.test")
    counter.add(2)
    reader.force_flush()
    counter.add(5)
    assert "coldbrew_test_total 7" in PrometheusReader(reader).render()
    reader.force_flush()
    assert [counted(data) for data in exporter.exported] == [2, 7]


@pytest.mark.parametrize(
    ("environ", "shared_reader"),
    [
        ({}, True),
        ({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "Cumulative"}, True),
        ({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}, False),
        (
            {
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": (
                    "base2_exponential_bucket_histogram"
                )
            },
            False,
        ),
    ],
)
def test_export_shares_the_page_reader_only_when_it_reads_alike(
    environ: dict[str, str], shared_reader: bool
) -> None:
    assert exports_as_the_page_reads(environ) is shared_reader
    environ = {
        **environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
        "OTEL_TRACES_EXPORTER": "none",
    }
    providers = build_providers(environ, logging.getLogger("test"))
    try:
        kind = ExportingPageReader if shared_reader else InMemoryMetricReader
        assert type(providers.page_reader) is kind
    finally:
        providers.meter_provider.shutdown(timeout_millis=100)


def test_without_otlp_the_page_has_a_reader_of_its_own() -> None:
    providers = build_providers({}, logging.getLogger("test"))
    try:
        assert type(providers.page_reader) is InMemoryMetricReader
        assert not providers.tracing
    finally:
        providers.shutdown()
