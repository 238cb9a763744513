"""The benchmark harness end to end: a quick run reports every figure and no errors."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, clean_env, is_running

# A quick run takes a few seconds; the margin is for a loaded machine.
RUN_TIMEOUT_S = 50
COMPARISON_KEYS = {"coldbrew", "reference", "reference_name", "ratio", "unit"}


def run_quick_bench(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run ``bench.py --quick`` with its temporary files (and the gateway's workers' folders)
    under ``tmp_path``, so the suite's guard sees any worker left behind. On a timeout the
    bench gets SIGTERM, which it turns into stopping its servers, before it is killed."""
    out = tmp_path / "bench.json"
    argv = [sys.executable, "loadtests/bench.py", "--quick", "--out", str(out)]
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
            pytest.fail(f"bench.py --quick ran over {RUN_TIMEOUT_S} s:\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr), out


def comparisons(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "warm p50": report["warm_latency_c1"]["p50"],
        "warm p99": report["warm_latency_c1"]["p99"],
        "throughput": report["throughput_c16"],
        "cold p50": report["cold_start"]["p50"],
        "cold p90": report["cold_start"]["p90"],
        "cold max": report["cold_start"]["max"],
    }


@pytest.mark.timeout(120)
def test_quick_bench_reports_every_figure_without_errors(tmp_path: Path) -> None:
    """A quick run exits 0 with one JSON document (also written to --out) holding every
    comparison with positive figures and ratio, both memory figures, machine info, no errors,
    and leaves none of its servers running."""
    done, out = run_quick_bench(tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert json.loads(out.read_text()) == report

    assert report["ok"] is True
    assert report["errors"] == {"count": 0, "samples": []}
    for name, figure in comparisons(report).items():
        assert set(figure) == COMPARISON_KEYS, name
        assert figure["coldbrew"] > 0, name
        assert figure["reference"] > 0, name
        assert figure["ratio"] > 0, name
        assert figure["ratio"] == pytest.approx(figure["coldbrew"] / figure["reference"], rel=0.01)
    assert report["warm_latency_c1"]["requests"] > 0
    assert report["cold_start"]["endpoints"] > 0
    assert report["memory"]["gateway_idle_uss"] > 0
    assert report["memory"]["warm_worker_uss"] > 0
    assert report["machine"]["cpu_count"] == os.cpu_count()
    assert report["machine"]["python"] == platform.python_version()
    assert "git_commit" in report["machine"]

    # Each server announced itself in the log; none may outlive the run.
    pids = [int(line.split()[-1]) for line in done.stderr.splitlines() if "server pid" in line]
    assert len(pids) == 2, done.stderr[-4000:]
    assert not [pid for pid in pids if is_running(pid)]
