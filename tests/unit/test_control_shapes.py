"""Control-plane input shapes against botocore's service model, and the validator's
messages, type errors and robustness against arbitrary JSON."""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime
from typing import Any

import botocore.model
import botocore.session
import orjson
import pytest
from botocore.serialize import create_serializer
from botocore.validate import ParamValidator

from gateway.control.schema import (
    Boolean,
    Enum,
    Float,
    Integer,
    ListOf,
    MapOf,
    Permissive,
    Shape,
    String,
    Structure,
    Timestamp,
    camel_case,
    java_regex_to_python,
    validate,
)
from gateway.control.shapes import INPUT_SHAPES
from gateway.sagemaker.errors import ServiceError
from tests.support import CONTROL_OPERATIONS as OPERATIONS

SERVICE = botocore.session.get_session().get_service_model("sagemaker")
# The botocore shapes modeled with Permissive, as shapes.py documents them.
PERMISSIVE = {"AsyncInferenceConfig", "ExplainerConfig", "ProductionVariantInstanceType"}
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
MODEL_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/m1"
SERVERLESS = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
MODEL_PATTERN = r"^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?"
# Tag keys and values: a pattern stdlib re cannot express, checked by a hand-written matcher.
TAG_PATTERN = r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"


def refusal(operation: str, body: object) -> ServiceError:
    """The error ``validate`` raises for ``body``; fails the test if it accepts it."""
    with pytest.raises(ServiceError) as caught:
        validate(INPUT_SHAPES[operation], body, root=f"{operation} input")
    return caught.value


def violations(operation: str, body: object) -> str:
    """The ValidationException message for ``body``."""
    error = refusal(operation, body)
    assert (error.status, error.code) == (400, "ValidationException"), error.message
    assert error.message is not None
    return error.message


def serialization(operation: str, body: object) -> str:
    """The SerializationException message for ``body``."""
    error = refusal(operation, body)
    assert (error.status, error.code) == (400, "SerializationException"), error.message
    assert error.message is not None
    return error.message


def one(value: str, path: str, constraint: str) -> str:
    return f"Value '{value}' at '{path}' failed to satisfy constraint: {constraint}"


# --- Shapes against the service model ----------------------------------------------------


def differences(
    ours: Shape, theirs: botocore.model.Shape, where: str, permissive: set[str]
) -> list[str]:
    """Every way ``ours`` differs from botocore's ``theirs``, recursing into members."""
    meta: dict[str, Any] = dict(theirs.metadata)
    kind = theirs.type_name
    if isinstance(ours, Permissive):
        permissive.add(theirs.name)
        expected = {"structure": "object", "string": "string"}.get(kind, "any")
        return [] if ours.kind == expected else [f"{where}: permissive kind {ours.kind}"]
    if kind == "structure":
        return structure_differences(ours, theirs, where, permissive)
    if kind == "list":
        assert isinstance(theirs, botocore.model.ListShape)
        if not isinstance(ours, ListOf):
            return [f"{where}: not a ListOf"]
        found = differences(ours.member, theirs.member, f"{where}[]", permissive)
        if (ours.min, ours.max) != (meta.get("min", 0), meta.get("max")):
            found.append(f"{where}: list bounds {ours.min}..{ours.max} vs {meta}")
        return found
    if kind == "map":
        assert isinstance(theirs, botocore.model.MapShape)
        if not isinstance(ours, MapOf):
            return [f"{where}: not a MapOf"]
        found = differences(ours.key, theirs.key, f"{where}{{key}}", permissive)
        found += differences(ours.value, theirs.value, f"{where}{{value}}", permissive)
        if ours.max_entries != meta.get("max") or meta.get("min", 0) != 0:
            found.append(f"{where}: map bounds {ours.max_entries} vs {meta}")
        return found
    return scalar_differences(ours, kind, meta, where)


def structure_differences(
    ours: Shape, theirs: botocore.model.Shape, where: str, permissive: set[str]
) -> list[str]:
    assert isinstance(theirs, botocore.model.StructureShape)
    if not isinstance(ours, Structure):
        return [f"{where}: not a Structure"]
    found = []
    # The same names in the same order, so violations are listed in the model's order.
    if list(ours.members) != list(theirs.members):
        found.append(f"{where}: members {list(ours.members)} vs {list(theirs.members)}")
    if ours.required != frozenset(theirs.metadata.get("required", ())):
        found.append(f"{where}: required {sorted(ours.required)}")
    for name in ours.members.keys() & theirs.members.keys():
        found += differences(
            ours.members[name], theirs.members[name], f"{where}.{name}", permissive
        )
    return found


