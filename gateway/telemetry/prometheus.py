"""The ``/metrics`` page: the gateway's OpenTelemetry instruments in Prometheus text format.

A :class:`PrometheusReader` reads the ``MeterProvider``'s instruments through a reader
(its own, or the one OTLP export shares; see ``readers``). Each
:meth:`PrometheusReader.render` collects on the spot and writes the text exposition
format 0.0.4; no export happens on the way, so a slow or unreachable collector never
delays a scrape.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from opentelemetry.sdk.metrics.export import (
    Gauge,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.util.types import AnyValue, Attributes

from gateway.telemetry.catalog import CATALOG, Kind, MetricSpec, prometheus_name
from gateway.telemetry.readers import ExportingPageReader

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_INVALID_NAME_CHARS: Final = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS: Final = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(slots=True)
class _Family:
    """One metric family of the page: its type, help text and rendered series."""

    prom_type: str
    help: str
    # Rendered label text -> the series' sample lines (several for a histogram).
    series: dict[str, list[str]] = field(default_factory=dict)


class PrometheusReader:
    """Renders every instrument of the ``MeterProvider`` that ``reader`` is attached to.

    ``reader`` must read every instrument with cumulative temporality, as Prometheus
    expects running totals (``readers.cumulative_reader`` makes such a reader).
    """

    def __init__(self, reader: InMemoryMetricReader | ExportingPageReader) -> None:
        self._reader = reader
        self._catalogued = {spec.name: prometheus_name(spec) for spec in CATALOG}

    def render(self) -> str:
        """Collect now and return the page in text format 0.0.4 (empty if nothing is
        recorded yet or the reader is not attached to a provider).

        Families are sorted by name, each with ``# HELP`` (when the instrument has a
        description) and ``# TYPE``; series within a family are sorted by labels, and
        labels by name, except a histogram's ``le``, which comes last as other clients
        write it.
        Collection runs the observable instruments' callbacks on the calling thread, so
        those must be quick and thread-safe. Exponential histograms, which the text
        format cannot express, are left out. When two instruments map to one name the
        first seen wins on a type clash and on a duplicate label set. Raises the SDK's
        ``MetricsTimeoutError`` if the callbacks overrun its collection deadline.
        """
        page = _Page(self._catalogued)
        data = self._reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    page.add(metric)
        return page.text()


class _Page:
    """One render's families, with memos of what every series repeats."""

    def __init__(self, catalogued: dict[str, str]) -> None:
        self._catalogued = catalogued
        self._families: dict[str, _Family] = {}
        self._label_names: dict[str, str] = {}
        self._bounds: dict[tuple[float, ...], list[str]] = {}

    def add(self, metric: Metric) -> None:
        described = _describe(metric)
        if described is None:
            return
        kind, prom_type = described
        name = self._catalogued.get(metric.name) or _derived_name(metric, kind)
        family = self._families.setdefault(name, _Family(prom_type, metric.description or ""))
        if family.prom_type != prom_type:
            return
        for point in metric.data.data_points:
            labels = self._labels(point.attributes)
            if labels in family.series:
                continue
            if isinstance(point, HistogramDataPoint):
                bounds = self._bound_labels(point.explicit_bounds)
                family.series[labels] = _histogram_lines(name, labels, point, bounds)
            elif isinstance(point, NumberDataPoint):
                family.series[labels] = [f"{name}{_braces(labels)} {_format_value(point.value)}"]

    def text(self) -> str:
        return "".join(_family_text(name, self._families[name]) for name in sorted(self._families))

    def _labels(self, attributes: Attributes) -> str:
        """``key="value"`` pairs sorted by sanitized key, comma-joined, without braces."""
        if not attributes:
            return ""
        pairs = sorted((self._label_name(key), key) for key in attributes)
        texts: list[str] = []
        previous = ""
        for label, key in pairs:
            value = _escape_label(_label_value(attributes[key]))
            if label == previous:
                # Keys equal once sanitized (a.b, a_b) share one label, values joined.
                texts[-1] = f'{texts[-1][:-1]};{value}"'
            else:
                texts.append(f'{label}="{value}"')
            previous = label
        return ",".join(texts)

    def _label_name(self, key: str) -> str:
        label = self._label_names.get(key)
        if label is None:
            label = _INVALID_LABEL_CHARS.sub("_", key)
            if label[:1].isdigit():
                label = f"_{label}"
            self._label_names[key] = label
        return label

    def _bound_labels(self, explicit_bounds: Sequence[float]) -> list[str]:
        bounds = tuple(explicit_bounds)
        labels = self._bounds.get(bounds)
        if labels is None:
            labels = self._bounds[bounds] = [_format_bound(bound) for bound in bounds]
        return labels


