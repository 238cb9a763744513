"""Load test for a Coldbrew (or Amazon SageMaker serverless) endpoint, with locust.

Every request is ``POST {host}/endpoints/{EndpointName}/invocations`` (the runtime's
InvokeEndpoint), signed with SigV4 for the service ``sagemaker`` by botocore's own signer,
over the exact body and headers sent. This file needs only locust and botocore.

Run it headless, here for 20 s with 20 users started at once::

    locust -f loadtests/locustfile.py --headless -u 20 -r 20 -t 20s \\
        --host http://127.0.0.1:8080

or with the web UI (http://127.0.0.1:8089 by default; users, rate, host and the options
below are set there)::

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080

Environment:

- credentials as botocore finds them: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
  (and ``AWS_SESSION_TOKEN``), ``AWS_PROFILE``, the shared config files... A local
  ``coldbrew serve`` with no credentials configured accepts ``test`` / ``test`` on
  loopback. Without credentials the run stops at start-up.
- the region from ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else ``us-east-1``.

Options (each also read from the environment variable named; defaults in brackets):

``--endpoint-name`` (``COLDBREW_ENDPOINT``) [demo]
    the endpoint to invoke.
``--payload-file`` (``COLDBREW_PAYLOAD_FILE``) [the demo's three iris rows]
    a file whose bytes are the request body.
``--content-type`` (``COLDBREW_CONTENT_TYPE``) [application/json]
    the body's Content-Type.
``--accept`` (``COLDBREW_ACCEPT``) [application/json]
    the Accept header: the type the model should answer in.
``--idle-seconds`` (``COLDBREW_IDLE_SECONDS``) [5]
    a SpurtUser's pause between bursts.
``--burst-size`` (``COLDBREW_BURST_SIZE``) [5]
    invocations in a SpurtUser's burst.

User classes, the three shapes serverless traffic takes; name some of them after the
options to run only those (``locust -f loadtests/locustfile.py SpurtUser``), or leave them
out to mix all three by their weights (1 : 1 : 2):

``SteadyUser``
    one invocation, then 0.5 s of rest, over and over: steady traffic, served warm.
``SpurtUser``
    a burst of ``--burst-size`` back-to-back invocations, then ``--idle-seconds`` of
    silence. When the gateway's ``pool.idle_timeout_s`` (``coldbrew serve --idle-timeout``)
    is shorter than that pause, its workers are reaped meanwhile and each burst starts
    with a cold start. The default 300 s keeps them warm.
``CrowdUser``
    invocations back to back, no wait at all: run more of them than the endpoint's
    MaxConcurrency (10 for the demo) and the surplus is throttled.

Results, in locust's statistics:

``InvokeEndpoint``
    HTTP 200 served by a warm worker, and every failure.
``InvokeEndpoint [cold start]``
    HTTP 200 that waited for a worker to start (Coldbrew answers those with the header
    ``X-Coldbrew-Cold-Start: tier=...; init-ms=...``); their latency includes the start.
    Real SageMaker sends no such header: there every success is under ``InvokeEndpoint``.
``InvokeEndpoint [throttled]``
    a ThrottlingException: counted as a success, since clients retry it (boto3 does), but
    kept apart so its count and its (short) latency do not blur the others.

Anything else is a failure, with the HTTP status, the SageMaker error code and message,
e.g. ``HTTP 424 ModelError: Received server error (500) ...``, including
``ModelNotReadyException`` (HTTP 429: a cold start missed its setup deadline), 5xx answers
and connection errors. ``--exit-code-on-error 1`` makes such a run exit 1.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from locust import FastHttpUser, constant, events, task

# The demo endpoint of `coldbrew serve --demo`, as gateway/control/demo.py declares it,
# and three iris rows to send it; written here so this file runs without the gateway
# package installed.
DEMO_ENDPOINT_NAME = "demo"
DEMO_SAMPLE = b"[[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]"
DEMO_MAX_CONCURRENCY = 10

SERVICE = "sagemaker"
DEFAULT_REGION = "us-east-1"
REQUEST_TYPE = "POST"
WARM = "InvokeEndpoint"
COLD_START = "InvokeEndpoint [cold start]"
THROTTLED = "InvokeEndpoint [throttled]"
# Coldbrew's header on an answer that waited for a worker to start (gateway/runtime/invoke.py).
COLD_START_HEADER = "X-Coldbrew-Cold-Start"
# Error codes that mean "slow down": the throttling codes botocore retries.
THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
    }
)
STEADY_WAIT_S = 0.5
MAX_MESSAGE_CHARS = 300

_credentials: Credentials | None = None


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_kwargs: Any) -> None:
    group = parser.add_argument_group(
        "Coldbrew", "what to invoke and how (loadtests/locustfile.py)"
    )
    group.add_argument(
        "--endpoint-name",
        env_var="COLDBREW_ENDPOINT",
        default=DEMO_ENDPOINT_NAME,
        help="endpoint to invoke (default: %(default)s)",
    )
    group.add_argument(
        "--payload-file",
        env_var="COLDBREW_PAYLOAD_FILE",
        default="",
        help="file holding the request body (default: three iris rows for the demo)",
    )
    group.add_argument(
        "--content-type",
        env_var="COLDBREW_CONTENT_TYPE",
        default="application/json",
        help="Content-Type of the body (default: %(default)s)",
    )
    group.add_argument(
        "--accept",
        env_var="COLDBREW_ACCEPT",
        default="application/json",
        help="Accept: the type to answer in (default: %(default)s)",
    )
    group.add_argument(
        "--idle-seconds",
        env_var="COLDBREW_IDLE_SECONDS",
        type=float,
        default=5.0,
        help="SpurtUser's pause between bursts; make the gateway's idle timeout shorter "
        "to see cold starts (default: %(default)s)",
    )
    group.add_argument(
        "--burst-size",
        env_var="COLDBREW_BURST_SIZE",
        type=int,
        default=5,
        help="invocations in a SpurtUser's burst (default: %(default)s)",
    )


@events.init.add_listener
def _check_setup(environment: Any, **_kwargs: Any) -> None:
    """Stop at start-up, with the reason, when no request could be signed or sent."""
    global _credentials
    _credentials = botocore.session.Session().get_credentials()
    if _credentials is None:
        raise SystemExit(
            "locustfile: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (a local `coldbrew serve` accepts test / test) or AWS_PROFILE"
        )
    options = environment.parsed_options
    if options is not None and options.payload_file:
        try:
            _read_payload(options.payload_file)
        except OSError as error:
            raise SystemExit(f"locustfile: cannot read --payload-file: {error}") from error


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


@functools.lru_cache(maxsize=8)
def _read_payload(path: str) -> bytes:
    return Path(path).expanduser().read_bytes()


@dataclass(frozen=True)
class Target:
    """What every invocation of one user sends."""

    path: str
    body: bytes
    content_type: str
    accept: str
    region: str
    idle_seconds: float
    burst_size: int

    @classmethod
    def from_options(cls, options: Any) -> Target:
        """From locust's parsed options (None outside the locust command: the defaults)."""

        def option(name: str, env: str, default: Any) -> Any:
            if options is not None:
                return getattr(options, name)
            return type(default)(os.environ.get(env, default))

        name = option("endpoint_name", "COLDBREW_ENDPOINT", DEMO_ENDPOINT_NAME)
        payload_file = option("payload_file", "COLDBREW_PAYLOAD_FILE", "")
        return cls(
            path=f"/endpoints/{name}/invocations",
            body=_read_payload(payload_file) if payload_file else DEMO_SAMPLE,
            content_type=option("content_type", "COLDBREW_CONTENT_TYPE", "application/json"),
            accept=option("accept", "COLDBREW_ACCEPT", "application/json"),
            region=region(),
            idle_seconds=option("idle_seconds", "COLDBREW_IDLE_SECONDS", 5.0),
            burst_size=max(1, option("burst_size", "COLDBREW_BURST_SIZE", 5)),
        )


