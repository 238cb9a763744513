"""The AWS CLI driving the control plane, and instance-based (real-time) variants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.control import control_client, create_model, deploy
from tests.support import MODELS, aws_cli_env, clean_env, running_gateway, toml_config, wait_until

pytestmark = pytest.mark.timeout(180)


def aws(url: str, tmp_path: Path, *args: str) -> Any:
    """Run the AWS CLI against the gateway; return its parsed JSON output (or None)."""
    env = aws_cli_env(tmp_path, AWS_MAX_ATTEMPTS="1")
    command = [str(Path(sys.executable).parent / "aws"), "--endpoint-url", url, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, env=env)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_aws_cli_runs_the_whole_lifecycle(tmp_path: Path) -> None:
    """create-model, create-endpoint-config, create-endpoint, wait, invoke, update, wait,
    list, delete and wait, with the AWS CLI unchanged."""
    with running_gateway(tmp_path, toml_config(tmp_path / "state", endpoints={})) as gw:
        url = gw.url
        for name, model in (("cli-a", "echo"), ("cli-b", "behave")):
            aws(
                url,
                tmp_path,
                "sagemaker",
                "create-model",
                "--model-name",
                name,
                "--primary-container",
                json.dumps({"Image": "i", "ModelDataUrl": str(MODELS / model)}),
            )
            aws(
                url,
                tmp_path,
                "sagemaker",
                "create-endpoint-config",
                "--endpoint-config-name",
                name,
                "--production-variants",
                json.dumps(
                    [
                        {
                            "VariantName": "AllTraffic",
                            "ModelName": name,
                            "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2},
                        }
                    ]
                ),
            )
        created = aws(
            url,
            tmp_path,
            "sagemaker",
            "create-endpoint",
            "--endpoint-name",
            "cli",
            "--endpoint-config-name",
            "cli-a",
        )
        assert created["EndpointArn"].endswith(":endpoint/cli")
        aws(url, tmp_path, "sagemaker", "wait", "endpoint-in-service", "--endpoint-name", "cli")
        out = tmp_path / "out"
        aws(
            url,
            tmp_path,
            "sagemaker-runtime",
            "invoke-endpoint",
            "--endpoint-name",
            "cli",
            "--body",
            "from-cli",
            str(out),
        )
        assert out.read_text() == "from-cli"
        aws(
            url,
            tmp_path,
            "sagemaker",
            "update-endpoint",
            "--endpoint-name",
            "cli",
            "--endpoint-config-name",
            "cli-b",
        )
        aws(url, tmp_path, "sagemaker", "wait", "endpoint-in-service", "--endpoint-name", "cli")
        described = aws(url, tmp_path, "sagemaker", "describe-endpoint", "--endpoint-name", "cli")
        assert described["EndpointConfigName"] == "cli-b"
        listed = aws(url, tmp_path, "sagemaker", "list-endpoints")
        assert [e["EndpointName"] for e in listed["Endpoints"]] == ["cli"]
        aws(url, tmp_path, "sagemaker", "delete-endpoint", "--endpoint-name", "cli")
        aws(url, tmp_path, "sagemaker", "wait", "endpoint-deleted", "--endpoint-name", "cli")
        for name in ("cli-a", "cli-b"):
            aws(
                url, tmp_path, "sagemaker", "delete-endpoint-config", "--endpoint-config-name", name
            )
            aws(url, tmp_path, "sagemaker", "delete-model", "--model-name", name)
        assert aws(url, tmp_path, "sagemaker", "list-models")["Models"] == []


def instance_variant(model: str, count: int = 2) -> dict[str, Any]:
    return {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": count,
    }


def test_instance_based_variant_keeps_its_workers_warm(tmp_path: Path) -> None:
    """A real-time variant runs InitialInstanceCount always-warm workers: present before
    any invocation, not reaped when idle, replaced when one dies."""
    config = toml_config(tmp_path / "state", endpoints={}, pool={"idle_timeout_s": 0.5})
    with running_gateway(tmp_path, config) as gw:
        sm = control_client(gw.url)
        create_model(sm, "rt", "behave")
        sm.create_endpoint_config(
            EndpointConfigName="rt", ProductionVariants=[instance_variant("rt")]
        )
        sm.create_endpoint(EndpointName="rt", EndpointConfigName="rt")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="rt")
        variant = sm.describe_endpoint(EndpointName="rt")["ProductionVariants"][0]
        assert variant["CurrentInstanceCount"] == 2
        warm = wait_until(lambda: len(gw.worker_pids()) == 2 and gw.worker_pids(), timeout=30)
        # A serverless endpoint beside it is reaped at its keep-alive...
        deploy(sm, "sls", "behave")
        sls_worker = int(
            gw.runtime().invoke_endpoint(EndpointName="sls", Body=b"pid")["Body"].read()
        )
        wait_until(lambda: sls_worker not in gw.worker_pids(), timeout=10)
        # ...while the instance workers are still the same two.
        assert sorted(gw.worker_pids()) == sorted(warm)
        served = int(gw.runtime().invoke_endpoint(EndpointName="rt", Body=b"pid")["Body"].read())
        assert served in warm
        with pytest.raises(ClientError):
            gw.runtime().invoke_endpoint(EndpointName="rt", Body=b"kill")
        wait_until(
            lambda: len(gw.worker_pids()) == 2 and served not in gw.worker_pids(),
            timeout=30,
            what="the dead instance worker to be replaced",
        )


def test_serverless_to_real_time_and_not_back(tmp_path: Path) -> None:
    """UpdateEndpoint from serverless to real-time works; from real-time to serverless
    is refused with a validation error, as the real service does."""
    with running_gateway(tmp_path, toml_config(tmp_path / "state", endpoints={})) as gw:
        sm = control_client(gw.url)
        deploy(sm, "convert", "echo")
        sm.create_endpoint_config(
            EndpointConfigName="convert-rt", ProductionVariants=[instance_variant("convert", 1)]
        )
        sm.update_endpoint(EndpointName="convert", EndpointConfigName="convert-rt")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="convert")
        described = sm.describe_endpoint(EndpointName="convert")
        assert described["EndpointConfigName"] == "convert-rt"
        assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
        assert gw.runtime().invoke_endpoint(EndpointName="convert", Body=b"rt")["Body"].read() == (
            b"rt"
        )
        with pytest.raises(ClientError) as caught:
            sm.update_endpoint(EndpointName="convert", EndpointConfigName="convert")
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        assert "to serverless is not supported" in caught.value.response["Error"]["Message"]


def model_tarball(path: Path, model: str) -> Path:
    """A SageMaker-style model.tar.gz: the model's files, with the handler under code/."""
    import tarfile

    with tarfile.open(path, "w:gz") as archive:
        archive.add(MODELS / model / "inference.py", arcname="code/inference.py")
    return path


