"""loadtests/locustfile.py, run headless by the real locust command against a real
`coldbrew serve --demo`: requests are signed and served, spurts after idle periods start
with cold starts, and a crowd beyond MaxConcurrency is throttled, never failed."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.control.demo import DEMO_MAX_CONCURRENCY
from tests.support import (
    DEMO_SAMPLE,
    REPO,
    Gateway,
    aws_cli_env,
    running_gateway,
    toml_config,
    wait_until,
)
from workers.wire.kernel import MODEL_ZYGOTE_NAME

# Training the demo at start, its first cold start (importing scikit-learn) and two
# locust runs take longer than the default 60 s on a slow machine.
pytestmark = pytest.mark.timeout(120)

LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
WARM = "InvokeEndpoint"
COLD_START = "InvokeEndpoint [cold start]"
THROTTLED = "InvokeEndpoint [throttled]"
IDLE_TIMEOUT_S = 0.3
RUN_TIME_S = 6
# Locust's own limit plus its start-up and its stop timeout, with room to spare.
LOCUST_DEADLINE_S = RUN_TIME_S + 30


def locust_env(tmp_path: Path) -> dict[str, str]:
    """The dev credentials and region, no AWS config file, and no LOCUST_* or COLDBREW_*
    setting of the host's."""
    env = aws_cli_env(tmp_path)
    return {k: v for k, v in env.items() if not k.startswith(("LOCUST_", "COLDBREW_"))}


def run_locust(
    gw: Gateway, tmp_path: Path, label: str, users: int, *args: str
) -> dict[str, dict[str, int]]:
    """Run locust headless against ``gw``; check it exits 0 (no failure, with
    --exit-code-on-error 1) and return its statistics rows: name -> counts."""
    prefix = tmp_path / label
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{RUN_TIME_S}s",
        "--stop-timeout",
        "10",
        "--host",
        gw.url,
        "--csv",
        str(prefix),
        "--only-summary",
        "--exit-code-on-error",
        "1",
        *args,
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=LOCUST_DEADLINE_S,
        env=locust_env(tmp_path),
        # Away from the repository, so no locust.conf or [tool.locust] is picked up.
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    report = f"{result.stdout}\n{result.stderr}"
    failures = Path(f"{prefix}_failures.csv")
    if failures.exists():
        report += f"\nfailures:\n{failures.read_text()}"
    assert result.returncode == 0, report
    with Path(f"{prefix}_stats.csv").open(newline="") as stats:
        rows = {
            row["Name"]: {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
            }
            for row in csv.DictReader(stats)
        }
    assert rows["Aggregated"]["failures"] == 0, report
    assert rows["Aggregated"]["requests"] > 0, report
    assert set(rows) <= {WARM, COLD_START, THROTTLED, "Aggregated"}, report
    return rows


def count(rows: dict[str, dict[str, int]], name: str) -> int:
    return rows[name]["requests"] if name in rows else 0


def prepare_demo(gw: Gateway) -> None:
    """Serve the demo twice, so it gets a model zygote and later cold starts take
    milliseconds, not an import of scikit-learn; then wait for its worker to be reaped."""
    for _ in range(2):
        answer = gw.runtime().invoke_endpoint(
            EndpointName="demo", Body=DEMO_SAMPLE, ContentType="application/json"
        )
        assert answer["Body"].read().replace(b" ", b"") == b"[0,1,2]"

    def model_zygote_ready() -> bool:
        log = gw.log()
        return any(f"model zygote {pid} ready" in log for pid in gw.children(MODEL_ZYGOTE_NAME))

    wait_until(model_zygote_ready, timeout=60, what="the demo's model zygote")
    wait_until(lambda: not gw.worker_pids(), timeout=10, what="the demo's worker to be reaped")


def test_locustfile_shows_cold_starts_and_throttles(tmp_path: Path) -> None:
    """One SpurtUser: every burst after an idle pause longer than the gateway's idle
    timeout starts with a cold start, the rest of the burst is warm. Then a crowd of
    CrowdUsers beyond the demo's MaxConcurrency: throttled, counted apart, no failure."""
    config = toml_config(tmp_path / "state", endpoints={}, pool={"idle_timeout_s": IDLE_TIMEOUT_S})
    with running_gateway(tmp_path, config, args=("--demo",), startup_timeout=120) as gw:
        prepare_demo(gw)

        burst = 3
        spurts = run_locust(
            gw,
            tmp_path,
            "spurts",
            1,
            "--idle-seconds",
            str(IDLE_TIMEOUT_S + 0.7),
            "--burst-size",
            str(burst),
            "SpurtUser",
        )
        cold = count(spurts, COLD_START)
        assert cold >= 3, spurts  # bursts at 0 s, after 1 s, after 2 s ... of a 6 s run
        assert count(spurts, WARM) == (burst - 1) * cold, spurts
        assert count(spurts, THROTTLED) == 0, spurts

        crowd_size = 2 * DEMO_MAX_CONCURRENCY + 5
        crowd = run_locust(gw, tmp_path, "crowd", crowd_size, "CrowdUser")
        assert count(crowd, THROTTLED) > 0, crowd
        assert count(crowd, COLD_START) > 0, crowd  # scaling up from zero again
        assert count(crowd, WARM) > 0, crowd
