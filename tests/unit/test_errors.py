"""SageMaker-shaped error responses, and that botocore's own parsers read them correctly."""

from __future__ import annotations

import io
from typing import Any

import boto3
import botocore.config
import botocore.session
import orjson
import pytest
import urllib3
from aiohttp import web
from botocore.awsrequest import AWSResponse
from botocore.endpoint import convert_to_response_dict
from botocore.parsers import create_parser

from gateway.edge.errors import Flavor, error_response
from gateway.sagemaker.errors import (
    ServiceError,
    internal_failure,
    model_error,
    service_unavailable,
    throttling,
    validation_error,
    validation_exception,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
REQUEST_ID = "0f1e2d3c-0000-4000-8000-000000000001"
SESSION = botocore.session.get_session()
RUNTIME = SESSION.get_service_model("sagemaker-runtime")
CONTROL = SESSION.get_service_model("sagemaker")


def body_of(response: web.Response) -> dict[str, Any]:
    assert isinstance(response.body, bytes)
    parsed = orjson.loads(response.body)
    assert isinstance(parsed, dict)
    return parsed


def a_model_error(status: int = 404, message: str = "no such route") -> ServiceError:
    return model_error(
        original_status=status,
        original_message=message,
        endpoint="my-endpoint",
        account=ACCOUNT,
        region=REGION,
    )


def to_http_response(response: web.Response) -> AWSResponse:
    """The gateway's response as botocore's transport would hand it over."""
    assert isinstance(response.body, bytes)
    raw = urllib3.HTTPResponse(body=io.BytesIO(response.body), preload_content=False)
    return AWSResponse("http://gateway.test/", response.status, dict(response.headers), raw)


def parse_as_client(response: web.Response, service: Any, operation_name: str) -> dict[str, Any]:
    """Parse an error response the way a botocore client does: the error first, then the
    members of the modeled error shape named by its code, merged in."""
    operation = service.operation_model(operation_name)
    parser = create_parser(service.metadata["protocol"])
    response_dict = convert_to_response_dict(to_http_response(response), operation)
    parsed: dict[str, Any] = parser.parse(response_dict, operation.output_shape)
    shape = service.shape_for_error_code(parsed["Error"]["Code"])
    if shape is not None:
        parsed.update(parser.parse(response_dict, shape))
    return parsed


def test_the_parsers_are_the_expected_protocols() -> None:
    """The control plane is parsed as AWS JSON and the runtime as REST-JSON."""
    assert CONTROL.metadata["protocol"] == "json"
    assert RUNTIME.metadata["protocol"] == "rest-json"


def test_control_flavour_carries_the_code_only_in_the_body() -> None:
    """Control errors are AWS JSON 1.1 with __type in the body and no x-amzn-ErrorType."""
    response = error_response(validation_exception("bad name"), Flavor.CONTROL, REQUEST_ID)
    assert response.status == 400
    assert response.content_type == "application/x-amz-json-1.1"
    assert "x-amzn-ErrorType" not in response.headers
    assert response.headers["x-amzn-RequestId"] == REQUEST_ID
    assert body_of(response) == {"__type": "ValidationException", "Message": "bad name"}


def test_runtime_flavour_carries_the_code_in_header_and_body() -> None:
    """Runtime errors are JSON with the code in x-amzn-ErrorType and in the body's __type."""
    response = error_response(validation_error("bad body"), Flavor.RUNTIME, REQUEST_ID)
    assert response.status == 400
    assert response.content_type == "application/json"
    assert response.headers["x-amzn-ErrorType"] == "ValidationError"
    assert response.headers["x-amzn-RequestId"] == REQUEST_ID
    assert body_of(response) == {"__type": "ValidationError", "Message": "bad body"}


def test_extra_headers_are_sent() -> None:
    """Headers attached to an error (e.g. a retry hint) reach the response."""
    error = ServiceError(503, "ServiceUnavailable", "busy", headers={"x-amz-retry-after": "300"})
    response = error_response(error, Flavor.RUNTIME, REQUEST_ID)
    assert response.headers["x-amz-retry-after"] == "300"
    assert response.headers["x-amzn-ErrorType"] == "ServiceUnavailable"


def test_constructors_use_the_documented_statuses_and_codes() -> None:
    """Each helper maps to the spec's HTTP status and code."""
    cases = {
        validation_error("m"): (400, "ValidationError"),
        validation_exception("m"): (400, "ValidationException"),
        throttling(): (400, "ThrottlingException"),
        service_unavailable("m"): (503, "ServiceUnavailable"),
        internal_failure("rid-9"): (500, "InternalFailure"),
        a_model_error(): (424, "ModelError"),
    }
    assert {(e.status, e.code) for e in cases} == set(cases.values())
    assert throttling().message is None
    assert "rid-9" in (internal_failure("rid-9").message or "")


def test_model_error_members_and_client_wording() -> None:
    """A 4xx from the model gives ModelError 424 with the real members and client wording."""
    error = a_model_error(404, "no such route")
    assert error.status == 424
    assert error.members == {
        "OriginalStatusCode": 404,
        "OriginalMessage": "no such route",
        "LogStreamArn": (
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/my-endpoint"
        ),
    }
    assert error.message is not None
    assert error.message.startswith(
        'Received client error (404) from primary with message "no such route". '
    )
    assert f"in account {ACCOUNT} for more information." in error.message
    assert "/aws/sagemaker/Endpoints/my-endpoint" in error.message


@pytest.mark.parametrize("status", [0, 302, 500, 503])
def test_model_error_outside_4xx_is_a_server_error(status: int) -> None:
    """Any original status outside 4xx (including 0 for a timeout) is worded as server error."""
    message = a_model_error(status, "boom").message
    assert message is not None
    assert message.startswith(f'Received server error ({status}) from primary with message "boom"')


@pytest.mark.parametrize("status", [400, 499])
def test_model_error_4xx_bounds_are_client_errors(status: int) -> None:
    """Both ends of 4xx are worded as client error."""
    message = a_model_error(status).message
    assert message is not None
    assert message.startswith(f"Received client error ({status})")


def test_botocore_reads_model_error_with_its_members() -> None:
    """botocore's REST-JSON parser yields code ModelError and every ModelError member."""
    error = a_model_error(404, 'bad "input"')
    response = error_response(error, Flavor.RUNTIME, REQUEST_ID)
    parsed = parse_as_client(response, RUNTIME, "InvokeEndpoint")
    assert parsed["Error"] == {"Code": "ModelError", "Message": error.message}
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert parsed["ResponseMetadata"]["RequestId"] == REQUEST_ID
    assert parsed["OriginalStatusCode"] == 404
    assert parsed["OriginalMessage"] == 'bad "input"'
    assert parsed["LogStreamArn"] == error.members["LogStreamArn"]
    assert parsed["Message"] == error.message


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (validation_error("Endpoint x of account 1 not found."), 400),
        (internal_failure("rid"), 500),
        (service_unavailable("warming up"), 503),
        (throttling("endpoint concurrency exceeded"), 400),
        (throttling(), 400),
    ],
    ids=["validation", "internal", "unavailable", "throttling", "throttling-null"],
)
def test_botocore_reads_runtime_error_codes(error: ServiceError, status: int) -> None:
    """Every runtime error comes out of botocore with our code, message and status."""
    response = error_response(error, Flavor.RUNTIME, REQUEST_ID)
    parsed = parse_as_client(response, RUNTIME, "InvokeEndpoint")
    assert parsed["Error"]["Code"] == error.code
    assert parsed["Error"]["Message"] == error.message  # a null message stays null
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == status


