"""The shipped Grafana dashboard queries only series the gateway exports, by labels it attaches.

A small PromQL scanner pulls metric names and label names out of every query of the
dashboard; both are checked against the telemetry catalogue and the gateway's labels, so
a renamed metric or label breaks this test instead of silently emptying a panel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import exported_prometheus_names

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "dashboards" / "coldbrew.json"

# Labels the gateway attaches to every per-endpoint series.
COMMON_LABELS = frozenset({"faas_name", "cloud_account_id", "cloud_region"})
# Labels only some series carry, with the series that carry them.
SPECIFIC_LABELS: dict[str, frozenset[str]] = {
    "coldbrew_tier": frozenset(
        {"faas_coldstarts_total"}
        | {f"faas_init_duration_seconds{suffix}" for suffix in ("_bucket", "_sum", "_count")}
    ),
    "error_type": frozenset({"faas_errors_total"}),
    "quota": frozenset({"coldbrew_throttles_total"}),
    "state": frozenset({"coldbrew_workers"}),
    "kind": frozenset({"coldbrew_zygotes"}),
    "scope": frozenset({"coldbrew_concurrency_limit"}),
    "le": frozenset(name for name in exported_prometheus_names() if name.endswith("_bucket")),
}
ALLOWED_LABELS = COMMON_LABELS | SPECIFIC_LABELS.keys()

# Aggregation operators are keywords to the PromQL lexer, whatever follows them.
AGGREGATORS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "bottomk", "topk"}
    | {"quantile", "limitk", "limit_ratio"}
)
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
# Keywords followed by a parenthesised list of label names (optional after group_*).
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
FUNCTIONS = frozenset(
    {"abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh"}
    | {"avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh"}
    | {"count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month"}
    | {"deg", "delta", "deriv", "double_exponential_smoothing", "exp", "floor"}
    | {"histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile"}
    | {"histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour"}
    | {"idelta", "increase", "irate", "last_over_time", "ln", "log10", "log2", "mad_over_time"}
    | {"max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear"}
    | {"present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar"}
    | {"sgn", "sin", "sinh", "sort", "sort_desc", "sqrt", "stddev_over_time"}
    | {"stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector"}
    | {"year", "start", "end"}
)
# These name labels inside string arguments, which the scanner skips: refused rather than
# let a label name through unchecked.
LABELS_IN_STRINGS = frozenset(
    {"label_replace", "label_join", "count_values", "sort_by_label", "sort_by_label_desc"}
)

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z0-9_]*)")
_MATCH_OP = re.compile(r"=~|!~|!=|=")
_TEMPLATE_QUERY = re.compile(r"^\s*(label_values|query_result)\s*\((.*)\)\s*$", re.DOTALL)


class PromqlScanError(ValueError):
    """An expression the scanner cannot read, or will not vouch for."""


@dataclass
class Scanned:
    """Names found in one PromQL expression."""

    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    # (label, operator, value) of every matcher inside braces.
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _read_string(text: str, i: int) -> tuple[str, int]:
    """The string literal opening at ``text[i]`` and the index past it; backquoted
    strings have no escapes."""
    quote = text[i]
    j = i + 1
    chars: list[str] = []
    while j < len(text):
        c = text[j]
        if c == "\\" and quote != "`":
            chars.append(text[j : j + 2])
            j += 2
            continue
        if c == quote:
            return "".join(chars), j + 1
        chars.append(c)
        j += 1
    raise PromqlScanError(f"unterminated string at {i}: {text!r}")


def _read_matchers(text: str, i: int, found: Scanned) -> int:
    """Reads ``{label op "value", ...}`` opening at ``text[i]``; returns the index past
    the closing brace."""
    i += 1
    while True:
        i = _skip_space(text, i)
        if i < len(text) and text[i] == "}":
            return i + 1
        if i < len(text) and text[i] in "\"'`":
            # PromQL 3: a quoted name, alone a metric name, before an operator a label.
            name, i = _read_string(text, i)
            i = _skip_space(text, i)
            if not _MATCH_OP.match(text, i):
                found.metrics.add(name)
                i = _after_matcher(text, i)
                continue
        else:
            label = _LABEL.match(text, i)
            if label is None:
                raise PromqlScanError(f"expected a label name at {i}: {text!r}")
            name, i = label.group(), _skip_space(text, label.end())
        op = _MATCH_OP.match(text, i)
        if op is None:
            raise PromqlScanError(f"expected a matcher operator at {i}: {text!r}")
        i = _skip_space(text, op.end())
        if i >= len(text) or text[i] not in "\"'`":
            raise PromqlScanError(f"expected a quoted value at {i}: {text!r}")
        value, i = _read_string(text, i)
        _record_matcher(name, op.group(), value, found)
        i = _after_matcher(text, i)


def _record_matcher(name: str, op: str, value: str, found: Scanned) -> None:
    if name != "__name__":
        found.labels.add(name)
        found.matchers.append((name, op, value))
    elif op == "=":
        found.metrics.add(value)
    else:
        raise PromqlScanError(f"cannot check a metric name matched by {op}{value!r}")


def _after_matcher(text: str, i: int) -> int:
    i = _skip_space(text, i)
    if i < len(text) and text[i] == ",":
        return i + 1
    if i < len(text) and text[i] == "}":
        return i
    raise PromqlScanError(f"expected ',' or '}}' at {i}: {text!r}")


def _read_label_list(text: str, i: int, found: Scanned, *, required: bool) -> int:
    """Reads ``(label, ...)`` at or after ``text[i]``, if there, into ``found.labels``."""
    i = _skip_space(text, i)
    if i >= len(text) or text[i] != "(":
        if required:
            raise PromqlScanError(f"expected a label list at {i}: {text!r}")
        return i
    i += 1
    while True:
        i = _skip_space(text, i)
        if i < len(text) and text[i] == ")":
            return i + 1
        if i < len(text) and text[i] in "\"'`":
            name, i = _read_string(text, i)
        else:
            label = _LABEL.match(text, i)
            if label is None:
                raise PromqlScanError(f"expected a label name at {i}: {text!r}")
            name, i = label.group(), label.end()
        found.labels.add(name)
        i = _skip_space(text, i)
        if i < len(text) and text[i] == ",":
            i += 1
        elif i >= len(text) or text[i] != ")":
            raise PromqlScanError(f"expected ',' or ')' at {i}: {text!r}")


def _skip_brackets(text: str, i: int) -> int:
    """Skips a range or subquery ``[5m]``, ``[$__rate_interval]``, ``[1h:1m]``."""
    end = text.find("]", i)
    if end < 0:
        raise PromqlScanError(f"unclosed '[' at {i}: {text!r}")
    return end + 1


def _classify(word: str, text: str, i: int, found: Scanned) -> int:
    """Files the identifier ``word`` that ended at ``text[i]``; returns where to go on."""
    lowered = word.lower()
    if lowered in LABEL_LIST_KEYWORDS:
        return _read_label_list(text, i, found, required=lowered in {"by", "without"})
    if lowered in KEYWORDS or lowered in AGGREGATORS:
        return i
    after = _skip_space(text, i)
    calls = after < len(text) and text[after] == "("
    if word in LABELS_IN_STRINGS:
        raise PromqlScanError(f"{word}() takes label names as strings, which are not checked")
    if calls and word not in FUNCTIONS:
        raise PromqlScanError(f"unknown function {word}()")
    if not calls:
        found.metrics.add(word)
    return i


def scan_promql(text: str) -> Scanned:
    """Metric names, label names and matchers of one PromQL expression, in which Grafana
    variables may appear only inside strings and ranges.

    Raises PromqlScanError on what it cannot read or will not vouch for: unknown
    functions, functions taking label names as strings, regex ``__name__`` matchers.
    """
    found = Scanned()
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace() or c in "()+-*/%^=!<>,@":
            i += 1
        elif c in "\"'`":
            _, i = _read_string(text, i)
        elif c == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
        elif c == "{":
            i = _read_matchers(text, i, found)
        elif c == "[":
            i = _skip_brackets(text, i)
        elif (number := _NUMBER.match(text, i)) is not None:
            i = number.end()
        elif (ident := _IDENT.match(text, i)) is not None:
            i = _classify(ident.group(), text, ident.end(), found)
        else:
            raise PromqlScanError(f"unexpected {c!r} at {i}: {text!r}")
    return found


def _split_top_level(args: str) -> list[str]:
    """Splits a call's argument text at commas outside brackets and strings."""
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(args):
        c = args[i]
        if c in "\"'`":
            _, i = _read_string(args, i)
            continue
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(args[start:i])
            start = i + 1
        i += 1
    parts.append(args[start:])
    return [part.strip() for part in parts]