def scalar_differences(ours: Shape, kind: str, meta: dict[str, Any], where: str) -> list[str]:
    if kind == "string" and "enum" in meta:
        same = isinstance(ours, Enum) and ours.values == tuple(meta["enum"])
        return [] if same and meta.keys() == {"enum"} else [f"{where}: enum {meta}"]
    if kind == "string":
        if not isinstance(ours, String):
            return [f"{where}: not a String"]
        if meta.get("pattern", TAG_PATTERN) != TAG_PATTERN:
            # The translation of botocore's own text must be valid Python.
            re.compile(java_regex_to_python(meta["pattern"]), re.ASCII)
        got = (ours.min, ours.max, ours.pattern)
        # ModelDataUrl is deliberately wider than the model (local paths, file:// URLs).
        pattern = None if where.endswith(".ModelDataUrl") else meta.get("pattern")
        want = (meta.get("min", 0), meta.get("max"), pattern)
        return [] if got == want else [f"{where}: string {got} vs {want}"]
    if kind in ("integer", "float"):
        expected_type = Integer if kind == "integer" else Float
        if not isinstance(ours, expected_type):
            return [f"{where}: not {kind}"]
        got_bounds = (ours.min, ours.max)
        want_bounds = (meta.get("min"), meta.get("max"))
        return [] if got_bounds == want_bounds else [f"{where}: {got_bounds} vs {want_bounds}"]
    expected_class = {"boolean": Boolean, "timestamp": Timestamp}.get(kind)
    if expected_class is None or not isinstance(ours, expected_class):
        return [f"{where}: {kind} modeled as {type(ours).__name__}"]
    return []


def test_every_operation_has_an_input_shape() -> None:
    """INPUT_SHAPES holds exactly the seventeen operations Coldbrew serves."""
    assert sorted(INPUT_SHAPES) == sorted(OPERATIONS)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_shapes_match_botocore(operation: str) -> None:
    """Member names (in order), required sets and every bound, pattern and enum equal
    botocore's, at every nesting level that is not deliberately permissive."""
    theirs = SERVICE.operation_model(operation).input_shape
    assert differences(INPUT_SHAPES[operation], theirs, operation, set()) == []


def test_permissive_shapes_are_the_documented_ones() -> None:
    """Only the three large, serverless-irrelevant shapes are modeled permissively."""
    seen: set[str] = set()
    for operation in OPERATIONS:
        differences(
            INPUT_SHAPES[operation], SERVICE.operation_model(operation).input_shape, "", seen
        )
    assert seen == PERMISSIVE


# --- Valid inputs, as boto3 sends them ----------------------------------------------------

