"""The SageMaker control plane with real boto3 clients against a real gateway."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from tests.integration.control import (
    control_client,
    create_model,
    deploy,
    serverless_variant,
)
from tests.support import Gateway, running_gateway, toml_config, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp_path = tmp_path_factory.mktemp("control")
    config = toml_config(tmp_path / "state", endpoints={}, quotas={"endpoints_per_region": 5})
    with running_gateway(tmp_path, config) as gw:
        yield gw


@pytest.fixture
def sm(gateway: Gateway) -> Any:
    return control_client(gateway.url)


def error_code(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] < 500
    return str(error["Code"]), str(error.get("Message"))


def count_describes(sm: Any) -> list[int]:
    """Count the DescribeEndpoint calls the client makes (waiters included)."""
    calls = [0]

    def count(**_: Any) -> None:
        calls[0] += 1

    sm.meta.events.register("before-call.sagemaker.DescribeEndpoint", count)
    return calls


def test_lifecycle_script_runs_unmodified(gateway: Gateway, sm: Any) -> None:
    """Create model, config and endpoint, wait, invoke, update to a new config, invoke,
    delete everything: boto3 as users write it, with the waiters at their defaults, which
    finish on their first poll."""
    rt = gateway.runtime()
    describes = count_describes(sm)
    create_model(sm, "life-a", "echo")
    create_model(sm, "life-b", "behave")
    sm.create_endpoint_config(
        EndpointConfigName="life-a", ProductionVariants=[serverless_variant("life-a")]
    )
    sm.create_endpoint_config(
        EndpointConfigName="life-b", ProductionVariants=[serverless_variant("life-b", 2048, 2)]
    )
    created = sm.create_endpoint(EndpointName="life", EndpointConfigName="life-a")
    assert created["EndpointArn"] == "arn:aws:sagemaker:us-east-1:000000000000:endpoint/life"
    sm.get_waiter("endpoint_in_service").wait(EndpointName="life")
    assert describes[0] == 1
    assert rt.invoke_endpoint(EndpointName="life", Body=b"one")["Body"].read() == b"one"

    sm.update_endpoint(EndpointName="life", EndpointConfigName="life-b")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="life")
    assert rt.invoke_endpoint(EndpointName="life", Body=b"echo-me")["Body"].read() == b"echo-me"
    described = sm.describe_endpoint(EndpointName="life")
    assert described["EndpointConfigName"] == "life-b"
    assert described["ProductionVariants"][0]["CurrentServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 2,
    }
    assert "FailureReason" not in described

    describes[0] = 0
    sm.delete_endpoint(EndpointName="life")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="life")
    assert describes[0] == 1
    for config in ("life-a", "life-b"):
        sm.delete_endpoint_config(EndpointConfigName=config)
    for model in ("life-a", "life-b"):
        sm.delete_model(ModelName=model)
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == []
    code, _message = error_code(rt.invoke_endpoint, EndpointName="life", Body=b"x")
    assert code == "ValidationError"


def test_describe_shapes_and_timestamps(sm: Any) -> None:
    """Describe* answer the real shapes: lower-cased ARNs, epoch timestamps as datetimes,
    the container as given."""
    deploy(sm, "Shape-Check")
    model = sm.describe_model(ModelName="shape-check")
    assert model["ModelName"] == "Shape-Check"
    assert model["ModelArn"].endswith(":model/shape-check")
    assert model["PrimaryContainer"]["Image"] == "coldbrew/echo:1"
    assert model["CreationTime"].year >= 2026
    config = sm.describe_endpoint_config(EndpointConfigName="Shape-Check")
    assert config["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 1024
    endpoint = sm.describe_endpoint(EndpointName="Shape-Check")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["LastModifiedTime"] >= endpoint["CreationTime"]
    assert endpoint["ProductionVariants"][0]["DeployedImages"][0]["SpecifiedImage"] == (
        "coldbrew/echo:1"
    )


def test_paginators_yield_every_item_once(sm: Any) -> None:
    """list_models through boto3's paginator, small pages, each model exactly once."""
    names = [f"page-{i:02d}" for i in range(23)]
    for name in names:
        create_model(sm, name)
    pages = sm.get_paginator("list_models").paginate(
        NameContains="page-", SortBy="Name", SortOrder="Ascending", PaginationConfig={"PageSize": 5}
    )
    seen = [m["ModelName"] for page in pages for m in page["Models"]]
    assert seen == names
    newest_first = sm.list_models(NameContains="page-", MaxResults=3)["Models"]
    assert [m["ModelName"] for m in newest_first] == names[::-1][:3]
    for name in names:
        sm.delete_model(ModelName=name)