def scan_variable_query(query: str) -> Scanned:
    """Names in a Grafana Prometheus variable query: ``label_values(selector, label)``,
    ``label_values(label)`` or ``query_result(expr)``.

    Raises PromqlScanError for any other form.
    """
    call = _TEMPLATE_QUERY.match(query)
    if call is None:
        raise PromqlScanError(f"unsupported variable query {query!r}")
    kind, args = call.group(1), _split_top_level(call.group(2))
    if kind == "query_result" and len(args) == 1:
        return scan_promql(args[0])
    if kind == "label_values" and 1 <= len(args) <= 2 and _LABEL.fullmatch(args[-1]):
        found = scan_promql(args[0]) if len(args) == 2 else Scanned()
        found.labels.add(args[-1])
        return found
    raise PromqlScanError(f"unsupported variable query {query!r}")


def expression_problems(found: Scanned, exported: frozenset[str]) -> list[str]:
    """Why the names of one expression would not match what the gateway exports: series
    not on its Prometheus page, labels it never attaches, or attaches only to series this
    expression does not read."""
    problems = [f"series {name} is not exported" for name in sorted(found.metrics - exported)]
    for label in sorted(found.labels):
        if label not in ALLOWED_LABELS:
            problems.append(f"label {label} is never attached")
        elif label in SPECIFIC_LABELS and not found.metrics & SPECIFIC_LABELS[label]:
            problems.append(f"label {label} is not on {sorted(found.metrics)}")
    return problems