def host_header(url: str) -> str:
    """The Host header for ``url``: host, and the port unless it is the scheme's default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is not None and parts.port != default_port:
        host = f"{host}:{parts.port}"
    return host


def signed_headers(
    url: str, body: bytes, headers: Mapping[str, str], region: str
) -> dict[str, str]:
    """``headers`` plus Host, X-Amz-Date and Authorization (and X-Amz-Security-Token with
    temporary credentials): a SigV4 signature by botocore over this exact request."""
    if _credentials is None:
        raise RuntimeError("no AWS credentials: the locust init event did not run")
    request = AWSRequest(
        method=REQUEST_TYPE, url=url, data=body, headers={"Host": host_header(url), **headers}
    )
    SigV4Auth(_credentials.get_frozen_credentials(), SERVICE, region).add_auth(request)
    return dict(request.headers.items())


def error_details(headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """The SageMaker error code and message of an error answer ("" when absent)."""
    document: Any
    try:
        document = json.loads(body)
    except ValueError:  # not JSON (UnicodeDecodeError is one too)
        document = None
    if not isinstance(document, dict):
        document = {}
    # x-amzn-ErrorType may read "Code:http://...", __type "namespace#Code".
    code = (headers.get("x-amzn-ErrorType") or "").split(":", 1)[0]
    code = code or str(document.get("__type") or "").rsplit("#", 1)[-1]
    message = document.get("message") or document.get("Message")
    if message is None:
        message = body.decode("utf-8", errors="replace").strip()
    return code, str(message)[:MAX_MESSAGE_CHARS]


def classify(status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str | None]:
    """The statistics name of an answer, and its failure text (None for a success)."""
    if status == 200:
        cold = (headers.get(COLD_START_HEADER) or "").strip().lower()
        return (COLD_START if cold and cold != "false" else WARM), None
    code, message = error_details(headers, body)
    if code in THROTTLE_CODES or (status == 429 and not code):
        return THROTTLED, None
    return WARM, f"HTTP {status} {code or '(no error code)'}: {message}"


class InvokeEndpointUser(FastHttpUser):
    """Invokes one endpoint; the subclasses below give the traffic its shape."""

    abstract = True
    # A request to a scaled-to-zero endpoint waits for its cold start (SageMaker allows
    # 3 minutes) and then runs up to 60 s.
    network_timeout = 250.0
    connection_timeout = 10.0
    target: Target

    def on_start(self) -> None:
        # Read at each start, so options changed in the web UI apply to the next run.
        self.target = Target.from_options(self.environment.parsed_options)

    def invoke(self) -> None:
        target = self.target
        url = self.host.rstrip("/") + target.path
        headers = signed_headers(
            url,
            target.body,
            {"Content-Type": target.content_type, "Accept": target.accept},
            target.region,
        )
        with self.client.request(
            REQUEST_TYPE, url, name=WARM, data=target.body, headers=headers, catch_response=True
        ) as response:
            if not response.status_code:
                error = getattr(response, "error", None)
                response.failure(f"no answer: {error!r}")
                return
            name, failure = classify(
                response.status_code, response.headers or {}, response.content or b""
            )
            response.request_meta["name"] = name
            if failure is None:
                response.success()
            else:
                response.failure(failure)


class SteadyUser(InvokeEndpointUser):
    """Steady traffic: one invocation, then a short rest."""

    weight = 1
    wait_time = constant(STEADY_WAIT_S)

    @task
    def invoke_endpoint(self) -> None:
        self.invoke()


class SpurtUser(InvokeEndpointUser):
    """Spurts after idle periods: a burst of quick invocations, then ``--idle-seconds`` of
    silence, long enough for a gateway with a shorter idle timeout to reap its workers."""

    weight = 1

    def wait_time(self) -> float:
        return self.target.idle_seconds

    @task
    def spurt(self) -> None:
        for _ in range(self.target.burst_size):
            self.invoke()


class CrowdUser(InvokeEndpointUser):
    """A crowd: invocations back to back. More of these than MaxConcurrency are throttled."""

    weight = 2
    wait_time = constant(0)

    @task
    def invoke_endpoint(self) -> None:
        self.invoke()