CONTAINER = {
    "ContainerHostname": "primary",
    "Image": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/xgb:1.7-1",
    "ImageConfig": {
        "RepositoryAccessMode": "Vpc",
        "RepositoryAuthConfig": {"RepositoryCredentialsProviderArn": "arn:aws:lambda:x"},
    },
    "Mode": "SingleModel",
    "ModelDataUrl": "s3://bucket/models/model.tar.gz",
    "ModelDataSource": {
        "S3DataSource": {
            "S3Uri": "s3://bucket/models/",
            "S3DataType": "S3Prefix",
            "CompressionType": "None",
            "ModelAccessConfig": {"AcceptEula": True},
            "HubAccessConfig": {"HubContentArn": "arn:aws:sagemaker:hub"},
            "ManifestS3Uri": "s3://bucket/manifest.json",
            "ETag": "abc",
            "ManifestEtag": "def",
        }
    },
    "AdditionalModelDataSources": [
        {
            "ChannelName": "draft.model-1",
            "S3DataSource": {
                "S3Uri": "s3://bucket/draft/",
                "S3DataType": "S3Object",
                "CompressionType": "Gzip",
            },
        }
    ],
    "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "_X": "line one\nline two"},
    "ModelPackageName": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/pkg/3",
    "InferenceSpecificationName": "spec-1",
    "MultiModelConfig": {"ModelCacheSetting": "Disabled"},
    "ContainerMetricsConfig": {
        "MetricsEndpoints": [
            {"MetricsEndpointPath": "/metrics", "MetricPublishFrequencyInSeconds": 60}
        ]
    },
}
VPC = {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-1", "subnet-2"]}
TAGS = [{"Key": "team", "Value": "ml"}, {"Key": "équipe:nom", "Value": "données 日本 ٣"}]
CAPACITY = {"Type": "CAPACITY_PERCENT", "Value": 10}
DEPLOYMENT = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 60,
            "CanarySize": CAPACITY,
            "LinearStepSize": CAPACITY,
        },
        "TerminationWaitInSeconds": 0,
        "MaximumExecutionTimeoutInSeconds": 600,
    },
    "RollingUpdatePolicy": {
        "MaximumBatchSize": CAPACITY,
        "WaitIntervalInSeconds": 0,
        "MaximumExecutionTimeoutInSeconds": 28800,
        "RollbackMaximumBatchSize": CAPACITY,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors high"}]},
}
INSTANCE_VARIANT = {
    "VariantName": "Blue",
    "ModelName": "m1",
    "InitialInstanceCount": 1,
    "InstanceType": "ml.m5.large",
    "InstancePools": [{"InstanceType": "ml.c5.large", "ModelNameOverride": "m2", "Priority": 1}],
    "VariantInstanceProvisionTimeoutInSeconds": 300,
    "InitialVariantWeight": 0.5,
    "AcceleratorType": "ml.eia2.medium",
    "CoreDumpConfig": {"DestinationS3Uri": "s3://b/dumps", "KmsKeyId": "alias/key"},
    "VolumeSizeInGB": 512,
    "ModelDataDownloadTimeoutInSeconds": 3600,
    "ContainerStartupHealthCheckTimeoutInSeconds": 60,
    "EnableSSMAccess": False,
    "ManagedInstanceScaling": {
        "Status": "ENABLED",
        "MinInstanceCount": 0,
        "MaxInstanceCount": 4,
        "ScaleInPolicy": {
            "Strategy": "IDLE_RELEASE",
            "MaximumStepSize": 1,
            "CooldownInMinutes": 5,
        },
    },
    "RoutingConfig": {
        "RoutingStrategy": "PREFIX_AWARE",
        "PrefixAwareRoutingConfig": {"PrefixLength": 1024, "ConcurrencyThreshold": 8},
    },
    "InferenceAmiVersion": "al2-ami-sagemaker-inference-gpu-2",
    "CapacityReservationConfig": {
        "CapacityReservationPreference": "capacity-reservations-only",
        "MlReservationArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:reservation/r-1",
    },
    "AcceleratorPartitionLayouts": [{"AcceleratorPartitionTypes": ["mig-1g.5gb"]}],
}
CONTENT_TYPES = {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}
WHEN = datetime(2024, 1, 1, tzinfo=UTC)
VALID_CALLS: list[tuple[str, dict[str, Any]]] = [
    (
        "CreateModel",
        {"ModelName": "m1", "ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": "img:1"}},
    ),
    (
        "CreateModel",
        {
            "ModelName": "pipeline-1",
            "Containers": [CONTAINER, {"ModelPackageName": "my-package"}],
            "InferenceExecutionConfig": {"Mode": "Direct"},
            "ExecutionRoleArn": ROLE,
            "Tags": TAGS,
            "VpcConfig": VPC,
            "EnableNetworkIsolation": True,
            "PrimaryContainer": CONTAINER,
        },
    ),
    ("DescribeModel", {"ModelName": "m1"}),
    ("DeleteModel", {"ModelName": "M-1-x"}),
    ("ListModels", {}),
    (
        "ListModels",
        {
            "SortBy": "Name",
            "SortOrder": "Ascending",
            "NextToken": "opaque+token/=",
            "MaxResults": 100,
            "NameContains": "m-1",
            "CreationTimeBefore": WHEN,
            "CreationTimeAfter": datetime(2023, 6, 1, 12, 30, 15, 500000, tzinfo=UTC),
        },
    ),
    (
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "cfg-1",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "m1",
                    "ServerlessConfig": {**SERVERLESS, "ProvisionedConcurrency": 2},
                }
            ],
        },
    ),
    (
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "cfg-2",
            "ProductionVariants": [INSTANCE_VARIANT, {"VariantName": "B", "ModelName": "m1"}],
            "DataCaptureConfig": {
                "EnableCapture": True,
                "InitialSamplingPercentage": 100,
                "DestinationS3Uri": "s3://b/capture",
                "KmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/k",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": CONTENT_TYPES,
            },
            "Tags": TAGS,
            "KmsKeyId": "k",
            "AsyncInferenceConfig": {
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
                "OutputConfig": {"S3OutputPath": "s3://b/out"},
            },
            "ExplainerConfig": {
                "ClarifyExplainerConfig": {"ShapConfig": {"ShapBaselineConfig": {}}}
            },
            "ShadowProductionVariants": [{"VariantName": "Shadow", "ModelName": "m2"}],
            "ExecutionRoleArn": ROLE,
            "VpcConfig": VPC,
            "EnableNetworkIsolation": False,
            "MetricsConfig": {
                "EnableEnhancedMetrics": True,
                "EnableDetailedObservability": False,
                "MetricPublishFrequencyInSeconds": 10,
            },
            "CrossRegionTrafficConfig": {
                "MaxInvocationsPerSecondPerInstance": 10000,
                "MaxCrossRegionPercentPerEndpoint": 1,
            },
        },
    ),
    ("DescribeEndpointConfig", {"EndpointConfigName": "cfg-1"}),
    ("DeleteEndpointConfig", {"EndpointConfigName": "cfg-1"}),
    (
        "ListEndpointConfigs",
        {
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "NextToken": "",
            "MaxResults": 1,
            "NameContains": "cfg",
            "CreationTimeBefore": WHEN,
            "CreationTimeAfter": WHEN,
        },
    ),
    (
        "CreateEndpoint",
        {
            "EndpointName": "ep-1",
            "EndpointConfigName": "cfg-1",
            "DeploymentConfig": DEPLOYMENT,
            "Tags": TAGS,
        },
    ),
    ("DescribeEndpoint", {"EndpointName": "ep--1"}),
    (
        "UpdateEndpoint",
        {
            "EndpointName": "ep-1",
            "EndpointConfigName": "cfg-2",
            "RetainAllVariantProperties": True,
            "ExcludeRetainedVariantProperties": [
                {"VariantPropertyType": "DesiredWeight"},
                {"VariantPropertyType": "DataCaptureConfig"},
            ],
            "DeploymentConfig": {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}]}},
            "RetainDeploymentConfig": False,
        },
    ),
    (
        "UpdateEndpointWeightsAndCapacities",
        {
            "EndpointName": "ep-1",
            "DesiredWeightsAndCapacities": [
                {
                    "VariantName": "AllTraffic",
                    "DesiredWeight": 1.0,
                    "DesiredInstanceCount": 0,
                    "ServerlessUpdateConfig": {"MaxConcurrency": 200, "ProvisionedConcurrency": 1},
                }
            ],
        },
    ),
    ("DeleteEndpoint", {"EndpointName": "ep-1"}),
    (
        "ListEndpoints",
        {
            "SortBy": "Status",
            "SortOrder": "Ascending",
            "NextToken": "t",
            "MaxResults": 10,
            "NameContains": "ep",
            "CreationTimeBefore": WHEN,
            "CreationTimeAfter": WHEN,
            "LastModifiedTimeBefore": WHEN,
            "LastModifiedTimeAfter": WHEN,
            "StatusEquals": "InService",
        },
    ),
    ("AddTags", {"ResourceArn": MODEL_ARN, "Tags": TAGS}),
    ("ListTags", {"ResourceArn": MODEL_ARN, "NextToken": "n", "MaxResults": 50}),
    ("DeleteTags", {"ResourceArn": MODEL_ARN, "TagKeys": ["team", "équipe:nom"]}),
]


