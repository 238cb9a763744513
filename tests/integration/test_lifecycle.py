"""The gateway process's life: start-up refusals, graceful stop, crash, and the clients
users drive it with (the coldbrew CLI, the AWS CLI, curl)."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    DEMO_SAMPLE,
    REPO,
    aws_cli_env,
    clean_env,
    is_running,
    running_gateway,
    toml_config,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def serve_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=REPO,
    )


def test_dev_credentials_refuse_a_public_address(tmp_path: Path) -> None:
    """With no credentials configured, binding beyond loopback is refused with a reason."""
    result = serve_command("--host", "0.0.0.0", "--port", "0", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "server.host" in result.stderr
    assert "[[auth.credentials]]" in result.stderr


def test_unknown_config_key_is_refused_naming_it(tmp_path: Path) -> None:
    """A config file with an unknown key stops the start with the key named."""
    config = tmp_path / "c.toml"
    config.write_text("[pool]\nidle_timeout_seconds = 3\n")
    result = serve_command("--config", str(config))
    assert result.returncode == 2
    assert "pool.idle_timeout_seconds" in result.stderr


def test_bad_config_value_is_refused_naming_it(tmp_path: Path) -> None:
    """A config value out of range stops the start with the key named."""
    config = tmp_path / "c.toml"
    config.write_text(
        f'[[endpoints]]\nname = "e"\nmodel_dir = "{tmp_path}"\nmemory_size_mb = 1500\n'
    )
    result = serve_command("--config", str(config))
    assert result.returncode == 2
    assert "endpoints[0].memory_size_mb" in result.stderr


def test_health_answers_once_serving(tmp_path: Path) -> None:
    """GET /health answers 200 without a signature once the gateway accepts invocations."""
    config = toml_config(tmp_path / "state", endpoints={})
    with (
        running_gateway(tmp_path, config) as gw,
        urllib.request.urlopen(f"{gw.url}/health", timeout=10) as response,
    ):
        assert response.status == 200


def test_sigterm_finishes_in_flight_then_stops_workers(tmp_path: Path) -> None:
    """SIGTERM during an invocation: the invocation still completes, then every worker
    exits and the gateway exits 0."""
    config = toml_config(tmp_path / "state", endpoints={"behave": {}})
    with running_gateway(tmp_path, config) as gw, concurrent.futures.ThreadPoolExecutor(1) as ex:
        client = gw.runtime()
        pending = ex.submit(
            lambda: client.invoke_endpoint(EndpointName="behave", Body=b"sleep:2")["Body"].read()
        )
        workers = wait_until(gw.worker_pids, timeout=30, what="the worker to start")
        gw.proc.send_signal(signal.SIGTERM)
        assert pending.result(timeout=30) == b"slept"
        assert gw.proc.wait(timeout=30) == 0
        assert not any(is_running(pid) for pid in workers)
        assert "stopping: finishing in-flight invocations" in gw.log()


def test_sigkill_of_the_gateway_leaves_no_worker(tmp_path: Path) -> None:
    """Even a SIGKILLed gateway takes its workers with it (parent-death signal)."""
    config = toml_config(tmp_path / "state", endpoints={"behave": {"max_concurrency": 3}})
    with running_gateway(tmp_path, config) as gw:
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            calls = [
                ex.submit(lambda: gw.runtime().invoke_endpoint(EndpointName="behave", Body=b"pid"))
                for _ in range(3)
            ]
            for call in calls:
                call.result(timeout=30)
        workers = wait_until(gw.worker_pids, timeout=10, what="warm workers")
        busy: Any = concurrent.futures.ThreadPoolExecutor(1)
        busy.submit(lambda: gw.runtime().invoke_endpoint(EndpointName="behave", Body=b"sleep:30"))
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(timeout=10)
        wait_until(
            lambda: not any(is_running(pid) for pid in workers),
            timeout=10,
            what="every worker to die with the gateway",
        )
        busy.shutdown(wait=False, cancel_futures=True)


def test_ctrl_c_reaches_only_the_gateway(tmp_path: Path) -> None:
    """Workers run in their own session, so a terminal's SIGINT to the foreground process
    group cannot kill a worker mid-request before the gateway drains."""
    config = toml_config(tmp_path / "state", endpoints={"behave": {}})
    with running_gateway(tmp_path, config) as gw:
        gw.runtime().invoke_endpoint(EndpointName="behave", Body=b"pid")
        (worker,) = gw.worker_pids()
        assert os.getsid(worker) != os.getsid(gw.pid)
        assert os.getpgid(worker) == worker


def test_coldbrew_cli_invokes(tmp_path: Path) -> None:
    """`coldbrew invoke NAME BODY` prints the model's answer; errors exit 1 with the code."""
    config = toml_config(tmp_path / "state", endpoints={"echo": {}})
    with running_gateway(tmp_path, config) as gw:
        command = [sys.executable, "-m", "gateway", "invoke", "--endpoint-url", gw.url]
        ok = subprocess.run(
            [*command, "echo", '{"x": 1}'], capture_output=True, text=True, timeout=30
        )
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == '{"x": 1}'
        body_file = tmp_path / "body.json"
        body_file.write_text("[1, 2, 3]")
        from_file = subprocess.run(
            [*command, "echo", f"@{body_file}"], capture_output=True, text=True, timeout=30
        )
        assert from_file.stdout.strip() == "[1, 2, 3]"
        missing = subprocess.run(
            [*command, "nope", "{}"], capture_output=True, text=True, timeout=30
        )
        assert missing.returncode == 1
        assert "ValidationError" in missing.stderr