def test_failed_model_gives_failed_endpoint_with_reason(sm: Any) -> None:
    """A model whose model_fn raises makes the endpoint Failed, quoting the model's error;
    the waiter reports the failure; the endpoint can be deleted."""
    deploy(sm, "broken-ep", "broken", wait=False)
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName="broken-ep")
    described = sm.describe_endpoint(EndpointName="broken-ep")
    assert described["EndpointStatus"] == "Failed"
    assert "weights file is corrupt" in described["FailureReason"]
    code, _message = error_code(
        sm.update_endpoint, EndpointName="broken-ep", EndpointConfigName="broken-ep"
    )
    assert code == "ValidationException"
    sm.delete_endpoint(EndpointName="broken-ep")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="broken-ep")


def test_failed_update_rolls_back_and_says_why(gateway: Gateway, sm: Any) -> None:
    """An update to a model that cannot load leaves the endpoint InService on its old
    config, with a FailureReason that says so."""
    deploy(sm, "rollback")
    create_model(sm, "rollback-bad", "broken")
    sm.create_endpoint_config(
        EndpointConfigName="rollback-bad", ProductionVariants=[serverless_variant("rollback-bad")]
    )
    sm.update_endpoint(EndpointName="rollback", EndpointConfigName="rollback-bad")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="rollback")
    described = sm.describe_endpoint(EndpointName="rollback")
    assert described["EndpointConfigName"] == "rollback"
    assert described["FailureReason"].startswith("Update failed and was rolled back")
    assert "weights file is corrupt" in described["FailureReason"]
    rt = gateway.runtime()
    assert rt.invoke_endpoint(EndpointName="rollback", Body=b"ok")["Body"].read() == b"ok"


def test_update_lets_in_flight_invocations_finish(gateway: Gateway, sm: Any) -> None:
    """During an update, the invocation already running finishes on the old model and
    the next goes to the new one."""
    deploy(sm, "swap", "behave")
    create_model(sm, "swap-echo", "echo")
    sm.create_endpoint_config(
        EndpointConfigName="swap-echo", ProductionVariants=[serverless_variant("swap-echo")]
    )
    rt = gateway.runtime()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            lambda: rt.invoke_endpoint(EndpointName="swap", Body=b"sleep:1.5")["Body"].read()
        )
        wait_until(lambda: gateway.worker_pids(), timeout=10, what="the old worker")
        sm.update_endpoint(EndpointName="swap", EndpointConfigName="swap-echo")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="swap")
        assert rt.invoke_endpoint(EndpointName="swap", Body=b"sleep:9")["Body"].read() == (
            b"sleep:9"
        )
        assert slow.result(timeout=30) == b"slept"


def test_capacity_update_changes_max_concurrency(sm: Any) -> None:
    """UpdateEndpointWeightsAndCapacities changes MaxConcurrency and shows it."""
    deploy(sm, "capacity")
    sm.update_endpoint_weights_and_capacities(
        EndpointName="capacity",
        DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "ServerlessUpdateConfig": {"MaxConcurrency": 7}}
        ],
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName="capacity")
    variant = sm.describe_endpoint(EndpointName="capacity")["ProductionVariants"][0]
    assert variant["CurrentServerlessConfig"]["MaxConcurrency"] == 7
    code, message = error_code(
        sm.update_endpoint_weights_and_capacities,
        EndpointName="capacity",
        DesiredWeightsAndCapacities=[{"VariantName": "Other", "DesiredWeight": 1.0}],
    )
    assert (code, message) == (
        "ValidationException",
        'The variant name(s) "Other" is/are not present within endpoint configuration "capacity".',
    )


def test_tags_follow_their_resource(sm: Any) -> None:
    """Tags given at creation and added later are listed, deleted, and go with the
    resource."""
    create_model(sm, "tagged", Tags=[{"Key": "team", "Value": "ml"}])
    model_arn = sm.describe_model(ModelName="tagged")["ModelArn"]
    sm.add_tags(ResourceArn=model_arn, Tags=[{"Key": "stage", "Value": "dev"}])
    assert sm.list_tags(ResourceArn=model_arn)["Tags"] == [
        {"Key": "team", "Value": "ml"},
        {"Key": "stage", "Value": "dev"},
    ]
    sm.delete_tags(ResourceArn=model_arn, TagKeys=["team"])
    assert sm.list_tags(ResourceArn=model_arn)["Tags"] == [{"Key": "stage", "Value": "dev"}]
    sm.delete_model(ModelName="tagged")
    code, _ = error_code(sm.list_tags, ResourceArn=model_arn)
    assert code == "ValidationException"


