"""The ``coldbrew`` control-plane commands (deploy, endpoints, describe, delete) as a user
runs them: subprocesses of ``python -m gateway`` against a real gateway process."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from botocore.config import Config

from tests.support import MODELS, REPO, Gateway, clean_env, running_gateway, toml_config

pytestmark = pytest.mark.timeout(120)

ECHO = MODELS / "echo"
BROKEN = MODELS / "broken"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp_path = tmp_path_factory.mktemp("cli")
    with running_gateway(tmp_path, toml_config(tmp_path / "state", endpoints={})) as gw:
        yield gw


def coldbrew(
    *args: str, url: str | None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI; ``url`` goes in ``--endpoint-url`` unless None."""
    flags = ["--endpoint-url", url] if url is not None else []
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, *flags],
        capture_output=True,
        text=True,
        timeout=100,
        env=env or clean_env(),
        cwd=REPO,
    )


def control(gw: Gateway) -> Any:
    """A real boto3 sagemaker client of the gateway, to check what the CLI did."""
    return boto3.client(
        "sagemaker",
        endpoint_url=gw.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def generated(gw: Gateway, prefix: str) -> tuple[list[str], list[str]]:
    """Names of the models and endpoint configs that start with ``prefix-``."""
    client = control(gw)
    models = client.list_models(NameContains=prefix, MaxResults=100)["Models"]
    configs = client.list_endpoint_configs(NameContains=prefix, MaxResults=100)
    return (
        sorted(m["ModelName"] for m in models if m["ModelName"].startswith(prefix + "-")),
        sorted(
            c["EndpointConfigName"]
            for c in configs["EndpointConfigs"]
            if c["EndpointConfigName"].startswith(prefix + "-")
        ),
    )


def deploy(
    gw: Gateway, source: Path | str, name: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return coldbrew("deploy", str(source), "--name", name, *extra, url=gw.url)


def test_deploy_creates_an_endpoint_that_answers(gateway: Gateway) -> None:
    """deploy of a relative model directory creates model, config and endpoint, waits
    for InService, and the endpoint then answers invocations."""
    result = deploy(gateway, "tests/models/echo", "cli-new")
    assert result.returncode == 0, result.stderr
    assert "creating model cli-new-" in result.stderr
    assert "endpoint cli-new: Creating" in result.stderr
    assert "endpoint cli-new: InService (" in result.stderr
    description = control(gateway).describe_endpoint(EndpointName="cli-new")
    assert description["EndpointStatus"] == "InService"
    model = control(gateway).describe_model(ModelName=description["EndpointConfigName"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == str(ECHO)
    invoked = coldbrew("invoke", "cli-new", '{"x": 1}', url=gateway.url)
    assert invoked.returncode == 0, invoked.stderr
    assert invoked.stdout.strip() == '{"x": 1}'


def test_redeploy_updates_and_removes_the_old_version(gateway: Gateway) -> None:
    """A second deploy updates the endpoint to the new settings, keeps it serving, and
    deletes the model and config of the first deploy."""
    assert deploy(gateway, ECHO, "cli-upd").returncode == 0
    first_models, first_configs = generated(gateway, "cli-upd")
    assert len(first_models) == len(first_configs) == 1
    result = deploy(gateway, ECHO, "cli-upd", "--memory", "1024", "--max-concurrency", "3")
    assert result.returncode == 0, result.stderr
    assert "endpoint cli-upd: Updating" in result.stderr
    description = control(gateway).describe_endpoint(EndpointName="cli-upd")
    assert description["EndpointStatus"] == "InService"
    assert description["ProductionVariants"][0]["CurrentServerlessConfig"] == {
        "MemorySizeInMB": 1024,
        "MaxConcurrency": 3,
    }
    models, configs = generated(gateway, "cli-upd")
    assert models == configs == [description["EndpointConfigName"]]
    assert models != first_models
    invoked = coldbrew("invoke", "cli-upd", "still here", url=gateway.url)
    assert invoked.stdout.strip() == "still here"


def test_endpoints_shows_a_row_per_endpoint(gateway: Gateway) -> None:
    """endpoints prints an aligned table whose row carries the serverless settings and
    the gateway's live figures."""
    result = deploy(
        gateway,
        ECHO,
        "cli-list",
        "--memory",
        "1024",
        "--max-concurrency",
        "4",
        "--provisioned",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert coldbrew("invoke", "cli-list", "hi", url=gateway.url).returncode == 0
    listed = coldbrew("endpoints", url=gateway.url)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "STATUS",
        "MEMORY",
        "MAX_CONC",
        "PROVISIONED",
        "WARM",
        "INVOCATIONS",
        "GB_S",
        "CPU",
    ]
    row = next(line.split() for line in lines[1:] if line.split()[0] == "cli-list")
    assert row[:5] == ["cli-list", "InService", "1024", "4", "1"]
    warm, invocations, gb_s = row[5], row[6], row[7]
    assert int(warm) >= 1, "the provisioned worker is warm"
    assert int(invocations) == 1
    # One echo call of at least a millisecond, billed at 1 GB: at least 0.001 GB-s.
    assert float(gb_s) >= 0.001
    # CPU in proportion to memory: 1024 / 1769 vCPUs, and how it is enforced.
    assert row[8:10] == ["0.579", "vCPU"]
    assert row[10].startswith("(")
    # Aligned: every row's STATUS column starts where the header's does.
    column = lines[0].index("STATUS")
    assert all(line[column - 2 : column] == "  " for line in lines[1:])


def test_describe_prints_json_with_readable_times(gateway: Gateway) -> None:
    """describe prints DescribeEndpoint as JSON, timestamps as ISO-8601 UTC."""
    assert deploy(gateway, ECHO, "cli-desc").returncode == 0
    result = coldbrew("describe", "cli-desc", url=gateway.url)
    assert result.returncode == 0, result.stderr
    document = orjson.loads(result.stdout)
    assert document["EndpointName"] == "cli-desc"
    assert document["EndpointStatus"] == "InService"
    assert document["CreationTime"].endswith("Z")
    assert document["CreationTime"][:4].isdigit()


def test_deploy_of_a_broken_model_fails_with_its_error(gateway: Gateway) -> None:
    """A model whose load fails leaves the endpoint Failed; deploy exits 1 and shows
    the model's own error."""
    result = deploy(gateway, BROKEN, "cli-broken")
    assert result.returncode == 1
    assert "endpoint cli-broken: Failed" in result.stderr
    assert "weights file is corrupt" in result.stderr
    again = deploy(gateway, ECHO, "cli-broken")
    assert again.returncode == 1
    assert "coldbrew delete cli-broken" in again.stderr
    assert coldbrew("delete", "cli-broken", url=gateway.url).returncode == 0


def test_failed_update_rolls_back_and_keeps_serving(gateway: Gateway) -> None:
    """Deploying a broken model over a working endpoint exits 1 with the rollback
    reason; the endpoint keeps its old version and answers; the rejected one is gone."""
    assert deploy(gateway, ECHO, "cli-rb").returncode == 0
    before = control(gateway).describe_endpoint(EndpointName="cli-rb")["EndpointConfigName"]
    result = deploy(gateway, BROKEN, "cli-rb")
    assert result.returncode == 1
    assert "Update failed and was rolled back" in result.stderr
    assert "weights file is corrupt" in result.stderr
    after = control(gateway).describe_endpoint(EndpointName="cli-rb")
    assert after["EndpointStatus"] == "InService"
    assert after["EndpointConfigName"] == before
    assert generated(gateway, "cli-rb") == ([before], [before])
    invoked = coldbrew("invoke", "cli-rb", "old version", url=gateway.url)
    assert invoked.stdout.strip() == "old version"


def test_delete_removes_the_endpoint_and_its_version(gateway: Gateway) -> None:
    """delete waits until the endpoint is gone and removes its model and config."""
    assert deploy(gateway, ECHO, "cli-del").returncode == 0
    result = coldbrew("delete", "cli-del", url=gateway.url)
    assert result.returncode == 0, result.stderr
    assert "endpoint cli-del: deleted" in result.stderr
    assert generated(gateway, "cli-del") == ([], [])
    gone = coldbrew("describe", "cli-del", url=gateway.url)
    assert gone.returncode == 1
    assert gone.stderr.startswith("coldbrew: ValidationException: Could not find endpoint")
    listed = coldbrew("endpoints", url=gateway.url)
    assert "cli-del" not in listed.stdout


def test_api_errors_print_code_and_message(gateway: Gateway) -> None:
    """An API refusal prints `coldbrew: <Code>: <Message>` and exits 1."""
    result = deploy(gateway, ECHO, "cli-mem", "--memory", "1000")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("coldbrew: ValidationException: ")
    assert "memorySizeInMB" in result.stderr
    # The refused deploy leaves nothing behind.
    assert generated(gateway, "cli-mem") == ([], [])


def test_control_url_comes_from_the_sagemaker_variable(gateway: Gateway) -> None:
    """AWS_ENDPOINT_URL_SAGEMAKER picks the control-plane URL, ahead of AWS_ENDPOINT_URL;
    the runtime variable does not."""
    env = clean_env(
        AWS_ENDPOINT_URL_SAGEMAKER=gateway.url,
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME="http://127.0.0.1:9",
    )
    assert coldbrew("endpoints", url=None, env=env).returncode == 0
    env = clean_env(AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=gateway.url, AWS_ENDPOINT_URL=closed_url())
    result = coldbrew("endpoints", url=None, env=env)
    assert result.returncode == 1
    assert "cannot reach" in result.stderr


def closed_url() -> str:
    """A local URL where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_unreachable_gateway_is_one_clear_line() -> None:
    """A URL where no gateway listens gives one line naming it, and exit 1."""
    url = closed_url()
    result = coldbrew("endpoints", url=url)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"coldbrew: cannot reach the gateway at {url}: [Errno 111] Connection refused"
    ]


def test_a_url_that_is_not_a_sagemaker_api_is_named() -> None:
    """A web server that is not a gateway gives its HTTP status and a hint, exit 1."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = coldbrew("describe", "anything", url=url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert result.returncode == 1
    assert result.stderr.startswith("coldbrew: 501: Not Implemented")
    assert "SageMaker API" in result.stderr


def test_a_malformed_url_is_refused() -> None:
    """An endpoint URL that is not http(s) is refused before any request."""
    result = coldbrew("endpoints", url="localhost:8080")
    assert result.returncode == 1
    assert "http://HOST[:PORT]" in result.stderr