def test_model_from_a_local_tarball_and_from_s3(tmp_path: Path) -> None:
    """ModelDataUrl as a local model.tar.gz and as s3://bucket/key (fetched with boto3
    from the S3 endpoint the gateway's environment names) both serve; the model's
    Environment reaches the worker."""
    import boto3
    from moto.server import ThreadedMotoServer

    s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3_server.start()
    try:
        host, port = s3_server.get_host_and_port()
        s3_url = f"http://{host}:{port}"
        s3_env = {
            "AWS_ACCESS_KEY_ID": "s3key",
            "AWS_SECRET_ACCESS_KEY": "s3secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_url,
            **{
                "aws_access_key_id": "s3key",
                "aws_secret_access_key": "s3secret",
                "region_name": "us-east-1",
            },
        )
        s3.create_bucket(Bucket="models")
        s3.upload_file(str(model_tarball(tmp_path / "s3.tar.gz", "behave")), "models", "m.tar.gz")
        env = clean_env(AWS_ENDPOINT_URL_S3=s3_url, **s3_env)
        config = toml_config(tmp_path / "state", endpoints={})
        with running_gateway(tmp_path, config, env=env) as gw:
            sm = control_client(gw.url)
            local = model_tarball(tmp_path / "model.tar.gz", "echo")
            sources = {"from-tar": local.as_uri(), "from-s3": "s3://models/m.tar.gz"}
            for name, url in sources.items():
                sm.create_model(
                    ModelName=name,
                    PrimaryContainer={"ModelDataUrl": url, "Environment": {"ORIGIN": name}},
                )
                sm.create_endpoint_config(
                    EndpointConfigName=name,
                    ProductionVariants=[
                        {
                            "VariantName": "AllTraffic",
                            "ModelName": name,
                            "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
                        }
                    ],
                )
                sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
                sm.get_waiter("endpoint_in_service").wait(EndpointName=name)
            rt = gw.runtime()
            assert rt.invoke_endpoint(EndpointName="from-tar", Body=b"t")["Body"].read() == b"t"
            seen = json.loads(
                rt.invoke_endpoint(EndpointName="from-s3", Body=b"env")["Body"].read()
            )
            assert seen["ORIGIN"] == "from-s3"
            assert "AWS_SECRET_ACCESS_KEY" not in seen
            sm.create_model(
                ModelName="missing", PrimaryContainer={"ModelDataUrl": "s3://models/nope.tar.gz"}
            )
            sm.create_endpoint_config(
                EndpointConfigName="missing",
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": "missing",
                        "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
                    }
                ],
            )
            sm.create_endpoint(EndpointName="missing", EndpointConfigName="missing")
            described = wait_until(
                lambda: (
                    (d := sm.describe_endpoint(EndpointName="missing"))["EndpointStatus"]
                    == "Failed"
                    and d
                ),
                timeout=30,
            )
            assert "s3://models/nope.tar.gz" in described["FailureReason"]
    finally:
        s3_server.stop()