def wire_body(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as boto3 would send them, after botocore's own checks pass."""
    model = SERVICE.operation_model(operation)
    report = ParamValidator().validate(params, model.input_shape)
    assert not report.has_errors(), report.generate_report()
    request = create_serializer("json").serialize_to_request(params, model)
    body: dict[str, Any] = orjson.loads(request["body"] or b"{}")
    return body


@pytest.mark.parametrize(("operation", "params"), VALID_CALLS)
def test_valid_boto3_inputs_pass_unchanged(operation: str, params: dict[str, Any]) -> None:
    """A body botocore validates and serializes is accepted and returned unchanged."""
    body = wire_body(operation, params)
    assert validate(INPUT_SHAPES[operation], body, root=operation) == body


def test_valid_examples_use_every_member() -> None:
    """Together the valid examples send every top-level member of every operation, so
    any member a boto3 call may carry is known to be understood."""
    used: dict[str, set[str]] = {operation: set() for operation in OPERATIONS}
    for operation, params in VALID_CALLS:
        used[operation] |= params.keys()
    for operation in OPERATIONS:
        assert used[operation] == set(INPUT_SHAPES[operation].members), operation


# --- Coral messages ---------------------------------------------------------------------


def test_single_violation_message() -> None:
    """One violation: '1 validation error detected: Value ... at <camelCase path> ...'."""
    name = "m" * 64
    assert violations("CreateModel", {"ModelName": name}) == "1 validation error detected: " + one(
        name, "modelName", "Member must have length less than or equal to 63"
    )


def test_several_violations_of_one_member() -> None:
    """Length and pattern failures of one value are both listed, length first, joined by
    '; ', with the pattern shown anchored by ^ as the real service shows it."""
    name = "my_model_" * 8
    assert violations("DescribeModel", {"ModelName": name}) == (
        "2 validation errors detected: "
        + one(name, "modelName", "Member must have length less than or equal to 63")
        + "; "
        + one(name, "modelName", f"Member must satisfy regular expression pattern: {MODEL_PATTERN}")
    )


def test_violations_across_members_are_all_collected_in_model_order() -> None:
    """Every violation in the body is reported, nested paths included, unknown last."""
    body = {
        "Foo": 1,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": "m1", "ServerlessConfig": SERVERLESS},
            {
                "VariantName": "B",
                "ModelName": "m1",
                "ServerlessConfig": {"MemorySizeInMB": 8192, "MaxConcurrency": 0},
            },
        ],
        "EndpointConfigName": "bad_name",
    }
    serverless = "productionVariants.2.member.serverlessConfig"
    assert violations("CreateEndpointConfig", body) == (
        "4 validation errors detected: "
        + one(
            "bad_name",
            "endpointConfigName",
            r"Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
        )
        + "; "
        + one(
            "8192",
            f"{serverless}.memorySizeInMB",
            "Member must have value less than or equal to 6144",
        )
        + "; "
        + one(
            "0", f"{serverless}.maxConcurrency", "Member must have value greater than or equal to 1"
        )
        + "; Value at 'Foo' failed to satisfy constraint: Member is not supported by Coldbrew"
    )


