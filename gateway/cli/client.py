"""A small signed client of the gateway's own API, for the ``coldbrew`` CLI.

It reads the usual AWS environment (credentials, region, endpoint URL), so it works
against a remote gateway as well as the local one. Blocking: the CLI is a script.

Two APIs, two URL lookups, as boto3 does them: the runtime (``invoke_endpoint``) reads
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` first (``client_config``); the control plane
(``call``) reads ``AWS_ENDPOINT_URL_SAGEMAKER`` first (``control_config``). Both fall back
to ``AWS_ENDPOINT_URL``, then the local gateway.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import orjson

from gateway.edge.sigv4 import Credential, sign
from gateway.settings import DEV_CREDENTIAL

DEFAULT_URL = "http://127.0.0.1:8080"
RUNTIME_URL_VARIABLES: Final = ("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ENDPOINT_URL")
CONTROL_URL_VARIABLES: Final = ("AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ENDPOINT_URL")
CONTROL_CONTENT_TYPE: Final = "application/x-amz-json-1.1"
TARGET_PREFIX: Final = "SageMaker."
# Longest stretch of a non-AWS error body quoted in an ApiError message.
_QUOTED_BODY_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class ClientConfig:
    url: str
    region: str
    credential: Credential
    session_token: str | None


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: int
    headers: Mapping[str, str]
    body: bytes


class ApiError(Exception):
    """The control plane answered with an error: ``code`` is the AWS error code (the
    body's ``__type``, or the HTTP status as text when the body has none)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def client_config(
    environ: Mapping[str, str], *, endpoint_url: str | None = None, region: str | None = None
) -> ClientConfig:
    """Where and as whom to call the runtime: flags first, then the AWS environment
    variables (``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, ``AWS_ENDPOINT_URL``), then the
    local gateway with the development credential."""
    return _config(environ, RUNTIME_URL_VARIABLES, endpoint_url, region)


def control_config(
    environ: Mapping[str, str], *, endpoint_url: str | None = None, region: str | None = None
) -> ClientConfig:
    """Where and as whom to call the control plane: like ``client_config``, but the URL
    variables are ``AWS_ENDPOINT_URL_SAGEMAKER``, then ``AWS_ENDPOINT_URL``."""
    return _config(environ, CONTROL_URL_VARIABLES, endpoint_url, region)


def _config(
    environ: Mapping[str, str],
    url_variables: tuple[str, ...],
    endpoint_url: str | None,
    region: str | None,
) -> ClientConfig:
    url = endpoint_url or next(
        (environ[name] for name in url_variables if environ.get(name)), DEFAULT_URL
    )
    key = environ.get("AWS_ACCESS_KEY_ID")
    secret = environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        # The account is the gateway's business (it maps keys to accounts); unknown here.
        credential = Credential(key, secret, "")
        token = environ.get("AWS_SESSION_TOKEN") or None
    else:
        credential = Credential(DEV_CREDENTIAL.access_key_id, DEV_CREDENTIAL.secret_access_key, "")
        token = None
    chosen_region = (
        region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    )
    return ClientConfig(url.rstrip("/"), chosen_region, credential, token)


def invoke_endpoint(
    config: ClientConfig,
    name: str,
    body: bytes,
    *,
    content_type: str | None = None,
    accept: str | None = None,
    timeout_s: float = 70.0,
) -> HttpResult:
    """POST one signed invocation; return the answer whatever its status. Raises OSError
    when the gateway cannot be reached or does not answer in HTTP."""
    url = f"{config.url}/endpoints/{quote(name, safe='')}/invocations"
    headers: dict[str, str] = {}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    return _signed_post(config, url, headers, body, timeout_s)


def call(
    config: ClientConfig, operation: str, body: Mapping[str, Any], *, timeout_s: float = 30.0
) -> dict[str, Any]:
    """Run one control-plane operation (AWS JSON 1.1) and return its output object.

    Raises ApiError for an error answer (any status of 300 or more) and for a success
    whose body is not a JSON object; OSError when the gateway cannot be reached or does
    not answer in HTTP; ValueError for a ``config.url`` that is not http(s).
    """
    headers = {"Content-Type": CONTROL_CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation}
    result = _signed_post(config, config.url + "/", headers, orjson.dumps(body), timeout_s)
    if result.status >= 300:
        raise _error_of(result, config.url)
    if not result.body.strip():
        return {}
    try:
        output = orjson.loads(result.body)
    except orjson.JSONDecodeError:
        output = None
    if not isinstance(output, dict):
        raise ApiError(
            "InvalidResponse",
            f"{operation} answered {result.status} with a body that is not a JSON object: "
            f"{_quote(result.body)}",
            result.status,
        )
    return output


def _error_of(result: HttpResult, url: str) -> ApiError:
    """The error an answer carries, read as botocore reads AWS JSON errors (spec §2.3);
    an answer without ``__type`` is coded by its HTTP status."""
    try:
        document = orjson.loads(result.body)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("__type"), str):
        code = document["__type"].rsplit("#", 1)[-1].split(":", 1)[0]
        message = document.get("message") or document.get("Message") or ""
        return ApiError(code, str(message), result.status)
    reason = http.client.responses.get(result.status, "HTTP error")
    return ApiError(
        str(result.status),
        f"{reason} (not an AWS error answer; is {url} a SageMaker API endpoint?)",
        result.status,
    )


def _quote(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    if len(text) > _QUOTED_BODY_CHARS:
        return text[:_QUOTED_BODY_CHARS] + "..."
    return text


def _signed_post(
    config: ClientConfig, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
) -> HttpResult:
    """Sign and POST; return the answer whatever its status. Raises OSError when the
    gateway cannot be reached or does not answer in HTTP, ValueError for a non-http URL."""
    signed = sign(
        method="POST",
        url=url,
        headers=headers,
        body=body,
        credential=config.credential,
        region=config.region,
        now=time.time(),
        session_token=config.session_token,
    )
    request = urllib.request.Request(url, data=body, headers=signed, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return HttpResult(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpResult(error.code, dict(error.headers), error.read())
    except http.client.HTTPException as error:
        # Something answered, but not in HTTP: as unreachable as no answer at all.
        raise ConnectionError(f"not an HTTP answer ({error!r})") from error