def problems_of(query: str, exported: frozenset[str], *, variable: bool = False) -> list[str]:
    """``expression_problems`` of a panel or variable query, a scan error included."""
    try:
        found = scan_variable_query(query) if variable else scan_promql(query)
    except PromqlScanError as error:
        return [str(error)]
    if not found.metrics:
        return [f"no series in {query!r}"]
    return expression_problems(found, exported)


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) of every target of every panel."""
    for panel in walk_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"{panel.get('title')}/{target.get('refId')}", target["expr"]


def panel_legends(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, legendFormat, expr) of every target that has both."""
    for panel in walk_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if "expr" in target and target.get("legendFormat"):
                where = f"{panel.get('title')}/{target.get('refId')}"
                yield where, target["legendFormat"], target["expr"]


def variable_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, query) of every query variable, as a string or in Grafana's object form."""
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        yield f"${variable['name']}", str(text)
        if variable.get("definition"):
            yield f"${variable['name']}/definition", str(variable["definition"])


def _load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


BOARD = _load()
EXPORTED = exported_prometheus_names()
PANEL_QUERIES = list(panel_queries(BOARD))
VARIABLE_QUERIES = list(variable_queries(BOARD))
PANEL_LEGENDS = list(panel_legends(BOARD))
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def test_dashboard_is_grafana_schema_39_with_its_variables() -> None:
    """The dashboard is schema 39, with a Prometheus datasource variable and a
    multi-select endpoint variable over faas_name that includes All."""
    assert BOARD["schemaVersion"] == 39
    variables = {variable["name"]: variable for variable in BOARD["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    endpoint = variables["endpoint"]
    assert endpoint["type"] == "query"
    assert endpoint["datasource"] == DATASOURCE
    assert endpoint["multi"] is True
    assert endpoint["includeAll"] is True
    assert ("$endpoint", "label_values(faas_invocations_total, faas_name)") in VARIABLE_QUERIES


def test_every_panel_has_a_title_a_unique_id_and_the_datasource() -> None:
    """Every panel, rows and nested panels included, has a title, an id no other panel
    has, and the Prometheus datasource variable, as do its targets."""
    panels = list(walk_panels(BOARD["panels"]))
    ids = [panel.get("id") for panel in panels]
    assert all(isinstance(panel_id, int) for panel_id in ids)
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert isinstance(panel.get("title"), str), panel
        assert panel["title"].strip(), panel
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource") == DATASOURCE, panel["title"]


@pytest.mark.parametrize(
    ("where", "expr"),
    PANEL_QUERIES + VARIABLE_QUERIES,
    ids=[where for where, _ in PANEL_QUERIES + VARIABLE_QUERIES],
)
def test_query_names_only_exported_series_and_attached_labels(where: str, expr: str) -> None:
    """Each query reads series the gateway exports, by labels it attaches to them."""
    variable = where.startswith("$")
    assert problems_of(expr, EXPORTED, variable=variable) == []


@pytest.mark.parametrize(("where", "expr"), PANEL_QUERIES, ids=[w for w, _ in PANEL_QUERIES])
def test_endpoint_variable_is_matched_as_a_regex(where: str, expr: str) -> None:
    """$endpoint is multi-valued, so every matcher using it is a regex match."""
    for label, op, value in scan_promql(expr).matchers:
        if "$endpoint" in value or "${endpoint" in value:
            assert (label, op) == ("faas_name", "=~"), where


@pytest.mark.parametrize(
    ("where", "legend", "expr"), PANEL_LEGENDS, ids=[where for where, _, _ in PANEL_LEGENDS]
)
def test_legends_name_labels_their_query_keeps(where: str, legend: str, expr: str) -> None:
    """Each {{label}} of a legend is one its query groups or matches by, so no legend
    renders empty (every query here aggregates by what it shows)."""
    kept = scan_promql(expr).labels
    for label in re.findall(r"\{\{\s*([^}\s]+)\s*\}\}", legend):
        assert label in kept, where


def test_dashboard_charts_the_gateways_main_series() -> None:
    """The panels read invocations, errors, both latencies, cold starts, concurrency and
    its quota, throttles, workers, zygotes, usage and payload bytes."""
    used: set[str] = set()
    for _, expr in PANEL_QUERIES:
        used |= scan_promql(expr).metrics
    assert used >= {
        "faas_invocations_total",
        "faas_errors_total",
        "faas_invoke_duration_seconds_bucket",
        "coldbrew_overhead_duration_seconds_bucket",
        "faas_coldstarts_total",
        "faas_init_duration_seconds_bucket",
        "coldbrew_concurrency",
        "coldbrew_concurrency_limit",
        "coldbrew_throttles_total",
        "coldbrew_workers",
        "coldbrew_zygotes",
        "coldbrew_usage_gb_seconds_total",
        "coldbrew_request_bytes_total",
        "coldbrew_response_bytes_total",
    }
    stats = [panel for panel in walk_panels(BOARD["panels"]) if panel["type"] == "stat"]
    assert [panel["title"] for panel in stats] == ["Invocations in range"]


@pytest.mark.parametrize(
    ("expr", "metrics", "labels"),
    [
        (
            'sum by (faas_name) (rate(faas_invocations_total{faas_name=~"coldbrew_zygotes"}[5m]))',
            {"faas_invocations_total"},
            {"faas_name"},
        ),
        (
            "sum(rate(faas_errors_total[$__rate_interval] offset 1h)) without (error_type)",
            {"faas_errors_total"},
            {"error_type"},
        ),
        (
            "coldbrew_concurrency / on (faas_name) group_left coldbrew_concurrency_limit > 0.9",
            {"coldbrew_concurrency", "coldbrew_concurrency_limit"},
            {"faas_name"},
        ),
        (
            "histogram_quantile(1e-3, sum(rate(x_bucket[1h:1m])) BY (le)) @ end()",
            {"x_bucket"},
            {"le"},
        ),
        (
            '{__name__="coldbrew_workers", state!="idle"} # a "comment"',
            {"coldbrew_workers"},
            {"state"},
        ),
        (
            "max_over_time(coldbrew_zygotes[5m])\nand ignoring(kind) vector(1)",
            {"coldbrew_zygotes"},
            {"kind"},
        ),
    ],
)
def test_scanner_separates_metrics_from_labels_strings_and_functions(
    expr: str, metrics: set[str], labels: set[str]
) -> None:
    """The scanner finds exactly the metric and label names, past strings, ranges,
    offsets, numbers, comments, grouping clauses and functions."""
    found = scan_promql(expr)
    assert found.metrics == metrics
    assert found.labels == labels


@pytest.mark.parametrize(
    ("expr", "variable", "problem"),
    [
        ("rate(faas_invocation_total[5m])", False, "series faas_invocation_total is not exported"),
        (
            "histogram_quantile(0.99, rate(faas_invoke_duration_seconds[5m]))",
            False,
            "series faas_invoke_duration_seconds is not exported",
        ),
        (
            "sum by (endpoint) (rate(faas_invocations_total[5m]))",
            False,
            "label endpoint is never attached",
        ),
        (
            'faas_invocations_total{faas_nam=~"$endpoint"}',
            False,
            "label faas_nam is never attached",
        ),
        (
            "sum by (coldbrew_tier) (rate(faas_invocations_total[5m]))",
            False,
            "label coldbrew_tier is not on ['faas_invocations_total']",
        ),
        ("sum by (le) (rate(faas_errors_total[5m]))", False, "label le is not on"),
        ("rat(faas_invocations_total[5m])", False, "unknown function rat()"),
        ('label_replace(coldbrew_workers, "x", "$1", "state", "(.*)")', False, "as strings"),
        ('{__name__=~"faas_.*"}', False, "cannot check a metric name"),
        ("sum(rate([5m]))", False, "no series"),
        ("label_values(faas_invocation_total, faas_name)", True, "faas_invocation_total"),
        ("label_values(faas_invocations_total, endpoint)", True, "label endpoint"),
        ("metrics(faas_.*)", True, "unsupported variable query"),
    ],
)
def test_wrong_queries_are_caught(expr: str, variable: bool, problem: str) -> None:
    """The check the dashboard passes rejects a misspelt series, a bare histogram name,
    unknown or misplaced labels, unknown functions and unreadable queries."""
    problems = problems_of(expr, EXPORTED, variable=variable)
    assert any(problem in found for found in problems), problems


def test_panels_nested_in_collapsed_rows_are_checked() -> None:
    """Queries of panels inside a collapsed row are found, so they are checked too."""
    board = {
        "panels": [
            {"type": "row", "title": "r", "id": 1, "collapsed": True, "panels": [
                {"type": "timeseries", "title": "t", "id": 2, "targets": [
                    {"refId": "A", "expr": "rate(faas_invocation_total[5m])"}
                ]},
            ]},
        ]
    }  # fmt: skip
    assert [where for where, _ in panel_queries(board)] == ["t/A"]
    assert [problems_of(expr, EXPORTED) for _, expr in panel_queries(board)] == [
        ["series faas_invocation_total is not exported"]
    ]
