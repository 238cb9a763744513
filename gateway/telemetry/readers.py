"""The metric readers: one for the Prometheus page, and OTLP export sharing it when it can.

The SDK aggregates every measurement once per reader attached to the MeterProvider. The
gateway records four histograms and more per invocation, so a second reader (one for the
page, one to export) would cost every invocation about 30 µs more. When the exporter
wants what the page wants (cumulative temporality, the default), one
``ExportingPageReader`` serves both: it exports on its period, and ``get_metrics_data``
collects for the page without exporting.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
    _Gauge,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExporter,
    MetricsData,
    PeriodicExportingMetricReader,
)

ALL_CUMULATIVE: dict[type, AggregationTemporality] = {
    kind: AggregationTemporality.CUMULATIVE
    for kind in (
        Counter,
        UpDownCounter,
        Histogram,
        _Gauge,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    )
}


def cumulative_reader() -> InMemoryMetricReader:
    """A pull reader with running totals, as Prometheus expects."""
    return InMemoryMetricReader(preferred_temporality=ALL_CUMULATIVE)


def exports_as_the_page_reads(environ: Mapping[str, str]) -> bool:
    """Whether the OTLP metric exporter will ask for what the page needs: cumulative
    temporality and the default histogram aggregation (the variables unset, or saying
    so)."""
    temporality = environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "")
    histograms = environ.get("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "")
    return temporality.strip().lower() in ("", "cumulative") and histograms.strip().lower() in (
        "",
        "explicit_bucket_histogram",
    )


class ExportingPageReader(PeriodicExportingMetricReader):
    """Exports to ``exporter`` every ``OTEL_METRIC_EXPORT_INTERVAL`` (its base class's
    thread), and collects for the Prometheus page on demand without exporting.

    Thread-safe: the page's collection and the export thread's may overlap (the SDK's
    storage serialises them); which one a collection is for is kept per thread.
    """

    def __init__(self, exporter: MetricExporter, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._page = threading.local()

    def get_metrics_data(self) -> MetricsData | None:
        """Collect now, for the page: the data, not exported."""
        self._page.collecting = True
        self._page.data = None
        try:
            self.collect()
            data: MetricsData | None = self._page.data
            return data
        finally:
            self._page.collecting = False
            self._page.data = None

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if getattr(self._page, "collecting", False):
            self._page.data = metrics_data
            return
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)
