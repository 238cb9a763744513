"""InvokeEndpoint against a real gateway process with real workers and real boto3."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway.edge.sigv4 import Credential, sign
from tests.support import (
    Gateway,
    clean_env,
    is_running,
    running_gateway,
    runtime_client,
    toml_config,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One gateway for the tests that do not need a special configuration."""
    tmp_path = tmp_path_factory.mktemp("gw")
    config = toml_config(
        tmp_path / "state",
        endpoints={
            "echo": {"max_concurrency": 4},
            "behave": {"max_concurrency": 4, "environment": {"MODEL_SETTING": "from-config"}},
            "broken": {},
        },
        pool={"invocation_timeout_s": 2},
    )
    with running_gateway(tmp_path, config) as gw:
        yield gw


def invoke(gw: Gateway, name: str, body: bytes, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = gw.runtime().invoke_endpoint(EndpointName=name, Body=body, **kwargs)
    result["Body"] = result["Body"].read()
    return result


def error_of(gw: Gateway, name: str, body: bytes, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        gw.runtime().invoke_endpoint(EndpointName=name, Body=body, **kwargs)
    response: dict[str, Any] = caught.value.response
    return response


def test_echo_passes_body_and_content_types(gateway: Gateway) -> None:
    """The model sees the body, Content-Type and Accept, and its answer comes back whole."""
    result = invoke(
        gateway, "echo", b'{"rows": [1, 2]}', ContentType="application/json", Accept="text/csv"
    )
    assert result["Body"] == b'{"rows": [1, 2]}'
    assert result["ContentType"] == "text/csv"
    assert result["InvokedProductionVariant"] == "AllTraffic"
    assert result["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]


def test_custom_attributes_reach_the_model_and_come_back(gateway: Gateway) -> None:
    """CustomAttributes go to the model, and the model's own come back in the response."""
    result = invoke(gateway, "behave", b"attrs", CustomAttributes="trace=abc")
    assert result["Body"] == b"trace=abc"
    assert result["CustomAttributes"] == "seen=9"


def test_binary_body_round_trips(gateway: Gateway) -> None:
    """Arbitrary bytes cross the gateway and the worker unchanged."""
    payload = bytes(range(256)) * 1000
    result = invoke(gateway, "echo", payload, ContentType="application/octet-stream")
    assert result["Body"] == payload


def test_warm_worker_is_reused(gateway: Gateway) -> None:
    """Sequential calls are served by the same warm worker process."""
    first = invoke(gateway, "behave", b"pid")["Body"]
    second = invoke(gateway, "behave", b"pid")["Body"]
    assert first == second
    assert int(first) in gateway.worker_pids()


def test_model_exception_is_model_error_and_worker_stays(gateway: Gateway) -> None:
    """A handler that raises gives ModelError 424 with the model's message; the worker
    survives and serves the next call."""
    before = invoke(gateway, "behave", b"pid")["Body"]
    error = error_of(gateway, "behave", b"raise")
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 500
    assert "the model refused this input" in error["OriginalMessage"]
    assert "/aws/sagemaker/Endpoints/behave" in error["LogStreamArn"]
    assert invoke(gateway, "behave", b"pid")["Body"] == before


def test_worker_killed_mid_request(gateway: Gateway) -> None:
    """A worker that dies mid-request gives ModelError; the next call gets a fresh worker."""
    victim = int(invoke(gateway, "behave", b"pid")["Body"])
    error = error_of(gateway, "behave", b"kill")
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 0
    assert "SIGKILL" in error["OriginalMessage"]
    fresh = int(invoke(gateway, "behave", b"pid")["Body"])
    assert fresh != victim
    assert not is_running(victim)


def test_worker_exiting_mid_request(gateway: Gateway) -> None:
    """A worker that exits on its own mid-request gives ModelError naming its status."""
    error = error_of(gateway, "behave", b"exit")
    assert error["Error"]["Code"] == "ModelError"
    assert "exited with status 3" in error["OriginalMessage"]
    assert invoke(gateway, "behave", b"ok")["Body"] == b"ok"


def test_hung_worker_times_out_and_is_replaced(gateway: Gateway) -> None:
    """A worker that hangs past invocation_timeout_s is killed; its caller gets the
    real service's timeout ModelError (OriginalStatusCode 0); the next call is served."""
    hung = int(invoke(gateway, "behave", b"pid")["Body"])
    error = error_of(gateway, "behave", b"hang")
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 0
    assert "timed out while waiting for a response" in error["OriginalMessage"]
    wait_until(lambda: not is_running(hung), timeout=10, what="the hung worker to be killed")
    assert int(invoke(gateway, "behave", b"pid")["Body"]) != hung


def test_model_that_fails_to_load(gateway: Gateway) -> None:
    """A model_fn that raises gives ModelError quoting the model's own error, every time,
    and leaves no worker behind."""
    for _ in range(2):
        error = error_of(gateway, "broken", b"x")
        assert error["Error"]["Code"] == "ModelError"
        assert "weights file is corrupt" in error["OriginalMessage"]
    assert "RuntimeError: weights file is corrupt" in gateway.log()


def test_unknown_endpoint_is_validation_error(gateway: Gateway) -> None:
    """An endpoint that does not exist gets the real service's ValidationError wording."""
    error = error_of(gateway, "missing", b"x")
    assert error["Error"]["Code"] == "ValidationError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Message"] == "Endpoint missing of account 000000000000 not found."


@pytest.mark.parametrize("name", ["bad_name", "-lead", "a" * 64, ""])
def test_bad_endpoint_name_is_validation_error(gateway: Gateway, name: str) -> None:
    """Names outside SageMaker's pattern or length get ValidationError naming the field."""
    error = error_of(gateway, name, b"x")
    assert error["Error"]["Code"] == "ValidationError"
    assert "endpointName" in error["Error"]["Message"]


def test_request_over_payload_limit(gateway: Gateway) -> None:
    """A body over 4 MB is refused with ValidationError before any worker sees it."""
    error = error_of(gateway, "echo", b"x" * (4 * 1024 * 1024 + 1))
    assert error["Error"]["Code"] == "ValidationError"
    assert "4194304" in error["Error"]["Message"]


def test_request_at_payload_limit_is_served(gateway: Gateway) -> None:
    """A body of exactly 4 MB is served."""
    payload = b"y" * (4 * 1024 * 1024)
    assert invoke(gateway, "echo", payload)["Body"] == payload


def test_response_over_payload_limit(gateway: Gateway) -> None:
    """A model answer over 4 MB becomes ModelError, and the endpoint keeps serving."""
    error = error_of(gateway, "behave", f"big:{4 * 1024 * 1024 + 1}".encode())
    assert error["Error"]["Code"] == "ModelError"
    assert "4194304" in error["OriginalMessage"]
    assert invoke(gateway, "behave", b"ok")["Body"] == b"ok"


def test_unsigned_request_is_refused(gateway: Gateway) -> None:
    """A request with no signature gets 403 MissingAuthenticationTokenException."""
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /endpoints/echo/invocations HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"
        )
        reply = b"".join(iter(lambda: conn.recv(65536), b""))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403")
    assert b"x-amzn-ErrorType: MissingAuthenticationTokenException" in head
    assert b"MissingAuthenticationTokenException" in body


@pytest.mark.parametrize(
    ("access_key", "secret", "code"),
    [
        ("test", "wrong-secret", "InvalidSignatureException"),
        ("nobody", "test", "UnrecognizedClientException"),
    ],
)
def test_bad_credentials_are_refused(
    gateway: Gateway, access_key: str, secret: str, code: str
) -> None:
    """A wrong secret or unknown key gets a 403 and never reaches a worker."""
    client = runtime_client(gateway.url, access_key=access_key, secret_key=secret)
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint(EndpointName="behave", Body=b"print:must-not-run")
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "must-not-run" not in gateway.log()


def test_worker_output_is_logged_with_endpoint_and_worker(gateway: Gateway) -> None:
    """What a model prints reaches the gateway log, tagged with endpoint and worker pid."""
    pid = int(invoke(gateway, "behave", b"pid")["Body"])
    invoke(gateway, "behave", b"print:hello-from-the-model")
    wait_until(
        lambda: f"behave: worker {pid}: hello-from-the-model" in gateway.log(),
        timeout=10,
        what="the model's output in the log",
    )


def test_worker_environment_is_clean(tmp_path: Path) -> None:
    """Workers get the container Environment and never the gateway's secrets."""
    config = toml_config(
        tmp_path / "state", endpoints={"behave": {"environment": {"MODEL_SETTING": "on"}}}
    )
    env = clean_env(AWS_SECRET_ACCESS_KEY="gateway-secret", COLDBREW_PRIVATE="private")
    with running_gateway(tmp_path, config, env=env) as gw:
        seen = json.loads(invoke(gw, "behave", b"env")["Body"])
    assert seen["MODEL_SETTING"] == "on"
    assert "AWS_SECRET_ACCESS_KEY" not in seen
    assert "COLDBREW_PRIVATE" not in seen
    assert seen["TMPDIR"] == seen["HOME"]
    assert not Path(seen["TMPDIR"]).exists(), "the private directory outlived its worker"


def test_max_concurrency_throttles_exactly(tmp_path: Path) -> None:
    """MaxConcurrency 2 and a 3 s model: 6 concurrent calls give exactly 2 answers and 4
    ThrottlingException; a call afterwards is served."""
    config = toml_config(tmp_path / "state", endpoints={"behave": {"max_concurrency": 2}})
    with running_gateway(tmp_path, config) as gw:
        clients = [gw.runtime() for _ in range(6)]

        def call(client: Any) -> str:
            try:
                client.invoke_endpoint(EndpointName="behave", Body=b"sleep:3")["Body"].read()
            except ClientError as error:
                return str(error.response["Error"]["Code"])
            return "ok"

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            outcomes = sorted(pool.map(call, clients))
        assert outcomes == ["ThrottlingException"] * 4 + ["ok"] * 2
        assert len(gw.workers_seen | set(gw.worker_pids())) <= 2
        assert invoke(gw, "behave", b"ok")["Body"] == b"ok"


def test_region_quota_throttles_across_endpoints(tmp_path: Path) -> None:
    """With region_concurrency 1, a busy endpoint makes another one in the same account
    and region throttle, with a message naming the region quota."""
    config = toml_config(
        tmp_path / "state",
        endpoints={"behave": {}, "echo": {}},
        quotas={"region_concurrency": 1},
    )
    with running_gateway(tmp_path, config) as gw, concurrent.futures.ThreadPoolExecutor(1) as ex:
        busy = ex.submit(invoke, gw, "behave", b"sleep:2")
        wait_until(lambda: gw.worker_pids(), timeout=30, what="the busy worker")
        error = error_of(gw, "echo", b"x")
        assert error["Error"]["Code"] == "ThrottlingException"
        assert "total serverless concurrency" in error["Error"]["Message"]
        assert busy.result(timeout=30)["Body"] == b"slept"
        assert invoke(gw, "echo", b"x")["Body"] == b"x"


def test_idle_workers_are_reaped_to_zero(tmp_path: Path) -> None:
    """With idle_timeout_s = 1, the endpoint returns to zero worker processes."""
    config = toml_config(tmp_path / "state", endpoints={"behave": {}}, pool={"idle_timeout_s": 1})
    with running_gateway(tmp_path, config) as gw:
        pid = int(invoke(gw, "behave", b"pid")["Body"])
        wait_until(lambda: not is_running(pid), timeout=10, what="the idle worker to be reaped")
        assert gw.worker_pids() == []
        # Scale from zero again.
        assert invoke(gw, "behave", b"ok")["Body"] == b"ok"


def test_client_disconnect_gives_tokens_back(tmp_path: Path) -> None:
    """A client that hangs up mid-invocation does not keep the endpoint's only token."""
    config = toml_config(tmp_path / "state", endpoints={"behave": {"max_concurrency": 1}})
    with running_gateway(tmp_path, config) as gw:
        url = f"{gw.url}/endpoints/behave/invocations"
        headers = sign(
            method="POST",
            url=url,
            headers={},
            body=b"sleep:1",
            credential=Credential("test", "test", ""),
            region="us-east-1",
            now=time.time(),
        )
        host, port = gw.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            lines = [f"{k}: {v}" for k, v in headers.items()]
            request = "POST /endpoints/behave/invocations HTTP/1.1\r\n" + "\r\n".join(lines)
            conn.sendall(request.encode() + b"\r\nContent-Length: 7\r\n\r\nsleep:1")
            wait_until(lambda: gw.worker_pids(), timeout=30, what="the worker to start")

        def served() -> bool:
            try:
                return bool(invoke(gw, "behave", b"ok")["Body"] == b"ok")
            except ClientError as error:
                if error.response["Error"]["Code"] != "ThrottlingException":
                    raise
                return False

        wait_until(served, timeout=30, interval=0.2, what="the token to come back")


def test_setup_deadline_gives_model_not_ready(tmp_path: Path) -> None:
    """A cold start that is not READY within setup_timeout_s gets 429
    ModelNotReadyException, and the half-started worker is killed."""
    config = toml_config(
        tmp_path / "state",
        endpoints={"slowload": {"environment": {"LOAD_SECONDS": "30"}}},
        pool={"setup_timeout_s": 1},
    )
    with running_gateway(tmp_path, config) as gw:
        error = error_of(gw, "slowload", b"x")
        assert error["Error"]["Code"] == "ModelNotReadyException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
        wait_until(lambda: not gw.worker_pids(), timeout=10, what="the slow worker to be killed")


def test_first_request_waits_for_a_slow_cold_start(tmp_path: Path) -> None:
    """The first request to a zero-scaled endpoint is held until the worker is READY,
    not rejected, even when loading takes a while."""
    config = toml_config(
        tmp_path / "state", endpoints={"slowload": {"environment": {"LOAD_SECONDS": "1.5"}}}
    )
    with running_gateway(tmp_path, config) as gw:
        assert invoke(gw, "slowload", b"patient")["Body"] == b"patient"
