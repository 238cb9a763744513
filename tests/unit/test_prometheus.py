"""The /metrics page rendered from real OpenTelemetry SDK instruments."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from gateway.telemetry import catalog
from gateway.telemetry.prometheus import CONTENT_TYPE, PrometheusReader
from gateway.telemetry.readers import cumulative_reader
from tests.support import exported_prometheus_names

# --- a small parser of the text format, independent of the renderer -------------------

_SAMPLE = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_HELP = re.compile(r"# HELP (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) (?P<text>(?:[^\\\n]|\\[\\n])*)")
_TYPE = re.compile(r"# TYPE (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) (?P<type>counter|gauge|histogram)")
_UNESCAPE = re.compile(r"\\(.)")


@dataclass
class ParsedFamily:
    type: str
    help: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        assert match, f"bad label text at {text[position:]!r}"
        assert match.group(1) not in labels, f"duplicate label {match.group(1)}"
        labels[match.group(1)] = _unescape(match.group(2))
        position = match.end()
        if position < len(text):
            assert text[position] == ",", f"expected a comma in {text!r}"
            position += 1
    return labels


def _family_of(sample: str, families: dict[str, ParsedFamily]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and base in families and families[base].type == "histogram":
            return base
    return sample


def parse(page: str) -> dict[str, ParsedFamily]:
    """Parse a text-format page strictly, asserting that every line is well formed and
    every family is declared (TYPE) exactly once, before its samples."""
    assert page == "" or page.endswith("\n")
    families: dict[str, ParsedFamily] = {}
    helps: dict[str, str] = {}
    for line in page.splitlines():
        if help_match := _HELP.fullmatch(line):
            name = help_match.group("name")
            assert name not in helps, f"second HELP for {name}"
            assert name not in families, f"HELP after TYPE for {name}"
            helps[name] = _unescape(help_match.group("text"))
        elif type_match := _TYPE.fullmatch(line):
            name = type_match.group("name")
            assert name not in families, f"second TYPE for {name}"
            families[name] = ParsedFamily(type_match.group("type"), helps.get(name))
        else:
            sample = _SAMPLE.fullmatch(line)
            assert sample, f"not a sample line: {line!r}"
            family = _family_of(sample.group("name"), families)
            assert family in families, f"sample before its TYPE: {line!r}"
            labels = _parse_labels(sample.group("labels") or "")
            families[family].samples.append(
                (sample.group("name"), labels, float(sample.group("value")))
            )
    assert set(helps) <= set(families), "HELP without TYPE"
    return families


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def sdk_reader() -> InMemoryMetricReader:
    return cumulative_reader()


@pytest.fixture
def reader(sdk_reader: InMemoryMetricReader) -> PrometheusReader:
    return PrometheusReader(sdk_reader)


@pytest.fixture
def provider(sdk_reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    buckets = View(
        instrument_name="faas.init_duration",
        aggregation=ExplicitBucketHistogramAggregation(catalog.DURATION_BUCKETS),
    )
    meters = MeterProvider(metric_readers=[sdk_reader], views=[buckets], shutdown_on_exit=False)
    yield meters
    meters.shutdown()


def _lines(page: str) -> list[str]:
    return page.splitlines()


# --- tests ------------------------------------------------------------------------------


def test_content_type_is_text_format_0_0_4() -> None:
    """The page declares the text exposition format 0.0.4 in UTF-8."""
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_empty_provider_renders_empty_page(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """With no measurements the page is empty rather than holding bare headers."""
    provider.get_meter("test").create_counter("faas.invocations")
    assert reader.render() == ""


def test_catalogued_counter_renders_help_type_and_sorted_sanitized_labels(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """A catalogued counter gets its catalogue name, HELP, TYPE counter and one series."""
    counter = provider.get_meter("test").create_counter(
        catalog.INVOCATIONS.name, catalog.INVOCATIONS.unit, catalog.INVOCATIONS.description
    )
    for _ in range(3):
        counter.add(1, {"faas.name": "ep", "cloud.region": "us-east-1"})

    assert _lines(reader.render()) == [
        "# HELP faas_invocations_total Invocations admitted to an endpoint.",
        "# TYPE faas_invocations_total counter",
        'faas_invocations_total{cloud_region="us-east-1",faas_name="ep"} 3',
    ]


def test_histogram_buckets_are_cumulative_with_go_style_bounds(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """Histogram buckets count cumulatively up to +Inf, then _sum and _count follow."""
    spec = catalog.INIT_DURATION
    histogram = provider.get_meter("test").create_histogram(spec.name, spec.unit, spec.description)
    histogram.record(0.003, {"faas.name": "ep"})
    histogram.record(2.0, {"faas.name": "ep"})

    bounds = [
        ("0.001", 0), ("0.0025", 0), ("0.005", 1), ("0.01", 1), ("0.025", 1), ("0.05", 1),
        ("0.1", 1), ("0.25", 1), ("0.5", 1), ("1", 1), ("2.5", 2), ("5", 2), ("10", 2),
        ("30", 2), ("60", 2), ("120", 2), ("180", 2), ("300", 2), ("600", 2), ("+Inf", 2),
    ]  # fmt: skip
    name = "faas_init_duration_seconds"
    assert _lines(reader.render()) == [
        f"# HELP {name} {spec.description}",
        f"# TYPE {name} histogram",
        *(f'{name}_bucket{{faas_name="ep",le="{le}"}} {count}' for le, count in bounds),
        f'{name}_sum{{faas_name="ep"}} 2.003',
        f'{name}_count{{faas_name="ep"}} 2',
    ]


def test_bucket_bounds_are_formatted_like_go_clients() -> None:
    """``le`` values use Go's shortest %g: no trailing .0, exponents past 1e+06 and 1e-05."""
    wide_sdk_reader = cumulative_reader()
    wide_reader = PrometheusReader(wide_sdk_reader)
    wide = MeterProvider(
        metric_readers=[wide_sdk_reader],
        views=[
            View(
                instrument_name="sizes",
                aggregation=ExplicitBucketHistogramAggregation(
                    (1e-05, 0.0001, 0.25, 1.0, 123456.0, 1e6, 16777216.0)
                ),
            )
        ],
        shutdown_on_exit=False,
    )
    try:
        wide.get_meter("test").create_histogram("sizes").record(7)
        les = [
            labels["le"]
            for sample, labels, _ in parse(wide_reader.render())["sizes"].samples
            if sample == "sizes_bucket"
        ]
    finally:
        wide.shutdown()
    assert les == ["1e-05", "0.0001", "0.25", "1", "123456", "1e+06", "1.6777216e+07", "+Inf"]