def test_duplicates_and_missing_resources_use_the_real_wording(sm: Any) -> None:
    """Duplicate and missing resources answer ValidationException in the real words."""
    create_model(sm, "dup")
    code, message = error_code(
        sm.create_model,
        ModelName="DUP",
        PrimaryContainer={"ModelDataUrl": "s3://b/model.tar.gz"},
    )
    assert (code, message) == (
        "ValidationException",
        "Cannot create already existing model "
        '"arn:aws:sagemaker:us-east-1:000000000000:model/dup".',
    )
    code, message = error_code(sm.describe_endpoint, EndpointName="nowhere")
    assert message == (
        'Could not find endpoint "arn:aws:sagemaker:us-east-1:000000000000:endpoint/nowhere".'
    )
    code, message = error_code(sm.describe_endpoint_config, EndpointConfigName="nowhere")
    assert message.startswith('Could not find endpoint configuration "arn:')
    code, message = error_code(
        sm.create_endpoint_config,
        EndpointConfigName="orphan",
        ProductionVariants=[serverless_variant("no-such-model")],
    )
    assert message == (
        'Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/no-such-model".'
    )
    code, message = error_code(sm.create_endpoint, EndpointName="e", EndpointConfigName="none")
    assert code == "ValidationException"
    assert "Could not find endpoint configuration" in message
    sm.delete_model(ModelName="dup")


def test_in_use_model_and_config_cannot_be_deleted(sm: Any) -> None:
    """A model or config that a live endpoint uses is refused with ResourceInUse."""
    deploy(sm, "in-use")
    code, message = error_code(sm.delete_model, ModelName="in-use")
    assert code == "ResourceInUse"
    assert "endpoint-config/in-use" in message
    code, _message = error_code(sm.delete_endpoint_config, EndpointConfigName="in-use")
    assert code == "ResourceInUse"
    sm.delete_endpoint(EndpointName="in-use")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="in-use")
    code, message = error_code(sm.delete_model, ModelName="in-use")
    assert code == "ResourceInUse", "a config still names the model"
    sm.delete_endpoint_config(EndpointConfigName="in-use")
    sm.delete_model(ModelName="in-use")


@pytest.mark.parametrize(
    ("serverless", "field"),
    [
        ({"MemorySizeInMB": 1500, "MaxConcurrency": 1}, "memorySizeInMB"),
        ({"MemorySizeInMB": 8192, "MaxConcurrency": 1}, "memorySizeInMB"),
        ({"MemorySizeInMB": 1024, "MaxConcurrency": 500}, "maxConcurrency"),
        (
            {"MemorySizeInMB": 1024, "MaxConcurrency": 5, "ProvisionedConcurrency": 9},
            "provisionedConcurrency",
        ),
    ],
)
def test_serverless_config_is_validated_on_the_server(
    sm: Any, serverless: dict[str, int], field: str
) -> None:
    """What botocore lets through (max, enum, cross-field) is refused by the gateway
    with a message naming the field."""
    create_model(sm, "limits")
    try:
        variant = {"VariantName": "v", "ModelName": "limits", "ServerlessConfig": serverless}
        code, message = error_code(
            sm.create_endpoint_config, EndpointConfigName="limits", ProductionVariants=[variant]
        )
        assert code == "ValidationException"
        assert field in message
    finally:
        sm.delete_model(ModelName="limits")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            {
                "DataCaptureConfig": {
                    "InitialSamplingPercentage": 10,
                    "DestinationS3Uri": "s3://b/capture",
                    "CaptureOptions": [{"CaptureMode": "Input"}],
                }
            },
            "Data capture",
        ),
        ({"KmsKeyId": "key"}, "KMS key"),
        ({"EnableNetworkIsolation": True}, "Network isolation"),
        (
            {
                "ProductionVariants": [
                    serverless_variant("excl"),
                    {**serverless_variant("excl"), "VariantName": "second"},
                ]
            },
            "multiple production variants",
        ),
    ],
)
def test_what_serverless_excludes_is_refused(sm: Any, extra: dict[str, Any], words: str) -> None:
    """Features serverless excludes get a ValidationException saying which."""
    create_model(sm, "excl")
    try:
        body = {"EndpointConfigName": "excl", "ProductionVariants": [serverless_variant("excl")]}
        code, message = error_code(sm.create_endpoint_config, **{**body, **extra})
        assert code == "ValidationException"
        assert words in message
    finally:
        sm.delete_model(ModelName="excl")


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ({"PrimaryContainer": {"ModelDataUrl": "/x", "Mode": "MultiModel"}}, "Multi-model"),
        ({"Containers": [{"ModelDataUrl": "/x"}, {"ModelDataUrl": "/y"}]}, "More than one"),
        (
            {
                "PrimaryContainer": {"ModelDataUrl": "/x"},
                "VpcConfig": {"SecurityGroupIds": ["sg-1"], "Subnets": ["s-1"]},
            },
            "VPC",
        ),
        ({"PrimaryContainer": {"Image": "only-an-image"}}, "modelDataUrl"),
        ({"PrimaryContainer": {"ModelDataUrl": "https://example.com/m.tar.gz"}}, "ModelDataUrl"),
    ],
)
def test_models_coldbrew_cannot_run_are_refused(sm: Any, model: dict[str, Any], words: str) -> None:
    """Multi-model, pipelines, VPCs and unusable artifact URLs are refused clearly."""
    code, message = error_code(sm.create_model, ModelName="refused", **model)
    assert code == "ValidationException"
    assert words in message