def test_enum_violation_lists_the_value_set() -> None:
    """A wrong-case enum value (which botocore sends as-is) names the allowed set."""
    assert violations("ListEndpoints", {"SortOrder": "descending", "SortBy": "name"}) == (
        "2 validation errors detected: "
        + one("name", "sortBy", "Member must satisfy enum value set: [Name, CreationTime, Status]")
        + "; "
        + one(
            "descending", "sortOrder", "Member must satisfy enum value set: [Ascending, Descending]"
        )
    )


def test_missing_or_null_required_member_must_not_be_null() -> None:
    """An absent or null required member is 'Value null ... Member must not be null'."""
    expected = (
        "2 validation errors detected: "
        "Value null at 'endpointName' failed to satisfy constraint: Member must not be null; "
        "Value null at 'endpointConfigName' failed to satisfy constraint: Member must not be null"
    )
    assert violations("CreateEndpoint", {}) == expected
    assert violations("CreateEndpoint", {"EndpointName": None, "EndpointConfigName": None}) == (
        expected
    )


def test_null_optional_members_are_dropped() -> None:
    """Null means absent: optional nulls are accepted and left out of the result."""
    body = {"ModelName": "m1", "Tags": None, "PrimaryContainer": {"Image": "i", "Mode": None}}
    accepted = validate(INPUT_SHAPES["CreateModel"], body, root="CreateModel input")
    assert accepted == {"ModelName": "m1", "PrimaryContainer": {"Image": "i"}}


def test_unknown_members_are_refused_at_any_depth() -> None:
    """Members the model lacks are violations named as the client spelled them."""
    body = {"ModelName": "m1", "PrimaryContainer": {"Imagee": "x"}, "modelName": "m1"}
    assert violations("CreateModel", body) == (
        "2 validation errors detected: "
        "Value at 'primaryContainer.Imagee' failed to satisfy constraint: "
        "Member is not supported by Coldbrew; "
        "Value at 'modelName' failed to satisfy constraint: Member is not supported by Coldbrew"
    )


def test_list_lengths_and_nested_list_paths() -> None:
    """List lengths use the length wording; list items are '<list>.<n>.member'."""
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    tags[50] = {"Key": "", "Value": "bad!"}
    message = violations("AddTags", {"ResourceArn": MODEL_ARN, "Tags": tags})
    assert message.startswith("3 validation errors detected: Value '[{Key=k0, Value=v}, ")
    assert (
        "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50;"
        in message
    )
    assert message.endswith(
        "; Value '' at 'tags.51.member.key' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1; "
        "Value 'bad!' at 'tags.51.member.value' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"
    )
    assert violations(
        "CreateEndpointConfig", {"EndpointConfigName": "c", "ProductionVariants": []}
    ) == (
        "1 validation error detected: Value '[]' at 'productionVariants' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1"
    )


def test_map_keys_values_and_entry_count() -> None:
    """Environment keys, values and entry count are checked with their own paths."""
    body = {
        "ModelName": "m1",
        "PrimaryContainer": {"Environment": {"1BAD": "v", "GOOD": "x" * 1025}},
    }
    assert violations("CreateModel", body) == (
        "2 validation errors detected: "
        + one(
            "1BAD",
            "primaryContainer.environment",
            "Map keys must satisfy constraint: "
            "[Member must satisfy regular expression pattern: ^[a-zA-Z_][a-zA-Z0-9_]*]",
        )
        + "; "
        + one(
            "x" * 100 + "...",
            "primaryContainer.environment.GOOD",
            "Member must have length less than or equal to 1024",
        )
    )
    crowded = {
        "ModelName": "m1",
        "Containers": [{"Environment": {f"K{i}": "" for i in range(101)}}],
    }
    message = violations("CreateModel", crowded)
    assert message.startswith("1 validation error detected: Value '{K0=, K1=, ")
    assert message.endswith(
        "' at 'containers.1.member.environment' failed to satisfy constraint: "
        "Member must have length less than or equal to 100"
    )


