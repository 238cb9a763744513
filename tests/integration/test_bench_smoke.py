"""The benchmark harness end to end: a quick run reports every figure and no errors."""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, clean_env, is_running, wait_until

# A quick run takes about 30 s; the margin is for a loaded machine.
RUN_TIMEOUT_S = 60
COMPARISON_KEYS = {"coldbrew", "reference", "reference_name", "ratio", "unit"}
# Every server the bench starts announces itself with one of these names.
SERVERS = {
    "gateway",
    "bare echo",
    "gateway-short",
    "gateway-iris-a",
    "gateway-iris-b",
    "gateway-otel-off",
    "gateway-otel-traced",
    "otlp collector",
}
TARGETS = {
    "cold_start_from_zero",
    "cold_start_model_zygote",
    "cold_start_sklearn_demo",
    "warm_latency_c1",
    "throughput_c16",
    "burst",
    "memory.gateway_idle_uss",
    "memory.warm_worker_uss",
    "cpu_share.together",
    "cpu_share.alone_1024",
    "telemetry_cost",
}


def run_bench(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run ``bench.py`` with ``options``, its temporary files (and the gateway's workers'
    folders) under ``tmp_path``, so the suite's guard sees any worker left behind. On a
    timeout the bench gets SIGTERM, which it turns into stopping its servers, before it is
    killed."""
    out = tmp_path / "bench.json"
    argv = [sys.executable, "loadtests/bench.py", *options, "--out", str(out)]
    env = clean_env(TMPDIR=str(tmp_path))
    with subprocess.Popen(
        argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                stderr = proc.communicate(timeout=30)[1]
            finally:
                proc.kill()
            pytest.fail(f"bench.py {options} ran over {RUN_TIMEOUT_S} s:\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr), out


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_positive(value: Any) -> bool:
    return is_number(value) and value > 0


def comparisons(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {
        "warm p50": report["warm_latency_c1"]["p50"],
        "warm p99": report["warm_latency_c1"]["p99"],
        "throughput": report["throughput_c16"],
    }
    for name in ("cold_start_from_zero", "cold_start_model_zygote", "cold_start_sklearn_demo"):
        found |= {f"{name} {stat}": report[name][stat] for stat in ("p50", "p90", "max")}
    return found


def processes_under(folder: Path) -> set[int]:
    """Live processes whose working directory is below ``folder`` (workers and zygotes run
    in private directories under their gateway's state)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(str((entry / "cwd").readlink()).removesuffix(" (deleted)"))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if cwd.is_relative_to(folder) and is_running(int(entry.name)):
            found.add(int(entry.name))
    return found


def check_figures(report: dict[str, Any]) -> None:
    """Every figure is present and numeric; every target is stated and judged."""
    for name, figure in comparisons(report).items():
        assert set(figure) - {"target", "met"} == COMPARISON_KEYS, name
        assert figure["coldbrew"] > 0, name
        assert figure["reference"] > 0, name
        assert figure["ratio"] > 0, name
        # Ratios are rounded to 3 decimals: a small one is off by up to 0.0005.
        exact = figure["coldbrew"] / figure["reference"]
        assert figure["ratio"] == pytest.approx(exact, rel=0.01, abs=0.0005), name
    assert report["warm_latency_c1"]["requests"] > 0
    assert report["cold_start_from_zero"]["endpoints"] > 0
    assert report["cold_start_from_zero"]["tiers"] == {
        "runtime-zygote": report["cold_start_from_zero"]["endpoints"]
    }
    assert report["cold_start_model_zygote"]["samples"] > 0
    assert report["cold_start_sklearn_demo"]["runtime_zygote_pre_imported"] > 4

    burst = report["burst"]
    assert sum(burst["statuses"].values()) == burst["requests"] == 100
    assert sum(burst["tiers"].values()) > 0
    assert is_positive(burst["p50_ms"])
    assert is_positive(burst["p99_ms"])

    memory = report["memory"]
    for key in ("gateway_idle_uss", "warm_worker_uss"):
        assert is_positive(memory[key]["mb"]), key
    for key in ("first_worker_uss", "runtime_zygote_uss", "model_zygote_uss"):
        value = memory[key]["mb"] if isinstance(memory[key], dict) else memory[key]
        assert is_positive(value), key
    assert is_number(memory["gateway_after_burst_uss"])

    cpu = report["cpu_share"]
    assert isinstance(cpu["cpu_limits_mode"], str)
    for key in ("cpu_s_1024", "cpu_s_2048", "wall_s", "ratio"):
        assert is_positive(cpu["together"][key]), key
    for key in ("cpu_s", "wall_s", "ratio"):
        assert is_positive(cpu["alone_1024"][key]), key

    check_telemetry_cost(report["telemetry_cost"])

    # Targets are judged, not required: the machine may be noisy.
    assert set(report["targets"]) == TARGETS
    assert all(isinstance(met, bool) for met in report["targets"].values())
    for name in TARGETS:
        figure = report
        for key in name.split("."):
            figure = figure[key]
        assert isinstance(figure["target"], str), name
        assert figure["met"] is report["targets"][name], name


def check_telemetry_cost(cost: dict[str, Any]) -> None:
    """Traced and untraced figures are numbers, each loss follows from them, and the
    collector received spans."""
    for key in ("throughput", "cold_start_p50_ms"):
        figure = cost[key]
        assert is_positive(figure["traced"]), key
        assert is_positive(figure["off"]), key
        assert is_number(figure["lost"]), key
    throughput, cold = cost["throughput"], cost["cold_start_p50_ms"]
    # Each gateway measured in as many windows, alternately; the rate is their mean, the
    # loss one minus the median of the rounds' traced/off ratios.
    windows = throughput["windows"]
    assert len(windows["off"]) == len(windows["traced"]) >= 2
    for kind in ("off", "traced"):
        assert all(map(is_positive, windows[kind])), kind
        mean_rate = sum(windows[kind]) / len(windows[kind])
        assert throughput[kind] == pytest.approx(mean_rate, abs=1e-2), kind
    ratios = [traced / off for traced, off in zip(windows["traced"], windows["off"], strict=True)]
    assert throughput["round_ratios"] == pytest.approx(ratios, abs=1e-3)
    assert throughput["lost"] == pytest.approx(1 - statistics.median(ratios), abs=1e-3)
    assert cold["lost"] == pytest.approx(cold["traced"] / cold["off"] - 1, abs=1e-3)
    collector = cost["collector"]
    spans = collector["by_path"]["/v1/traces"]
    assert spans["requests"] > 0
    assert spans["bytes"] > 0
    assert collector["requests"] == sum(p["requests"] for p in collector["by_path"].values())
    assert collector["bytes"] == sum(p["bytes"] for p in collector["by_path"].values())


@pytest.mark.timeout(150)
def test_quick_bench_reports_every_figure_without_errors(tmp_path: Path) -> None:
    """A quick run exits 0 with one JSON document (also written to --out) holding every
    figure as a number with its target judged, machine info and no errors, and leaves none
    of its servers, zygotes or workers running."""
    done, out = run_bench(tmp_path, "--quick")
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert json.loads(out.read_text()) == report

    assert report["ok"] is True
    assert report["errors"] == {"count": 0, "samples": []}
    check_figures(report)
    assert report["machine"]["cpu_count"] == os.cpu_count()
    assert report["machine"]["python"] == platform.python_version()
    assert "git_commit" in report["machine"]

    # Each server announced itself in the log; none may outlive the run, nor may any process
    # that ran in the bench's temporary folders.
    started = [line.split(":")[1] for line in done.stderr.splitlines() if "server pid" in line]
    assert {name.removeprefix(" started ") for name in started} == SERVERS, done.stderr[-4000:]
    pids = [int(line.split()[-1]) for line in done.stderr.splitlines() if "server pid" in line]
    assert not [pid for pid in pids if is_running(pid)]
    wait_until(lambda: not processes_under(tmp_path), timeout=15, what="no process left behind")


@pytest.mark.timeout(120)
def test_short_soak_loses_nothing_and_leaks_nothing(tmp_path: Path) -> None:
    """A few seconds of mixed load (steady, spurts after idle, over quota): every request
    answered, throttles and cold starts counted as such, no error, concurrency back to 0,
    and the gateway at rest holds exactly the file descriptors it held before."""
    done, out = run_bench(tmp_path, "--soak", "4")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    assert json.loads(out.read_text()) == report
    soak = report["soak"]
    assert soak["ok"] is True, soak
    assert soak["requests"] == soak["succeeded"] + soak["throttled"]
    assert soak["lost"] == soak["server_errors"] == soak["wrong_answers"] == 0
    assert soak["errors_by_kind"] == {}
    assert soak["requests"] > soak["throttled"] > 0
    assert sum(soak["cold_starts"].values()) > 0
    gateway = soak["gateway"]
    assert gateway["end"]["workers"] == gateway["start"]["workers"] == 0
    assert gateway["end"]["open_fds"] == gateway["start"]["open_fds"]
    assert gateway["growth"]["met"] is True