def test_endpoint_quota_per_region(tmp_path: Path) -> None:
    """Past quotas.endpoints_per_region serverless endpoints, CreateEndpoint raises the
    modeled ResourceLimitExceeded."""
    config = toml_config(tmp_path / "state", endpoints={}, quotas={"endpoints_per_region": 2})
    with running_gateway(tmp_path, config) as gw:
        sm = control_client(gw.url)
        deploy(sm, "q1")
        deploy(sm, "q2")
        create_model(sm, "q3")
        sm.create_endpoint_config(
            EndpointConfigName="q3", ProductionVariants=[serverless_variant("q3")]
        )
        with pytest.raises(sm.exceptions.ResourceLimitExceeded):
            sm.create_endpoint(EndpointName="q3", EndpointConfigName="q3")
        sm.delete_endpoint(EndpointName="q1")
        sm.get_waiter("endpoint_deleted").wait(EndpointName="q1")
        sm.create_endpoint(EndpointName="q3", EndpointConfigName="q3")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="q3")


def test_accounts_cannot_see_each_other(tmp_path: Path) -> None:
    """Another account's endpoint is indistinguishable from a missing one, for describe,
    invoke, update, delete and tags; both may use the same name."""
    credentials = (
        '[[auth.credentials]]\naccess_key_id = "AKIDALICE"\nsecret_access_key = "a"\n'
        'account_id = "111111111111"\n'
        '[[auth.credentials]]\naccess_key_id = "AKIDBOB"\nsecret_access_key = "b"\n'
        'account_id = "222222222222"\n'
    )
    config = toml_config(tmp_path / "state", endpoints={}, extra=credentials)
    with running_gateway(tmp_path, config) as gw:
        from tests.support import runtime_client

        alice = control_client(gw.url, access_key="AKIDALICE", secret_key="a")
        bob = control_client(gw.url, access_key="AKIDBOB", secret_key="b")
        deploy(alice, "private")
        arn = alice.describe_endpoint(EndpointName="private")["EndpointArn"]
        assert ":111111111111:" in arn
        missing = error_code(bob.describe_endpoint, EndpointName="private")
        assert missing == (
            "ValidationException",
            'Could not find endpoint "arn:aws:sagemaker:us-east-1:222222222222:endpoint/private".',
        )
        assert error_code(bob.delete_endpoint, EndpointName="private")[0] == "ValidationException"
        assert (
            error_code(bob.update_endpoint, EndpointName="private", EndpointConfigName="private")[0]
            == "ValidationException"
        )
        assert error_code(bob.list_tags, ResourceArn=arn)[0] == "ValidationException"
        assert bob.list_endpoints()["Endpoints"] == []
        bob_rt = runtime_client(gw.url, access_key="AKIDBOB", secret_key="b")
        with pytest.raises(ClientError) as caught:
            bob_rt.invoke_endpoint(EndpointName="private", Body=b"x")
        assert caught.value.response["Error"]["Message"] == (
            "Endpoint private of account 222222222222 not found."
        )
        deploy(bob, "private", "behave")
        alice_rt = runtime_client(gw.url, access_key="AKIDALICE", secret_key="a")
        assert alice_rt.invoke_endpoint(EndpointName="private", Body=b"pid")["Body"].read() == (
            b"pid"
        )
        assert bob_rt.invoke_endpoint(EndpointName="private", Body=b"pid")["Body"].read() != (
            b"pid"
        )