def test_tag_pattern_accepts_unicode_letters_separators_and_numbers() -> None:
    """Tag text may hold any Unicode letter, separator or number plus _.:/=+-@ and
    nothing else."""
    good = ["Ünïcödé", "日本語", "a b", "ideographic\u3000space", "٣٤", "x_.:/=+-@"]
    for text in good:
        body = {"ResourceArn": MODEL_ARN, "Tags": [{"Key": text, "Value": text}]}
        assert validate(INPUT_SHAPES["AddTags"], body, root="AddTags input") == body
    for text in ["a!b", "tab\there", "emoji☕", "#"]:
        message = violations("DeleteTags", {"ResourceArn": MODEL_ARN, "TagKeys": [text]})
        assert message == "1 validation error detected: " + one(
            text,
            "tagKeys.1.member",
            r"Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)",
        )


def test_long_values_are_truncated_in_messages() -> None:
    """A value longer than 100 characters is shown as its first 100 plus '...'."""
    message = violations("DeleteEndpoint", {"EndpointName": "e" * 5000})
    assert message == "1 validation error detected: " + one(
        "e" * 100 + "...", "endpointName", "Member must have length less than or equal to 63"
    )


def test_message_lists_at_most_a_hundred_violations_but_counts_all() -> None:
    """A body with a thousand violations gets a bounded message with the true count."""
    keys = ["!"] * 1000
    message = violations("DeleteTags", {"ResourceArn": MODEL_ARN, "TagKeys": keys})
    assert message.startswith("1001 validation errors detected: ")
    assert message.count("failed to satisfy constraint") == 100


def test_camel_case_lowers_only_the_first_letter() -> None:
    """PascalCase model names become Coral's camelCase path segments."""
    assert camel_case("ModelName") == "modelName"
    assert camel_case("MemorySizeInMB") == "memorySizeInMB"
    assert camel_case("S3DataSource") == "s3DataSource"


# --- Types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (
            {"EndpointConfigName": "c", "ProductionVariants": {"VariantName": "v"}},
            "productionVariants",
        ),
        ({"EndpointConfigName": 7, "ProductionVariants": []}, "endpointConfigName"),
        (
            {
                "EndpointConfigName": "c",
                "ProductionVariants": [
                    {"VariantName": "v", "ServerlessConfig": {"MemorySizeInMB": "2048"}}
                ],
            },
            "productionVariants.1.member.serverlessConfig.memorySizeInMB",
        ),
        (
            {
                "EndpointConfigName": "c",
                "ProductionVariants": [
                    {"VariantName": "v", "ServerlessConfig": {"MaxConcurrency": True}}
                ],
            },
            "productionVariants.1.member.serverlessConfig.maxConcurrency",
        ),
        (
            {
                "EndpointConfigName": "c",
                "ProductionVariants": [
                    {"VariantName": "v", "ServerlessConfig": {"MaxConcurrency": 5.0}}
                ],
            },
            "productionVariants.1.member.serverlessConfig.maxConcurrency",
        ),
        ({"EndpointConfigName": "c", "ProductionVariants": [["v"]]}, "productionVariants.1.member"),
        (
            {"EndpointConfigName": "c", "ProductionVariants": [], "EnableNetworkIsolation": "true"},
            "enableNetworkIsolation",
        ),
        (
            {"EndpointConfigName": "c", "ProductionVariants": [], "AsyncInferenceConfig": []},
            "asyncInferenceConfig",
        ),
        (
            {"EndpointConfigName": "c", "ProductionVariants": [{"InstanceType": 5}]},
            "productionVariants.1.member.instanceType",
        ),
        (
            {"EndpointConfigName": "c", "ProductionVariants": [{"InitialVariantWeight": "1"}]},
            "productionVariants.1.member.initialVariantWeight",
        ),
    ],
)
def test_wrong_json_types_are_serialization_exceptions(body: dict[str, Any], path: str) -> None:
    """A value of the wrong JSON type is a SerializationException naming its path, even
    when other members also break constraints."""
    assert f"at '{path}'" in serialization("CreateEndpointConfig", body)


def test_a_body_that_is_not_an_object_is_a_serialization_exception() -> None:
    """The root must be an object; the message names the input by its root name."""
    assert (
        serialization("ListModels", [1])
        == "The ListModels input must be a JSON object, not a list."
    )
    assert (
        serialization("ListModels", None) == "The ListModels input must be a JSON object, not null."
    )


def test_integers_outside_32_bits_and_non_finite_numbers_are_refused() -> None:
    """Integers beyond Java's int range and NaN/infinite floats are type errors."""
    for value in (2**31, -(2**31) - 1, 10**5000):
        assert "maxResults" in serialization("ListModels", {"MaxResults": value})
    for number in (math.nan, math.inf):
        body = {
            "EndpointName": "e",
            "DesiredWeightsAndCapacities": [{"VariantName": "v", "DesiredWeight": number}],
        }
        serialization("UpdateEndpointWeightsAndCapacities", body)
        serialization("ListModels", {"CreationTimeAfter": number})


