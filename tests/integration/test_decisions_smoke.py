"""The design-decision measurements end to end: a quick run reports every row, each side
as figures or as skipped, and leaves no process behind."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, clean_env, is_running

# A quick run takes a few seconds; the margin is for a loaded machine.
RUN_TIMEOUT_S = 90
ROWS = {"worker_start", "anyio_vs_asyncio", "otlp_encoding", "prometheus_page", "sigv4_verify"}
SIDE_BY_SIDE_KEYS = {"ours", "theirs", "theirs_name", "unit", "ratio", "samples"}
MARKER = "COLDBREW_DECISIONS_RUN"


def run_quick(tmp_path: Path, marker: str) -> subprocess.CompletedProcess[str]:
    """Run ``decisions.py --quick`` with its temporary files under ``tmp_path`` and
    ``marker`` in its environment (which the processes it starts inherit, all but our
    zygote, whose environment is clean and whose directory is under ``tmp_path``). On a
    timeout it is killed, and what it started dies with it (the workers and the zygote by
    their parent-death signal, the fork servers when their parent's pipe closes)."""
    return subprocess.run(
        [sys.executable, "loadtests/decisions.py", "--quick"],
        cwd=REPO,
        env=clean_env(TMPDIR=str(tmp_path), **{MARKER: marker}),
        text=True,
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def leftovers(marker: str, folder: Path) -> set[int]:
    """Live processes that carry ``marker`` in their environment or run below ``folder``."""
    found = set()
    needle = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cwd = Path(str((entry / "cwd").readlink()).removesuffix(" (deleted)"))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if (needle in environ or cwd.is_relative_to(folder)) and is_running(int(entry.name)):
            found.add(int(entry.name))
    return found


def is_positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def check_side_by_side(figure: dict[str, Any], name: str) -> None:
    assert set(figure) == SIDE_BY_SIDE_KEYS, name
    assert is_positive(figure["ours"]), name
    assert is_positive(figure["theirs"]), name
    assert figure["samples"] == 3, name
    # Ratios come from the unrounded medians, the figures are rounded to 3 decimals.
    exact = figure["ours"] / figure["theirs"]
    assert figure["ratio"] == pytest.approx(exact, rel=0.05, abs=0.002), name


def check_worker_start(row: dict[str, Any]) -> None:
    assert row["heavy_preload"] == {"skipped": "--quick"}
    assert set(row["what_they_cannot_express"]) == {"forkserver", "multiprocess"}
    light = row["light_preload"]
    sides = ["ours", "forkserver"]
    if "skipped" not in light["multiprocess"]:
        sides.append("multiprocess")
    for side in sides:
        figures = light[side]
        assert figures["starts"] == 3, side
        assert is_positive(figures["p50_ms"]), side
        assert figures["p90_ms"] >= figures["p50_ms"], side
        assert is_positive(figures["first_start_ms"]), side
    assert 0 < light["ours_fork_request_p50_ms"] <= light["ours"]["p90_ms"]
    for side in sides[1:]:
        assert is_positive(light["ratio_p50"][f"ours/{side}"]), side
        assert is_positive(light["ratio_p90"][f"ours/{side}"]), side


@pytest.mark.timeout(150)
def test_quick_decisions_run_reports_every_row(tmp_path: Path) -> None:
    """``--quick`` exits 0 with one JSON document holding every row; each comparison is
    two positive medians and their ratio, or says why it was skipped; our encoder's
    request decodes to the same spans as the SDK's; no process it started is left."""
    marker = uuid.uuid4().hex
    done = run_quick(tmp_path, marker)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["quick"] is True
    rows = report["rows"]
    assert set(rows) == ROWS

    check_worker_start(rows["worker_start"])

    anyio = rows["anyio_vs_asyncio"]
    if "skipped" not in anyio:
        for name in (
            "deadline_around_a_done_await",
            "deadline_not_an_error",
            "task_group_spawn_per_task",
            "call_on_a_thread",
        ):
            check_side_by_side(anyio[name], name)

    otlp = rows["otlp_encoding"]
    assert otlp["same_spans_decoded"] is True
    assert otlp["spans_per_batch"] >= 40
    check_side_by_side(otlp["encoder_only"], "encoder_only")
    check_side_by_side(otlp["with_readable_spans_made_from_records"], "with_readable_spans")

    page = rows["prometheus_page"]
    # 50 endpoints: four histograms of 20-odd lines each per endpoint, and more.
    assert page["series"] > 50 * 4 * 20
    if "skipped" not in page["render"]:
        check_side_by_side(page["render"], "render")
    cost = page["metrics_per_invocation"]
    assert is_positive(cost["one_reader_us"])
    assert is_positive(cost["two_readers_us"])

    sigv4 = rows["sigv4_verify"]
    assert "host" in sigv4["signed_headers"]
    check_side_by_side(sigv4["verify"], "verify")

    assert leftovers(marker, tmp_path) == set()
