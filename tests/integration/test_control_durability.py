"""Durability and hostile input: SIGKILL and restart on the same state dir, and hundreds
of malformed control-plane requests that must each get a 4xx and change nothing."""

from __future__ import annotations

import random
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.integration.control import control_client, create_model, deploy, serverless_variant
from tests.support import (
    CONTROL_OPERATIONS,
    is_running,
    running_gateway,
    toml_config,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)


def test_sigkill_and_restart_bring_every_endpoint_back(tmp_path: Path) -> None:
    """After a SIGKILL, a gateway restarted on the same state dir has every model,
    config and endpoint; InService endpoints serve, a Failed one keeps its reason, one
    killed mid-creation finishes creating, and no worker of the old gateway survives."""
    state = tmp_path / "state"
    config = toml_config(state, endpoints={})
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    with running_gateway(first_dir, config) as gw:
        sm = control_client(gw.url)
        deploy(sm, "steady", "behave")
        deploy(sm, "broken", "broken", wait=False)
        old_worker = int(
            gw.runtime().invoke_endpoint(EndpointName="steady", Body=b"pid")["Body"].read()
        )
        sm.create_model(
            ModelName="slow",
            PrimaryContainer={
                "ModelDataUrl": str(Path(__file__).parent.parent / "models" / "slowload"),
                "Environment": {"LOAD_SECONDS": "1.5"},
            },
        )
        sm.create_endpoint_config(
            EndpointConfigName="slow", ProductionVariants=[serverless_variant("slow")]
        )
        sm.create_endpoint(EndpointName="slow", EndpointConfigName="slow")
        wait_until(
            lambda: sm.describe_endpoint(EndpointName="broken")["EndpointStatus"] == "Failed",
            timeout=30,
            what="the broken endpoint to fail",
        )
        assert gw.stop(signal.SIGKILL) == -signal.SIGKILL
    wait_until(lambda: not is_running(old_worker), timeout=10, what="the old worker to die")

    with running_gateway(second_dir, config) as gw:
        sm = control_client(gw.url)
        models = {m["ModelName"] for m in sm.list_models()["Models"]}
        assert models == {"steady", "broken", "slow"}
        assert sm.describe_endpoint(EndpointName="steady")["EndpointStatus"] == "InService"
        broken = sm.describe_endpoint(EndpointName="broken")
        assert broken["EndpointStatus"] == "Failed"
        assert "weights file is corrupt" in broken["FailureReason"]
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName="slow", WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
        rt = gw.runtime()
        assert rt.invoke_endpoint(EndpointName="steady", Body=b"ok")["Body"].read() == b"ok"
        assert rt.invoke_endpoint(EndpointName="slow", Body=b"ok")["Body"].read() == b"ok"


def signed_post(url: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """One raw control-plane request, signed by botocore, whatever the body holds."""
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
    request = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
    SigV4Auth(Credentials("test", "test"), "sagemaker", "us-east-1").add_auth(request)
    outgoing = urllib.request.Request(
        url + "/", data=body, headers=dict(request.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(outgoing, timeout=30) as response:
            return response.status, orjson.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, orjson.loads(error.read() or b"{}")


def junk(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value: wrong types, odd and huge strings, deep nesting."""
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return rng.choice(
            [
                None,
                True,
                -1,
                0,
                2**40,
                1.5,
                "",
                "x" * rng.choice([1, 64, 70, 5000]),
                "\u2028\ud7ff\U0001f600",
                "s3://bucket/model.tar.gz",
                "../../etc/passwd",
                # The kept endpoint's ARN, but never its bare name: a random *valid*
                # DeleteEndpoint of it would be a legitimate change.
                "arn:aws:sagemaker:us-east-1:000000000000:endpoint/keep",
                "other",
            ]
        )
    if roll < 0.65:
        return {
            rng.choice(
                [
                    "ModelName",
                    "EndpointName",
                    "EndpointConfigName",
                    "ProductionVariants",
                    "PrimaryContainer",
                    "ServerlessConfig",
                    "MemorySizeInMB",
                    "MaxConcurrency",
                    "Tags",
                    "ResourceArn",
                    "NextToken",
                    "MaxResults",
                    "SortBy",
                    "Unknown",
                ]
            ): junk(rng, depth + 1)
            for _ in range(rng.randint(0, 4))
        }
    return [junk(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def test_hundreds_of_malformed_requests_get_4xx_and_change_nothing(tmp_path: Path) -> None:
    """Random shapes, wrong types, odd strings, invalid JSON and UTF-8, to every
    operation: each answer is a 4xx SageMaker error (never a 5xx), and the endpoint that
    existed before still serves, unchanged."""
    config = toml_config(tmp_path / "state", endpoints={})
    with running_gateway(tmp_path, config) as gw:
        sm = control_client(gw.url)
        deploy(sm, "keep", "echo")
        before = sm.describe_endpoint(EndpointName="keep")
        rng = random.Random(20261128)
        bodies: list[tuple[str, bytes]] = []
        for _ in range(300):
            target = "SageMaker." + rng.choice(CONTROL_OPERATIONS)
            bodies.append((target, orjson.dumps(junk(rng))))
        bodies += [
            ("SageMaker.CreateModel", b"{not json"),
            ("SageMaker.CreateModel", b"\xff\xfe\x00garbage"),
            ("SageMaker.CreateModel", b'{"ModelName": "\xff\xfe"}'),
            ("SageMaker.CreateModel", b"[]"),
            ("SageMaker.NoSuchOperation", b"{}"),
            ("NotSageMaker.CreateModel", b"{}"),
            ("SageMaker.DescribeEndpoint", b'{"EndpointName": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ]
        exact = {
            ("SageMaker.CreateModel", b"{not json"): "SerializationException",
            ("SageMaker.CreateModel", b"[]"): "SerializationException",
            ("SageMaker.NoSuchOperation", b"{}"): "UnknownOperationException",
            ("NotSageMaker.CreateModel", b"{}"): "UnknownOperationException",
        }
        for (target, body), code in exact.items():
            status, answer = signed_post(gw.url, target, body)
            assert (status, answer["__type"]) == (400, code)
        statuses: dict[int, int] = {}
        for target, body in bodies:
            status, answer = signed_post(gw.url, target, body)
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 300:
                assert 400 <= status < 500, (target, body[:200], answer)
                assert answer.get("__type"), (target, body[:200], answer)
        assert sum(count for status, count in statuses.items() if status >= 400) > 250
        after = sm.describe_endpoint(EndpointName="keep")
        for field in ("EndpointStatus", "EndpointConfigName", "ProductionVariants"):
            assert after[field] == before[field]
        rt = gw.runtime()
        assert rt.invoke_endpoint(EndpointName="keep", Body=b"still")["Body"].read() == b"still"
        create_model(sm, "after-fuzz")
        assert "after-fuzz" in {m["ModelName"] for m in sm.list_models()["Models"]}