def test_float_bounds() -> None:
    """A negative weight breaks the float's minimum of 0."""
    body = {
        "EndpointName": "e",
        "DesiredWeightsAndCapacities": [{"VariantName": "v", "DesiredWeight": -0.5}],
    }
    assert violations(
        "UpdateEndpointWeightsAndCapacities", body
    ) == "1 validation error detected: " + one(
        "-0.5",
        "desiredWeightsAndCapacities.1.member.desiredWeight",
        "Member must have value greater than or equal to 0",
    )


def test_timestamps_accept_epoch_numbers_and_iso_strings() -> None:
    """Epoch seconds (int or float) and ISO-8601 strings pass; other strings do not."""
    for value in (1704067200, 1704067200.25, "2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00"):
        body = {"CreationTimeAfter": value}
        assert validate(INPUT_SHAPES["ListEndpoints"], body, root="ListEndpoints input") == body
    for bad in ("yesterday", "2024-13-01", "1" * 10000):
        assert "creationTimeBefore" in serialization("ListEndpoints", {"CreationTimeBefore": bad})
    assert "lastModifiedTimeAfter" in serialization(
        "ListEndpoints", {"LastModifiedTimeAfter": True}
    )


def test_permissive_members_must_be_plain_shallow_json() -> None:
    """Permissive members accept any plain JSON object but refuse hostile nesting."""
    nested: Any = {}
    for _ in range(100_000):
        nested = {"a": [nested]}
    body = {
        "EndpointConfigName": "c",
        "ProductionVariants": [{"VariantName": "v"}],
        "ExplainerConfig": nested,
    }
    assert "nested more than 32 levels" in serialization("CreateEndpointConfig", body)
    body["ExplainerConfig"] = {"a": [1, 2.5, None, True, {"b": "c"}]}
    assert validate(INPUT_SHAPES["CreateEndpointConfig"], body, root="input") == body
    body["ExplainerConfig"] = {"a": [math.nan]}
    serialization("CreateEndpointConfig", body)


# --- Java patterns ----------------------------------------------------------------------


def test_java_regex_translation() -> None:
    """Java-only constructs become their Python equivalents; the rest is unchanged."""
    assert java_regex_to_python(r"\p{ASCII}*") == r"[\x00-\x7F]*"
    assert java_regex_to_python(r"[\p{Print}\t]+\z") == r"[\x20-\x7E\t]+\Z"
    assert java_regex_to_python(r"a.b[.]\.") == r"a[^\n\r\x85\u2028\u2029]b[.]\."
    assert java_regex_to_python(r"[a-z\-]*:\d{12}") == r"[a-z\-]*:\d{12}"
    for unsupported in (r"[\p{L}]", r"\P{ASCII}", r"[a-z&&[^b]]", "a\\"):
        with pytest.raises(ValueError, match=r"supported|equivalent|backslash"):
            java_regex_to_python(unsupported)
    with pytest.raises(ValueError, match="no Python equivalent"):
        String(0, 10, r"[\p{L}]*")


def test_patterns_keep_java_semantics() -> None:
    """'.' excludes every Java line terminator and \\d matches ASCII digits only."""
    token = String(0, 10, r".*")
    assert token.constraints("a\u2028b") == ["Member must satisfy regular expression pattern: ^.*"]
    assert token.constraints("a b") == []
    arabic_digits = "arn:aws:iam::" + "٣" * 12 + ":role/r"
    body = {"ModelName": "m", "ExecutionRoleArn": ROLE}
    assert validate(INPUT_SHAPES["CreateModel"], body, root="CreateModel input") == body
    message = violations("CreateModel", {"ModelName": "m", "ExecutionRoleArn": arabic_digits})
    assert (
        "at 'executionRoleArn' failed to satisfy constraint: Member must satisfy regular" in message
    )


def test_patterns_are_full_matches() -> None:
    """A valid prefix followed by junk fails the pattern: patterns are anchored."""
    message = violations("DescribeEndpoint", {"EndpointName": "good-name!"})
    assert "Member must satisfy regular expression pattern" in message


# --- Robustness -------------------------------------------------------------------------

STRANGE_TEXT = ["", "\x00", "\ud800", "\udfff", "\uffff", "☕", "\U0001f600", "\n", "é", "-", "_"]


def random_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.02:
        return rng.choice("a_-!") * rng.choice([10_000, 200_000])
    if roll < 0.3:
        return "".join(rng.choice(STRANGE_TEXT) for _ in range(rng.randint(0, 8)))
    return "".join(rng.choice("aZ09-_.:/ s3") for _ in range(rng.randint(0, 70)))