def test_up_down_counter_and_observable_gauge_render_as_gauges(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """Non-monotonic sums and gauges are TYPE gauge, without _total, series sorted."""
    meter = provider.get_meter("test")
    concurrency = meter.create_up_down_counter(
        catalog.CONCURRENCY.name, catalog.CONCURRENCY.unit, catalog.CONCURRENCY.description
    )
    concurrency.add(2, {"faas.name": "ep"})
    concurrency.add(-1, {"faas.name": "ep"})

    def workers(_: CallbackOptions) -> Iterable[Observation]:
        return [Observation(3, {"state": "idle"}), Observation(1, {"state": "busy"})]

    meter.create_observable_gauge(
        catalog.WORKERS.name, [workers], catalog.WORKERS.unit, catalog.WORKERS.description
    )

    assert _lines(reader.render()) == [
        f"# HELP coldbrew_concurrency {catalog.CONCURRENCY.description}",
        "# TYPE coldbrew_concurrency gauge",
        'coldbrew_concurrency{faas_name="ep"} 1',
        f"# HELP coldbrew_workers {catalog.WORKERS.description}",
        "# TYPE coldbrew_workers gauge",
        'coldbrew_workers{state="busy"} 1',
        'coldbrew_workers{state="idle"} 3',
    ]


def test_awkward_label_values_and_help_text_are_escaped(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """Backslashes, quotes and newlines are escaped and survive a parse round trip."""
    awkward = 'say "hi"\\ then\nleave'
    counter = provider.get_meter("test").create_counter("odd", description="a\\b\nc")
    counter.add(1, {"reason": awkward})

    page = reader.render()
    assert _lines(page) == [
        "# HELP odd_total a\\\\b\\nc",
        "# TYPE odd_total counter",
        'odd_total{reason="say \\"hi\\"\\\\ then\\nleave"} 1',
    ]
    family = parse(page)["odd_total"]
    assert family.help == "a\\b\nc"
    assert family.samples == [("odd_total", {"reason": awkward}, 1.0)]


def test_label_keys_are_sanitized_sorted_and_collisions_joined(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """Keys become valid label names, sort by key, and keys equal once sanitized merge."""
    counter = provider.get_meter("test").create_counter("keys")
    counter.add(1, {"z": "last", "9lives": 1, "a.b": "dot", "a_b": "under", "flag": True})

    assert _lines(reader.render())[-1] == (
        'keys_total{_9lives="1",a_b="dot;under",flag="true",z="last"} 1'
    )


def test_uncatalogued_instruments_follow_the_catalogue_naming_rule(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """Names outside the catalogue get sanitized, unit-suffixed and _total for counters."""
    meter = provider.get_meter("test")
    meter.create_counter("my-app.queue/in", unit="By").add(5)
    meter.create_histogram("rpc.latency", unit="ms").record(3)
    meter.create_up_down_counter("pool.size", unit="{thing}").add(1)

    assert sorted(parse(reader.render())) == [
        "my_app_queue_in_bytes_total",
        "pool_size",
        "rpc_latency_milliseconds",
    ]


def test_catalogued_names_come_from_the_catalogue(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """Every catalogued instrument appears under exactly its ``prometheus_name``."""
    meter = provider.get_meter("test")
    for spec in catalog.CATALOG:
        if spec.kind == "counter":
            meter.create_counter(spec.name, spec.unit, spec.description).add(1)
        elif spec.kind == "updowncounter":
            meter.create_up_down_counter(spec.name, spec.unit, spec.description).add(1)
        elif spec.kind == "histogram":
            meter.create_histogram(spec.name, spec.unit, spec.description).record(1)
        else:
            meter.create_gauge(spec.name, spec.unit, spec.description).set(1)

    families = parse(reader.render())
    assert set(families) == {catalog.prometheus_name(spec) for spec in catalog.CATALOG}
    series = {sample for family in families.values() for sample, _, _ in family.samples}
    assert series == exported_prometheus_names()


def test_values_keep_their_numeric_kind_and_overflow_to_infinities(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """Integers print without a decimal point, floats by repr, overflowed sums as +-Inf."""
    meter = provider.get_meter("test")
    usage = meter.create_counter("usage")
    usage.add(0.5)
    usage.add(0.5)
    meter.create_counter("count").add(7)
    # The SDK refuses non-finite measurements, but finite ones can sum past the float range.
    huge = meter.create_counter("huge")
    sunk = meter.create_up_down_counter("sunk")
    for _ in range(2):
        huge.add(1.7e308)
        sunk.add(-1.7e308)

    assert [line for line in _lines(reader.render()) if not line.startswith("#")] == [
        "count_total 7",
        "huge_total +Inf",
        "sunk -Inf",
        "usage_total 1.0",
    ]


def test_counters_stay_cumulative_across_scrapes(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """A second render shows the running total, not the increase since the first."""
    counter = provider.get_meter("test").create_counter("hits")
    counter.add(2)
    assert _lines(reader.render())[-1] == "hits_total 2"
    counter.add(3)
    assert _lines(reader.render())[-1] == "hits_total 5"


def test_same_name_from_two_meters_forms_one_family(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """Instruments sharing a name across meters share one HELP/TYPE header."""
    provider.get_meter("one").create_counter("shared", description="Shared.").add(1, {"m": "1"})
    provider.get_meter("two").create_counter("shared", description="Shared.").add(2, {"m": "2"})

    assert _lines(reader.render()) == [
        "# HELP shared_total Shared.",
        "# TYPE shared_total counter",
        'shared_total{m="1"} 1',
        'shared_total{m="2"} 2',
    ]


def test_full_page_parses_and_families_are_sorted(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """A mixed page parses line by line, with families in name order."""
    meter = provider.get_meter("test")
    meter.create_counter("zeta").add(1, {"k": 'q"uote'})
    meter.create_histogram(catalog.INIT_DURATION.name, "s").record(0.2, {"tier": "cold"})
    meter.create_up_down_counter("alpha").add(-4)
    meter.create_gauge("mid").set(2.5, {"x.y": "back\\slash"})

    page = reader.render()
    families = parse(page)
    types = [line.split()[2] for line in _lines(page) if line.startswith("# TYPE")]
    assert types == sorted(types) == ["alpha", "faas_init_duration_seconds", "mid", "zeta_total"]
    assert families["mid"].samples == [("mid", {"x_y": "back\\slash"}, 2.5)]
    assert families["faas_init_duration_seconds"].samples[-1] == (
        "faas_init_duration_seconds_count",
        {"tier": "cold"},
        1.0,
    )


def test_page_agrees_with_the_reference_parser(
    reader: PrometheusReader, provider: MeterProvider
) -> None:
    """If the reference Prometheus client is importable, it reads the same families."""
    parser = pytest.importorskip("prometheus_client.parser")
    meter = provider.get_meter("test")
    meter.create_counter("faas.invocations").add(3, {"faas.name": 'e"p\\\n'})
    meter.create_histogram("faas.init_duration", "s").record(0.003)
    meter.create_up_down_counter("coldbrew.concurrency").add(1)

    families = {f.name: f for f in parser.text_string_to_metric_families(reader.render())}
    assert families["faas_invocations"].type == "counter"
    assert families["faas_invocations"].samples[0].labels == {"faas_name": 'e"p\\\n'}
    assert families["faas_init_duration_seconds"].type == "histogram"
    assert families["coldbrew_concurrency"].samples[0].value == 1
