"""A small signed client of the gateway's own API, for the ``coldbrew`` CLI.

It reads the usual AWS environment (credentials, region, endpoint URL), so it works
against a remote gateway as well as the local one. Blocking: the CLI is a script.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from gateway.settings import DEV_CREDENTIAL
from gateway.sigv4 import Credential, sign

DEFAULT_URL = "http://127.0.0.1:8080"


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


def client_config(
    environ: Mapping[str, str], *, endpoint_url: str | None = None, region: str | None = None
) -> ClientConfig:
    """Where and as whom to call: flags first, then the AWS environment variables, then
    the local gateway with the development credential."""
    url = (
        endpoint_url
        or environ.get("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME")
        or environ.get("AWS_ENDPOINT_URL")
        or DEFAULT_URL
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
    when the gateway cannot be reached."""
    url = f"{config.url}/endpoints/{quote(name, safe='')}/invocations"
    headers: dict[str, str] = {}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
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


def environ() -> Mapping[str, str]:
    return os.environ