def test_aws_cli_invokes(tmp_path: Path) -> None:
    """`aws sagemaker-runtime invoke-endpoint --endpoint-url ...` works unchanged."""
    config = toml_config(tmp_path / "state", endpoints={"echo": {}})
    with running_gateway(tmp_path, config) as gw:
        outfile = tmp_path / "out.json"
        env = aws_cli_env(tmp_path)
        aws = Path(sys.executable).parent / "aws"
        result = subprocess.run(
            [
                str(aws),
                "sagemaker-runtime",
                "invoke-endpoint",
                "--endpoint-url",
                gw.url,
                "--endpoint-name",
                "echo",
                "--content-type",
                "application/json",
                "--body",
                '{"from": "aws-cli"}',
                str(outfile),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert outfile.read_text() == '{"from": "aws-cli"}'
        assert '"InvokedProductionVariant": "AllTraffic"' in result.stdout


def test_curl_sigv4_invokes(tmp_path: Path) -> None:
    """curl --aws-sigv4, as the README shows it, gets the model's answer."""
    config = toml_config(tmp_path / "state", endpoints={"echo": {}})
    with running_gateway(tmp_path, config) as gw:
        result = subprocess.run(
            [
                "curl",
                "-sS",
                "--fail-with-body",
                "--aws-sigv4",
                "aws:amz:us-east-1:sagemaker",
                "--user",
                "test:test",
                "-H",
                "Content-Type: application/json",
                "-d",
                "[[1, 2]]",
                f"{gw.url}/endpoints/echo/invocations",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout == "[[1, 2]]"


def test_demo_endpoint_predicts_iris_classes(tmp_path: Path) -> None:
    """`coldbrew serve --demo` trains the iris classifier and answers the sample rows."""
    config = toml_config(tmp_path / "state", endpoints={})
    with running_gateway(tmp_path, config, args=("--demo",), startup_timeout=120) as gw:
        result = gw.runtime().invoke_endpoint(
            EndpointName="demo", Body=DEMO_SAMPLE, ContentType="application/json"
        )
        assert result["Body"].read().replace(b" ", b"") == b"[0,1,2]"
        assert result["ContentType"] == "application/json"