def test_botocore_reads_control_plane_errors_from_the_body() -> None:
    """botocore's JSON parser takes the control-plane code from __type."""
    response = error_response(validation_exception("Could not find endpoint"), Flavor.CONTROL, "r")
    parsed = parse_as_client(response, CONTROL, "DescribeEndpoint")
    assert parsed["Error"] == {"Code": "ValidationException", "Message": "Could not find endpoint"}
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_botocore_reads_a_modeled_control_plane_error() -> None:
    """A modeled control-plane error (ResourceLimitExceeded) gets its Message member."""
    error = ServiceError(400, "ResourceLimitExceeded", "too many serverless endpoints")
    response = error_response(error, Flavor.CONTROL, REQUEST_ID)
    parsed = parse_as_client(response, CONTROL, "CreateEndpoint")
    assert parsed["Error"]["Code"] == "ResourceLimitExceeded"
    assert parsed["Message"] == "too many serverless endpoints"


def test_a_real_client_raises_modeled_model_error() -> None:
    """A boto3 client receiving our ModelError raises client.exceptions.ModelError with members."""
    error = a_model_error(500, "handler crashed")
    response = error_response(error, Flavor.RUNTIME, REQUEST_ID)
    client = boto3.client(
        "sagemaker-runtime",
        region_name=REGION,
        endpoint_url="http://gateway.test",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )

    def answer(**_: Any) -> AWSResponse:
        # Hands our response to the client in place of the network round trip.
        return to_http_response(response)

    client.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", answer)
    with pytest.raises(client.exceptions.ModelError) as caught:
        client.invoke_endpoint(EndpointName="my-endpoint", Body=b"{}")
    got = caught.value.response
    assert got["Error"]["Code"] == "ModelError"
    assert got["OriginalStatusCode"] == 500
    assert got["OriginalMessage"] == "handler crashed"
    assert got["LogStreamArn"] == error.members["LogStreamArn"]
