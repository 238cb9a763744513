"""Input shapes of the control-plane operations Coldbrew serves, as the botocore 1.44.8
service model (``sagemaker`` 2017-07-24) defines them.

Every member of every input shape below is modeled, so any member a real boto3 call can
send is at least understood; the operations refuse the features Coldbrew does not run
(VpcConfig, DataCaptureConfig, ...) with their own messages. Constant names are the
model's shape names in upper snake case; ``INPUT_SHAPES`` maps operation names to their
input structures. Patterns are the model's (Java) text; ``schema`` translates them.

Modeled permissively (checked only as plain JSON of the right kind), being large and
irrelevant to serverless endpoints:

* ``AsyncInferenceConfig`` (CreateEndpointConfig): a JSON object;
* ``ExplainerConfig`` (CreateEndpointConfig): a JSON object; its Clarify settings
  include a 60-value language enum;
* ``ProductionVariantInstanceType`` (ProductionVariant.InstanceType,
  InstancePool.InstanceType): a string; the model's enum has 277 values.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from gateway.control.listing import ENDPOINT_STATUSES
from gateway.control.schema import (
    Boolean,
    Enum,
    Float,
    Integer,
    ListOf,
    MapOf,
    Permissive,
    String,
    Structure,
    Timestamp,
    unicode_word_matcher,
)
from gateway.sagemaker.names import CONTROL_NAME_PATTERN, MAX_NAME_LENGTH

# --- Names, ARNs and other shared strings -------------------------------------------

_NAME_63: Final = CONTROL_NAME_PATTERN
_NAME_CONTAINS: Final = r"[a-zA-Z0-9-]+"
_S3_URL: Final = r"(https|s3)://([^/]+)/?(.*)"
_CONTENT_TYPE: Final = r"[a-zA-Z0-9](-*[a-zA-Z0-9])*\/[a-zA-Z0-9](-*[a-zA-Z0-9.])*"
_TAG_PATTERN: Final = r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"

MODEL_NAME: Final = String(0, 63, r"[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?")
ENDPOINT_NAME: Final = String(0, MAX_NAME_LENGTH, _NAME_63)
ENDPOINT_CONFIG_NAME: Final = String(0, MAX_NAME_LENGTH, _NAME_63)
VARIANT_NAME: Final = String(0, MAX_NAME_LENGTH, _NAME_63)
ROLE_ARN: Final = String(20, 2048, r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
KMS_KEY_ID: Final = String(0, 2048, r"[a-zA-Z0-9:/_-]*")
DESTINATION_S3_URI: Final = String(0, 512, r"(https|s3)://([^/])/?(.*)")
URL: Final = String(0, 1024, _S3_URL)
# Deliberately wider than the API model: Coldbrew also takes an absolute path or a
# file:// URL (a model directory or a model.tar.gz) here; gateway.store.artifacts.check_url
# checks the form, naming the field.
MODEL_DATA_URL: Final = String(0, 1024)
S3_MODEL_URI: Final = String(0, 1024, _S3_URL)
RESOURCE_ARN: Final = String(0, 256, r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]*:[0-9]{12}:.+")
PAGINATION_TOKEN: Final = String(0, 8192, r".*")
NEXT_TOKEN: Final = String(0, 8192, r".*")
MAX_RESULTS: Final = Integer(1, 100)
ORDER_KEY: Final = Enum(["Ascending", "Descending"])
BOOLEAN: Final = Boolean()
TIMESTAMP: Final = Timestamp()
PRODUCTION_VARIANT_INSTANCE_TYPE: Final = Permissive("string")  # 277-value enum

# --- Tags and VPC ---------------------------------------------------------------------

TAG_KEY: Final = String(1, 128, _TAG_PATTERN, matcher=unicode_word_matcher("_.:/=+-@"))
TAG_VALUE: Final = String(0, 256, _TAG_PATTERN, matcher=unicode_word_matcher("_.:/=+-@"))
TAG: Final = Structure({"Key": TAG_KEY, "Value": TAG_VALUE}, required={"Key", "Value"})
TAG_LIST: Final = ListOf(TAG, 0, 50)
TAG_KEY_LIST: Final = ListOf(TAG_KEY, 1, 50)

SECURITY_GROUP_ID: Final = String(0, 32, r"[-0-9a-zA-Z]+")
SUBNET_ID: Final = String(0, 32, r"[-0-9a-zA-Z]+")
VPC_CONFIG: Final = Structure(
    {
        "SecurityGroupIds": ListOf(SECURITY_GROUP_ID, 1, 5),
        "Subnets": ListOf(SUBNET_ID, 1, 16),
    },
    required={"SecurityGroupIds", "Subnets"},
)

# --- CreateModel: ContainerDefinition -------------------------------------------------

IMAGE_CONFIG: Final = Structure(
    {
        "RepositoryAccessMode": Enum(["Platform", "Vpc"]),
        "RepositoryAuthConfig": Structure(
            {"RepositoryCredentialsProviderArn": String(1, 2048, r".*")},
            required={"RepositoryCredentialsProviderArn"},
        ),
    },
    required={"RepositoryAccessMode"},
)
S3_MODEL_DATA_SOURCE: Final = Structure(
    {
        "S3Uri": S3_MODEL_URI,
        "S3DataType": Enum(["S3Prefix", "S3Object"]),
        "CompressionType": Enum(["None", "Gzip"]),
        "ModelAccessConfig": Structure({"AcceptEula": Boolean()}, required={"AcceptEula"}),
        "HubAccessConfig": Structure(
            {"HubContentArn": String(0, 255, r".*")}, required={"HubContentArn"}
        ),
        "ManifestS3Uri": S3_MODEL_URI,
        "ETag": String(),
        "ManifestEtag": String(),
    },
    required={"S3Uri", "S3DataType", "CompressionType"},
)
ADDITIONAL_MODEL_DATA_SOURCE: Final = Structure(
    {
        "ChannelName": String(1, 64, r"[A-Za-z0-9\.\-_]+"),
        "S3DataSource": S3_MODEL_DATA_SOURCE,
    },
    required={"ChannelName", "S3DataSource"},
)
ENVIRONMENT_MAP: Final = MapOf(
    String(0, 1024, r"[a-zA-Z_][a-zA-Z0-9_]*"), String(0, 1024, r"[\S\s]*"), max_entries=100
)
VERSIONED_ARN_OR_NAME: Final = String(
    1,
    176,
    r"(arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:[a-z\-]*\/)?"
    r"([a-zA-Z0-9]([a-zA-Z0-9-]){0,62})(?<!-)(\/[0-9]{1,9})?",
)
METRICS_ENDPOINT: Final = Structure(
    {
        "MetricsEndpointPath": String(0, 256, r"/(?!.*\.\.)[a-zA-Z0-9/_.\-]+"),
        "MetricPublishFrequencyInSeconds": Integer(),
    },
    required={"MetricsEndpointPath"},
)
CONTAINER_DEFINITION: Final = Structure(
    {
        "ContainerHostname": String(0, 63, _NAME_63),
        "Image": String(0, 255, r"[\S]+"),
        "ImageConfig": IMAGE_CONFIG,
        "Mode": Enum(["SingleModel", "MultiModel"]),
        "ModelDataUrl": MODEL_DATA_URL,
        "ModelDataSource": Structure({"S3DataSource": S3_MODEL_DATA_SOURCE}),
        "AdditionalModelDataSources": ListOf(ADDITIONAL_MODEL_DATA_SOURCE, 0, 5),
        "Environment": ENVIRONMENT_MAP,
        "ModelPackageName": VERSIONED_ARN_OR_NAME,
        "InferenceSpecificationName": String(1, 63, _NAME_63),
        "MultiModelConfig": Structure({"ModelCacheSetting": Enum(["Enabled", "Disabled"])}),
        "ContainerMetricsConfig": Structure({"MetricsEndpoints": ListOf(METRICS_ENDPOINT, 0, 1)}),
    }
)

# --- CreateEndpointConfig: ProductionVariant and friends ------------------------------

PRODUCTION_VARIANT_SERVERLESS_CONFIG: Final = Structure(
    {
        "MemorySizeInMB": Integer(1024, 6144),
        "MaxConcurrency": Integer(1, 200),
        "ProvisionedConcurrency": Integer(1, 200),
    },
    required={"MemorySizeInMB", "MaxConcurrency"},
)
PRODUCTION_VARIANT_SERVERLESS_UPDATE_CONFIG: Final = Structure(
    {"MaxConcurrency": Integer(1, 200), "ProvisionedConcurrency": Integer(1, 200)}
)
VARIANT_WEIGHT: Final = Float(min=0)
INSTANCE_POOL: Final = Structure(
    {
        "InstanceType": PRODUCTION_VARIANT_INSTANCE_TYPE,
        "ModelNameOverride": MODEL_NAME,
        "Priority": Integer(1, 5),
    },
    required={"InstanceType", "Priority"},
)
PRODUCTION_VARIANT_MANAGED_INSTANCE_SCALING: Final = Structure(
    {
        "Status": Enum(["ENABLED", "DISABLED"]),
        "MinInstanceCount": Integer(min=0),
        "MaxInstanceCount": Integer(min=1),
        "ScaleInPolicy": Structure(
            {
                "Strategy": Enum(["IDLE_RELEASE", "CONSOLIDATION"]),
                "MaximumStepSize": Integer(1, 100),
                "CooldownInMinutes": Integer(5, 1440),
            },
            required={"Strategy"},
        ),
    }
)
PRODUCTION_VARIANT_ROUTING_CONFIG: Final = Structure(
    {
        "RoutingStrategy": Enum(
            ["LEAST_OUTSTANDING_REQUESTS", "RANDOM", "PREFIX_AWARE", "KV_AWARE"]
        ),
        "PrefixAwareRoutingConfig": Structure(
            {"PrefixLength": Integer(1024, 65536), "ConcurrencyThreshold": Integer(1, 1024)}
        ),
    },
    required={"RoutingStrategy"},
)
PRODUCTION_VARIANT_CAPACITY_RESERVATION_CONFIG: Final = Structure(
    {
        "CapacityReservationPreference": Enum(["capacity-reservations-only"]),
        "MlReservationArn": String(
            20, 258, r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:[a-z0-9\-]{1,14}/.*"
        ),
    }
)
ACCELERATOR_PARTITION_LAYOUT: Final = Structure(
    {
        "AcceleratorPartitionTypes": ListOf(
            String(0, 32, r"mig-[0-9]+g\.[0-9]+gb([+-][a-z0-9.]+)*"), 0, 32
        )
    }
)
PRODUCTION_VARIANT: Final = Structure(
    {
        "VariantName": VARIANT_NAME,
        "ModelName": MODEL_NAME,
        "InitialInstanceCount": Integer(min=1),
        "InstanceType": PRODUCTION_VARIANT_INSTANCE_TYPE,
        "InstancePools": ListOf(INSTANCE_POOL, 1, 5),
        "VariantInstanceProvisionTimeoutInSeconds": Integer(300, 3600),
        "InitialVariantWeight": VARIANT_WEIGHT,
        "AcceleratorType": Enum(
            [
                "ml.eia1.medium",
                "ml.eia1.large",
                "ml.eia1.xlarge",
                "ml.eia2.medium",
                "ml.eia2.large",
                "ml.eia2.xlarge",
            ]
        ),
        "CoreDumpConfig": Structure(
            {"DestinationS3Uri": DESTINATION_S3_URI, "KmsKeyId": KMS_KEY_ID},
            required={"DestinationS3Uri"},
        ),
        "ServerlessConfig": PRODUCTION_VARIANT_SERVERLESS_CONFIG,
        "VolumeSizeInGB": Integer(1, 512),
        "ModelDataDownloadTimeoutInSeconds": Integer(60, 3600),
        "ContainerStartupHealthCheckTimeoutInSeconds": Integer(60, 3600),
        "EnableSSMAccess": Boolean(),
        "ManagedInstanceScaling": PRODUCTION_VARIANT_MANAGED_INSTANCE_SCALING,
        "RoutingConfig": PRODUCTION_VARIANT_ROUTING_CONFIG,
        "InferenceAmiVersion": Enum(
            [
                "al2-ami-sagemaker-inference-gpu-2",
                "al2-ami-sagemaker-inference-gpu-2-1",
                "al2-ami-sagemaker-inference-gpu-3-1",
                "al2-ami-sagemaker-inference-neuron-2",
                "al2023-ami-sagemaker-inference-gpu-4-1",
            ]
        ),
        "CapacityReservationConfig": PRODUCTION_VARIANT_CAPACITY_RESERVATION_CONFIG,
        "AcceleratorPartitionLayouts": ListOf(ACCELERATOR_PARTITION_LAYOUT, 1, 32),
    },
    required={"VariantName"},
)
PRODUCTION_VARIANT_LIST: Final = ListOf(PRODUCTION_VARIANT, 1, 10)

_CONTENT_TYPES: Final = ListOf(String(1, 256, _CONTENT_TYPE), 1, 10)
DATA_CAPTURE_CONFIG: Final = Structure(
    {
        "EnableCapture": Boolean(),
        "InitialSamplingPercentage": Integer(0, 100),
        "DestinationS3Uri": DESTINATION_S3_URI,
        "KmsKeyId": KMS_KEY_ID,
        "CaptureOptions": ListOf(
            Structure(
                {"CaptureMode": Enum(["Input", "Output", "InputAndOutput"])},
                required={"CaptureMode"},
            ),
            1,
            32,
        ),
        "CaptureContentTypeHeader": Structure(
            {"CsvContentTypes": _CONTENT_TYPES, "JsonContentTypes": _CONTENT_TYPES}
        ),
    },
    required={"InitialSamplingPercentage", "DestinationS3Uri", "CaptureOptions"},
)
ASYNC_INFERENCE_CONFIG: Final = Permissive("object")
EXPLAINER_CONFIG: Final = Permissive("object")
METRICS_CONFIG: Final = Structure(
    {
        "EnableEnhancedMetrics": Boolean(),
        "EnableDetailedObservability": Boolean(),
        "MetricPublishFrequencyInSeconds": Integer(),
    }
)
CROSS_REGION_TRAFFIC_CONFIG: Final = Structure(
    {
        "MaxInvocationsPerSecondPerInstance": Integer(1, 10000),
        "MaxCrossRegionPercentPerEndpoint": Integer(1, 100),
    },
    required={"MaxInvocationsPerSecondPerInstance", "MaxCrossRegionPercentPerEndpoint"},
)

# --- CreateEndpoint / UpdateEndpoint: DeploymentConfig --------------------------------

CAPACITY_SIZE: Final = Structure(
    {"Type": Enum(["INSTANCE_COUNT", "CAPACITY_PERCENT"]), "Value": Integer(min=1)},
    required={"Type", "Value"},
)
WAIT_INTERVAL_IN_SECONDS: Final = Integer(0, 3600)
MAXIMUM_EXECUTION_TIMEOUT_IN_SECONDS: Final = Integer(600, 28800)
DEPLOYMENT_CONFIG: Final = Structure(
    {
        "BlueGreenUpdatePolicy": Structure(
            {
                "TrafficRoutingConfiguration": Structure(
                    {
                        "Type": Enum(["ALL_AT_ONCE", "CANARY", "LINEAR"]),
                        "WaitIntervalInSeconds": WAIT_INTERVAL_IN_SECONDS,
                        "CanarySize": CAPACITY_SIZE,
                        "LinearStepSize": CAPACITY_SIZE,
                    },
                    required={"Type", "WaitIntervalInSeconds"},
                ),
                "TerminationWaitInSeconds": Integer(0, 3600),
                "MaximumExecutionTimeoutInSeconds": MAXIMUM_EXECUTION_TIMEOUT_IN_SECONDS,
            },
            required={"TrafficRoutingConfiguration"},
        ),
        "RollingUpdatePolicy": Structure(
            {
                "MaximumBatchSize": CAPACITY_SIZE,
                "WaitIntervalInSeconds": WAIT_INTERVAL_IN_SECONDS,
                "MaximumExecutionTimeoutInSeconds": MAXIMUM_EXECUTION_TIMEOUT_IN_SECONDS,
                "RollbackMaximumBatchSize": CAPACITY_SIZE,
            },
            required={"MaximumBatchSize", "WaitIntervalInSeconds"},
        ),
        "AutoRollbackConfiguration": Structure(
            {"Alarms": ListOf(Structure({"AlarmName": String(1, 255, r"(?!\s*$).+")}), 1, 10)}
        ),
    }
)

# --- Operation inputs -------------------------------------------------------------------

_LIST_TIME_FILTERS: Final = {"CreationTimeBefore": TIMESTAMP, "CreationTimeAfter": TIMESTAMP}

CREATE_MODEL_INPUT: Final = Structure(
    {
        "ModelName": MODEL_NAME,
        "PrimaryContainer": CONTAINER_DEFINITION,
        "Containers": ListOf(CONTAINER_DEFINITION, 0, 15),
        "InferenceExecutionConfig": Structure(
            {"Mode": Enum(["Serial", "Direct"])}, required={"Mode"}
        ),
        "ExecutionRoleArn": ROLE_ARN,
        "Tags": TAG_LIST,
        "VpcConfig": VPC_CONFIG,
        "EnableNetworkIsolation": BOOLEAN,
    },
    required={"ModelName"},
)
LIST_MODELS_INPUT: Final = Structure(
    {
        "SortBy": Enum(["Name", "CreationTime"]),
        "SortOrder": ORDER_KEY,
        "NextToken": PAGINATION_TOKEN,
        "MaxResults": MAX_RESULTS,
        "NameContains": String(0, 63, _NAME_CONTAINS),
        **_LIST_TIME_FILTERS,
    }
)
CREATE_ENDPOINT_CONFIG_INPUT: Final = Structure(
    {
        "EndpointConfigName": ENDPOINT_CONFIG_NAME,
        "ProductionVariants": PRODUCTION_VARIANT_LIST,
        "DataCaptureConfig": DATA_CAPTURE_CONFIG,
        "Tags": TAG_LIST,
        "KmsKeyId": KMS_KEY_ID,
        "AsyncInferenceConfig": ASYNC_INFERENCE_CONFIG,
        "ExplainerConfig": EXPLAINER_CONFIG,
        "ShadowProductionVariants": PRODUCTION_VARIANT_LIST,
        "ExecutionRoleArn": ROLE_ARN,
        "VpcConfig": VPC_CONFIG,
        "EnableNetworkIsolation": BOOLEAN,
        "MetricsConfig": METRICS_CONFIG,
        "CrossRegionTrafficConfig": CROSS_REGION_TRAFFIC_CONFIG,
    },
    required={"EndpointConfigName", "ProductionVariants"},
)
LIST_ENDPOINT_CONFIGS_INPUT: Final = Structure(
    {
        "SortBy": Enum(["Name", "CreationTime"]),
        "SortOrder": ORDER_KEY,
        "NextToken": PAGINATION_TOKEN,
        "MaxResults": MAX_RESULTS,
        "NameContains": String(0, 63, _NAME_CONTAINS),
        **_LIST_TIME_FILTERS,
    }
)
CREATE_ENDPOINT_INPUT: Final = Structure(
    {
        "EndpointName": ENDPOINT_NAME,
        "EndpointConfigName": ENDPOINT_CONFIG_NAME,
        "DeploymentConfig": DEPLOYMENT_CONFIG,
        "Tags": TAG_LIST,
    },
    required={"EndpointName", "EndpointConfigName"},
)
UPDATE_ENDPOINT_INPUT: Final = Structure(
    {
        "EndpointName": ENDPOINT_NAME,
        "EndpointConfigName": ENDPOINT_CONFIG_NAME,
        "RetainAllVariantProperties": BOOLEAN,
        "ExcludeRetainedVariantProperties": ListOf(
            Structure(
                {
                    "VariantPropertyType": Enum(
                        ["DesiredInstanceCount", "DesiredWeight", "DataCaptureConfig"]
                    )
                },
                required={"VariantPropertyType"},
            ),
            0,
            3,
        ),
        "DeploymentConfig": DEPLOYMENT_CONFIG,
        "RetainDeploymentConfig": BOOLEAN,
    },
    required={"EndpointName", "EndpointConfigName"},
)
DESIRED_WEIGHT_AND_CAPACITY: Final = Structure(
    {
        "VariantName": VARIANT_NAME,
        "DesiredWeight": VARIANT_WEIGHT,
        "DesiredInstanceCount": Integer(min=0),
        "ServerlessUpdateConfig": PRODUCTION_VARIANT_SERVERLESS_UPDATE_CONFIG,
    },
    required={"VariantName"},
)
UPDATE_ENDPOINT_WEIGHTS_AND_CAPACITIES_INPUT: Final = Structure(
    {
        "EndpointName": ENDPOINT_NAME,
        "DesiredWeightsAndCapacities": ListOf(DESIRED_WEIGHT_AND_CAPACITY, 1),
    },
    required={"EndpointName", "DesiredWeightsAndCapacities"},
)
LIST_ENDPOINTS_INPUT: Final = Structure(
    {
        "SortBy": Enum(["Name", "CreationTime", "Status"]),
        "SortOrder": ORDER_KEY,
        "NextToken": PAGINATION_TOKEN,
        "MaxResults": MAX_RESULTS,
        "NameContains": String(0, 63, _NAME_CONTAINS),
        **_LIST_TIME_FILTERS,
        "LastModifiedTimeBefore": TIMESTAMP,
        "LastModifiedTimeAfter": TIMESTAMP,
        "StatusEquals": Enum(ENDPOINT_STATUSES),
    }
)


def _by_name(member: str, shape: String) -> Structure:
    return Structure({member: shape}, required={member})


INPUT_SHAPES: Final[Mapping[str, Structure]] = MappingProxyType(
    {
        "CreateModel": CREATE_MODEL_INPUT,
        "DescribeModel": _by_name("ModelName", MODEL_NAME),
        "DeleteModel": _by_name("ModelName", MODEL_NAME),
        "ListModels": LIST_MODELS_INPUT,
        "CreateEndpointConfig": CREATE_ENDPOINT_CONFIG_INPUT,
        "DescribeEndpointConfig": _by_name("EndpointConfigName", ENDPOINT_CONFIG_NAME),
        "DeleteEndpointConfig": _by_name("EndpointConfigName", ENDPOINT_CONFIG_NAME),
        "ListEndpointConfigs": LIST_ENDPOINT_CONFIGS_INPUT,
        "CreateEndpoint": CREATE_ENDPOINT_INPUT,
        "DescribeEndpoint": _by_name("EndpointName", ENDPOINT_NAME),
        "UpdateEndpoint": UPDATE_ENDPOINT_INPUT,
        "UpdateEndpointWeightsAndCapacities": UPDATE_ENDPOINT_WEIGHTS_AND_CAPACITIES_INPUT,
        "DeleteEndpoint": _by_name("EndpointName", ENDPOINT_NAME),
        "ListEndpoints": LIST_ENDPOINTS_INPUT,
        "AddTags": Structure(
            {"ResourceArn": RESOURCE_ARN, "Tags": TAG_LIST}, required={"ResourceArn", "Tags"}
        ),
        "ListTags": Structure(
            {"ResourceArn": RESOURCE_ARN, "NextToken": NEXT_TOKEN, "MaxResults": Integer(min=50)},
            required={"ResourceArn"},
        ),
        "DeleteTags": Structure(
            {"ResourceArn": RESOURCE_ARN, "TagKeys": TAG_KEY_LIST},
            required={"ResourceArn", "TagKeys"},
        ),
    }
)
"""The input structure of each operation, keyed by operation name (``CreateModel``)."""
