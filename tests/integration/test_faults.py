"""Faults under load, with real processes: models that die while loading, a gateway
stopped with SIGTERM or killed with SIGKILL while invocations are in flight.

Each test checks the answer every request got, that the endpoint recovers, and that no
process outlives the gateway that started it. (Worker deaths mid-request, hung models,
model errors, client disconnects and zygote deaths have their tests beside the features:
test_runtime.py and test_zygotes.py.)
"""

from __future__ import annotations

import concurrent.futures
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tests.integration.control import control_client, deploy
from tests.support import (
    Gateway,
    is_running,
    running_gateway,
    toml_config,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def outcome(gw: Gateway, name: str, body: bytes) -> str:
    """What one invocation came to: its body, its error code, or ``closed`` when the
    connection ended with no answer."""
    try:
        answer: Any = gw.runtime().invoke_endpoint(EndpointName=name, Body=body)
        return bytes(answer["Body"].read()).decode()
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    except (ConnectionClosedError, ReadTimeoutError):
        return "closed"


@pytest.mark.parametrize("failure", ["exit", "raise"])
def test_a_model_that_fails_its_first_load_recovers(tmp_path: Path, failure: str) -> None:
    """A worker that exits hard, or whose model_fn raises, while loading: that request
    gets ModelError, the failed worker is gone, and the next request is served by a new
    one that loads the model."""
    marker = tmp_path / "first-load-happened"
    environment = {"FAIL_MARKER": str(marker), "FAIL_FIRST_LOAD": failure}
    config = toml_config(tmp_path / "state", endpoints={"failonce": {"environment": environment}})
    with running_gateway(tmp_path, config) as gw:
        assert outcome(gw, "failonce", b"first") == "ModelError"
        assert marker.exists()
        failed = set(gw.workers_seen)
        assert outcome(gw, "failonce", b"second") == "second"
        assert outcome(gw, "failonce", b"third") == "third"
        assert not any(is_running(pid) for pid in failed)
        if failure == "exit":
            assert "exited with status 9" in gw.log()
        else:
            assert "RuntimeError: the first load fails" in gw.log()


def keep_calling(gw: Gateway, name: str, stop: threading.Event) -> list[str]:
    """Invoke ``name`` back to back until ``stop`` is set or the gateway stops answering;
    return every outcome (a refused connection ends the list as ``refused``)."""
    seen: list[str] = []
    while not stop.is_set():
        try:
            seen.append(outcome(gw, name, b"ok"))
        except EndpointConnectionError:
            seen.append("refused")
            break
    return seen


def test_sigterm_under_load_drains_then_stops_everything(tmp_path: Path) -> None:
    """SIGTERM while invocations are in flight and more keep coming: every invocation
    already admitted completes with its answer, new connections are refused, the gateway
    exits 0 within its grace period, and every worker and zygote exits with it."""
    config = toml_config(
        tmp_path / "state",
        endpoints={"behave": {"max_concurrency": 4}, "echo": {"max_concurrency": 4}},
    )
    with (
        running_gateway(tmp_path, config) as gw,
        concurrent.futures.ThreadPoolExecutor(6) as pool,
    ):
        assert outcome(gw, "echo", b"ok") == "ok"
        stop = threading.Event()
        callers = [pool.submit(keep_calling, gw, "echo", stop) for _ in range(2)]
        slow = [pool.submit(outcome, gw, "behave", b"sleep:1.5") for _ in range(4)]
        wait_until(lambda: len(gw.worker_pids()) >= 5, timeout=30, what="busy workers")
        processes = set(gw.worker_pids()) | set(gw.zygote_pids())
        gw.proc.send_signal(signal.SIGTERM)
        assert [call.result(timeout=30) for call in slow] == ["slept"] * 4
        assert gw.proc.wait(timeout=30) == 0
        stop.set()
        for caller in callers:
            seen = caller.result(timeout=30)
            # A request racing the close of its keep-alive connection is never admitted.
            assert set(seen) <= {"ok", "closed", "refused"}, seen
            assert seen[-1] == "refused", seen
        with pytest.raises(EndpointConnectionError):
            gw.runtime().invoke_endpoint(EndpointName="echo", Body=b"late")
        wait_until(
            lambda: not any(is_running(pid) for pid in processes),
            timeout=10,
            what="every worker and zygote to exit with the gateway",
        )


def test_sigkill_under_load_then_restart_leaves_no_orphan(tmp_path: Path) -> None:
    """SIGKILL while invocations are in flight: every worker and zygote of the killed
    gateway dies with it; a gateway restarted on the same state dir has every endpoint
    and serves them."""
    state = tmp_path / "state"
    config = toml_config(state, endpoints={})
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    with (
        running_gateway(first_dir, config) as gw,
        concurrent.futures.ThreadPoolExecutor(4) as pool,
    ):
        sm = control_client(gw.url)
        deploy(sm, "steady", "behave")
        deploy(sm, "other", "echo")
        for name in ("steady", "steady", "other", "other"):
            assert outcome(gw, name, b"ok") == "ok"
        stop = threading.Event()
        callers = [pool.submit(keep_calling, gw, "other", stop) for _ in range(2)]
        hung = [pool.submit(outcome, gw, "steady", b"sleep:30") for _ in range(2)]
        wait_until(lambda: len(gw.worker_pids()) >= 4, timeout=30, what="busy workers")
        wait_until(gw.zygote_pids, timeout=30, what="a zygote")
        old = set(gw.worker_pids()) | set(gw.zygote_pids())
        gw.stop(signal.SIGKILL)
        stop.set()
        assert {call.result(timeout=30) for call in hung} == {"closed"}
        for caller in callers:
            assert set(caller.result(timeout=30)) <= {"ok", "closed", "refused"}
    wait_until(
        lambda: not any(is_running(pid) for pid in old),
        timeout=10,
        what="every process of the killed gateway to die",
    )
    with running_gateway(second_dir, config) as gw:
        sm = control_client(gw.url)
        for name in ("steady", "other"):
            assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
            assert outcome(gw, name, b"again") == "again"
