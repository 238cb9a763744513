"""Where the CLI's client sends runtime and control-plane calls, and as whom."""

from __future__ import annotations

from gateway.cli.client import DEFAULT_URL, client_config, control_config

BOTH = {
    "AWS_ENDPOINT_URL_SAGEMAKER": "http://control:1",
    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": "http://runtime:2",
    "AWS_ENDPOINT_URL": "http://shared:3/",
}


def test_each_api_reads_its_own_url_variable_first() -> None:
    """Control plane: AWS_ENDPOINT_URL_SAGEMAKER; runtime: ..._SAGEMAKER_RUNTIME."""
    assert control_config(BOTH).url == "http://control:1"
    assert client_config(BOTH).url == "http://runtime:2"


def test_both_fall_back_to_the_shared_variable_then_the_local_gateway() -> None:
    """AWS_ENDPOINT_URL (trailing slash dropped), then the local default."""
    shared = {"AWS_ENDPOINT_URL": "http://shared:3/", "AWS_ENDPOINT_URL_SAGEMAKER": ""}
    assert control_config(shared).url == "http://shared:3"
    assert client_config(shared).url == "http://shared:3"
    assert control_config({}).url == client_config({}).url == DEFAULT_URL


def test_the_flag_beats_every_variable() -> None:
    """--endpoint-url wins over the environment for both APIs."""
    assert control_config(BOTH, endpoint_url="http://flag:4").url == "http://flag:4"
    assert client_config(BOTH, endpoint_url="http://flag:4").url == "http://flag:4"


def test_credentials_and_region_come_from_the_environment() -> None:
    """AWS keys, session token and region are used when set; dev defaults otherwise."""
    environ = {
        "AWS_ACCESS_KEY_ID": "AKID",
        "AWS_SECRET_ACCESS_KEY": "SECRET",
        "AWS_SESSION_TOKEN": "TOKEN",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    config = control_config(environ)
    assert config.credential.access_key_id == "AKID"
    assert config.session_token == "TOKEN"
    assert config.region == "eu-west-1"
    assert control_config(environ, region="ap-south-1").region == "ap-south-1"
    default = control_config({})
    assert default.credential.access_key_id == "test"
    assert default.session_token is None
    assert default.region == "us-east-1"