def junk(rng: random.Random, depth: int) -> object:
    """Any JSON value, including values no JSON decoder would produce (NaN, lone
    surrogates, integers far beyond 64 bits)."""
    kinds = ["null", "bool", "int", "float", "str"] + (["list", "dict"] if depth < 6 else [])
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 1024, 6144, 2**31, -(2**63), 10**40, rng.randint(-9999, 9999)])
    if kind == "float":
        return rng.choice([0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 1e308, 2048.0])
    if kind == "str":
        return random_text(rng)
    if kind == "list":
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_text(rng): junk(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def shaped(shape: Shape, rng: random.Random, depth: int = 0) -> object:
    """A value that mostly follows ``shape``, so the fuzz reaches deep members, with
    junk mixed in at every level."""
    if rng.random() < 0.1:
        return junk(rng, depth)
    if isinstance(shape, Structure):
        value = {
            name: shaped(member, rng, depth + 1)
            for name, member in shape.members.items()
            if rng.random() < 0.5
        }
        if rng.random() < 0.1:
            value[random_text(rng)] = junk(rng, depth + 1)
        return value
    if isinstance(shape, ListOf):
        return [shaped(shape.member, rng, depth + 1) for _ in range(rng.choice([0, 1, 2, 11, 51]))]
    if isinstance(shape, MapOf):
        return {
            random_text(rng): shaped(shape.value, rng, depth + 1)
            for _ in range(rng.choice([0, 1, 3, 101]))
        }
    if isinstance(shape, Enum):
        return rng.choice([*shape.values, "", shape.values[0].lower()])
    if isinstance(shape, Integer | Float):
        edges = [b for b in (shape.min, shape.max) if b is not None]
        return rng.choice([*edges, *(b + 1 for b in edges), *(b - 1 for b in edges), 0, 10**12])
    return junk(rng, depth)


def check_outcome(operation: str, body: object) -> None:
    """``validate`` either accepts ``body`` or raises a well-formed 400 ServiceError."""
    try:
        accepted = validate(INPUT_SHAPES[operation], body, root=f"{operation} input")
    except ServiceError as raised:
        error = raised
    else:
        assert isinstance(accepted, dict)
        return
    assert error.status == 400
    assert error.code in ("ValidationException", "SerializationException")
    assert isinstance(error.message, str)
    assert len(error.message) < 100_000
    orjson.dumps({"__type": error.code, "Message": error.message})


@pytest.mark.parametrize("seed", range(8))
def test_fuzz_raises_nothing_but_service_errors(seed: int) -> None:
    """Thousands of random bodies, shaped and unshaped, with huge strings, invalid code
    points, NaN and nesting, only ever produce 400 ServiceErrors with encodable messages."""
    rng = random.Random(seed)
    for _ in range(40):
        for operation in OPERATIONS:
            shape = INPUT_SHAPES[operation]
            check_outcome(operation, shaped(shape, rng))
            check_outcome(operation, junk(rng, 0))


def test_deep_nesting_anywhere_is_a_service_error() -> None:
    """Nesting far beyond the recursion limit, at the root or in any member, is refused
    with a ServiceError, not a RecursionError."""
    deep: Any = []
    for _ in range(200_000):
        deep = [deep]
    for operation in OPERATIONS:
        for name in INPUT_SHAPES[operation].members:
            check_outcome(operation, {name: deep})
            check_outcome(operation, {name: {"x": deep}})
        check_outcome(operation, deep)


def test_shapes_are_shared_read_only() -> None:
    """INPUT_SHAPES and structure members cannot be mutated by a caller."""
    with pytest.raises(TypeError):
        INPUT_SHAPES["Other"] = Structure({})  # type: ignore[index]
    with pytest.raises(TypeError):
        INPUT_SHAPES["CreateModel"].members["X"] = String()  # type: ignore[index]


def test_inconsistent_shapes_are_refused_at_construction() -> None:
    """A required member the structure lacks, or a matcher with no pattern to show in
    messages, is a programming error caught when the shape is built."""
    with pytest.raises(ValueError, match="required"):
        Structure({"A": String()}, required={"B"})
    with pytest.raises(ValueError, match="matcher"):
        MapOf(String(), String(matcher=str.isalpha))


@pytest.mark.parametrize(
    "url", ["/srv/models/iris", "file:///srv/models/iris.tar.gz", "s3://bucket/model.tar.gz"]
)
def test_model_data_url_takes_local_paths_as_well_as_s3(url: str) -> None:
    """ModelDataUrl is wider than the API model: local paths and file:// URLs pass the
    shape (their form is checked by the artifact store)."""
    body = {"ModelName": "m", "PrimaryContainer": {"ModelDataUrl": url}}
    assert validate(INPUT_SHAPES["CreateModel"], body, root="CreateModel") == body