def _describe(metric: Metric) -> tuple[Kind, str] | None:
    """The metric's catalogue kind and Prometheus type, or None if the page cannot show it."""
    data = metric.data
    if isinstance(data, Sum):
        return ("counter", "counter") if data.is_monotonic else ("updowncounter", "gauge")
    if isinstance(data, Gauge):
        return "gauge", "gauge"
    if isinstance(data, HistogramData):
        return "histogram", "histogram"
    return None


def _derived_name(metric: Metric, kind: Kind) -> str:
    """The catalogue's naming rule applied to an instrument the catalogue does not list."""
    name = _INVALID_NAME_CHARS.sub("_", metric.name)
    if name[:1].isdigit():
        name = f"_{name}"
    return prometheus_name(MetricSpec(name, kind, metric.unit or "", metric.description or ""))


def _label_value(value: AnyValue) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    # Sequences and maps, as OpenTelemetry's Prometheus conventions write them: JSON.
    return json.dumps(value, default=str)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _braces(labels: str) -> str:
    return f"{{{labels}}}" if labels else ""


def _histogram_lines(
    name: str, labels: str, point: HistogramDataPoint, bounds: list[str]
) -> list[str]:
    prefix = f"{labels}," if labels else ""
    lines: list[str] = []
    running = 0
    for bound, count in zip(bounds, point.bucket_counts, strict=False):
        running += count
        lines.append(f'{name}_bucket{{{prefix}le="{bound}"}} {running}')
    lines.append(f'{name}_bucket{{{prefix}le="+Inf"}} {point.count}')
    lines.append(f"{name}_sum{_braces(labels)} {_format_value(point.sum)}")
    lines.append(f"{name}_count{_braces(labels)} {point.count}")
    return lines


def _family_text(name: str, family: _Family) -> str:
    header = f"# HELP {name} {_escape_help(family.help)}\n" if family.help else ""
    header += f"# TYPE {name} {family.prom_type}\n"
    samples = (line for labels in sorted(family.series) for line in family.series[labels])
    return header + "".join(f"{line}\n" for line in samples)


def _format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _format_bound(bound: float) -> str:
    """A bucket bound as Go's shortest ``%g`` writes it (``0.005``, ``1``, ``1e+06``), so
    ``le`` values match those of other Prometheus clients."""
    if not math.isfinite(bound):
        return _format_value(bound)
    if bound == 0:
        return "0"
    sign, digit_tuple, exponent = Decimal(repr(bound)).normalize().as_tuple()
    if not isinstance(exponent, int):  # only NaN and infinities, handled above
        return repr(bound)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent - 1  # the exponent in scientific notation
    minus = "-" if sign else ""
    if point < -4 or point >= 6:
        mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
        return f"{minus}{mantissa}e{'-' if point < 0 else '+'}{abs(point):02d}"
    if point < 0:
        return f"{minus}0.{'0' * (-point - 1)}{digits}"
    if len(digits) <= point + 1:
        return f"{minus}{digits}{'0' * (point + 1 - len(digits))}"
    return f"{minus}{digits[: point + 1]}.{digits[point + 1 :]}"
