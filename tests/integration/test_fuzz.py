"""Bad input against a real gateway: property-based fuzzing of the control plane and the
runtime, bodies over the limit, slow and stalled senders, and SigV4 edge cases.

Whatever arrives, the answer is a SageMaker error with a 4xx status and a code (or a
success, when the random input happens to be valid): never a 5xx, never a hang, and what
was stored before is unchanged.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.edge.sigv4 import Credential, sign
from tests.integration.control import control_client, create_model, deploy
from tests.support import CONTROL_OPERATIONS, Gateway, running_gateway, toml_config

pytestmark = pytest.mark.timeout(180)

KEPT = "keep"
BODY_TIMEOUT_S = 1.0
LIMIT = 4 * 1024 * 1024
DEV = Credential("test", "test", "")
JSON_1_1 = "application/x-amz-json-1.1"
FIELDS = [
    "ModelName",
    "EndpointName",
    "EndpointConfigName",
    "ProductionVariants",
    "PrimaryContainer",
    "ServerlessConfig",
    "MemorySizeInMB",
    "MaxConcurrency",
    "ProvisionedConcurrency",
    "VariantName",
    "Tags",
    "TagKeys",
    "ResourceArn",
    "NextToken",
    "MaxResults",
    "SortBy",
    "SortOrder",
    "NameContains",
    "StatusEquals",
    "CreationTimeAfter",
    "ExecutionRoleArn",
    "Image",
    "ModelDataUrl",
    "Environment",
]
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str:
        try:
            document = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return ""
        return str(document.get("__type", "")) if isinstance(document, dict) else ""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    config = toml_config(
        tmp_path / "state",
        endpoints={"echo": {"max_concurrency": 1}},
        server={"body_timeout_s": BODY_TIMEOUT_S},
    )
    with running_gateway(tmp_path, config) as gw:
        deploy(control_client(gw.url), KEPT, "echo")
        yield gw


def exchange(gw: Gateway, head: bytes, parts: list[bytes], pause_s: float = 0.0) -> Reply:
    """Send ``head`` and then each of ``parts`` (``pause_s`` apart) on a fresh connection
    and read the one answer. Fails if none comes within 30 s."""
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head)
        for part in parts:
            if pause_s:
                time.sleep(pause_s)
            conn.sendall(part)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = conn.recv(65536)
            assert chunk, f"connection closed with no answer: {received!r}"
            received += chunk
        top, _, body = received.partition(b"\r\n\r\n")
        status_line, *lines = top.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = conn.recv(65536)
            assert chunk, "connection closed mid-answer"
            body += chunk
    return Reply(int(status_line.split()[1]), headers, body)


def signed_head(
    gw: Gateway, path: str, body: bytes, headers: dict[str, str], *, now: float | None = None
) -> dict[str, str]:
    return sign(
        method="POST",
        url=gw.url + path,
        headers=headers,
        body=body,
        credential=DEV,
        region="us-east-1",
        now=time.time() if now is None else now,
    )


def request_head(path: str, headers: dict[str, str], extra: str = "") -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {path} HTTP/1.1\r\n{lines}{extra}Connection: close\r\n\r\n".encode()


def invoke_raw(
    gw: Gateway, name_path: str, body: bytes, headers: dict[str, str] | None = None
) -> Reply:
    path = f"/endpoints/{name_path}/invocations"
    signed = signed_head(gw, path, body, headers or {})
    head = request_head(path, signed, f"Content-Length: {len(body)}\r\n")
    return exchange(gw, head, [body])


def assert_client_error(reply: Reply, *context: Any) -> None:
    """A 4xx SageMaker error naming its code, or a success."""
    assert reply.status < 500, (reply, *context)
    if reply.status >= 300:
        assert 400 <= reply.status < 500, (reply, *context)
        assert reply.code, (reply, *context)
    event(f"{reply.status} {reply.code}")


def control_post(gw: Gateway, target: str, body: bytes) -> Reply:
    """One raw control-plane request, signed by botocore, whatever the body holds."""
    headers = {"Content-Type": JSON_1_1, "X-Amz-Target": target}
    request = AWSRequest(method="POST", url=gw.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials("test", "test"), "sagemaker", "us-east-1").add_auth(request)
    signed = {"Host": gw.url.removeprefix("http://"), **dict(request.headers.items())}
    return exchange(gw, request_head("/", signed, f"Content-Length: {len(body)}\r\n"), [body])


def snapshot(gw: Gateway) -> dict[str, Any]:
    """What is stored: every model, config and endpoint, and the kept endpoint whole."""
    sm = control_client(gw.url)
    kept = sm.describe_endpoint(EndpointName=KEPT)
    kept.pop("ResponseMetadata")
    return {
        "models": sorted(m["ModelName"] for m in sm.list_models()["Models"]),
        "configs": sorted(
            c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]
        ),
        "endpoints": sorted(e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]),
        "kept": kept,
    }


# Odd strings: empty, huge, unicode line separators and astral characters, lone
# surrogate-range code points, paths and ARNs; never the kept resources' bare name (a
# random *valid* delete of it would be a legitimate change).
odd_strings = st.one_of(
    st.text(max_size=70),
    st.sampled_from(
        [
            "",
            "x" * 5000,
            "\u2028\ud7ff\U0001f600",
            "../../etc/passwd",
            "s3://bucket/model.tar.gz",
            f"arn:aws:sagemaker:us-east-1:000000000000:endpoint/{KEPT}",
        ]
    ),
).filter(lambda text: text != KEPT)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False)
    | odd_strings,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


def as_json(value: Any) -> bytes:
    # The standard encoder takes integers past 64 bits, and escapes lone surrogates.
    return json.dumps(value).encode()


control_bodies = st.one_of(
    json_values.map(as_json),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6).map(as_json),
    # Not JSON, or not UTF-8.
    st.binary(max_size=200),
)


def test_control_plane_fuzz_gets_4xx_and_changes_nothing(gateway: Gateway) -> None:
    """Random shapes, wrong types, odd and huge strings, invalid JSON and UTF-8, to every
    operation: each answer is a 4xx SageMaker error (or a success), never a 5xx, and
    every stored resource is as it was; the kept endpoint still serves."""
    before = snapshot(gateway)

    @settings(FUZZ, max_examples=300)
    @given(operation=st.sampled_from(CONTROL_OPERATIONS), body=control_bodies)
    def one_request(operation: str, body: bytes) -> None:
        assert_client_error(control_post(gateway, f"SageMaker.{operation}", body), body[:200])

    one_request()
    assert snapshot(gateway) == before
    rt = gateway.runtime()
    assert rt.invoke_endpoint(EndpointName=KEPT, Body=b"still")["Body"].read() == b"still"
    create_model(control_client(gateway.url), "after-fuzz")


@pytest.mark.parametrize(
    ("target", "body", "code"),
    [
        ("SageMaker.CreateModel", b"{not json", "SerializationException"),
        ("SageMaker.CreateModel", b"[]", "SerializationException"),
        ("SageMaker.CreateModel", b'{"ModelName": "\xff\xfe"}', "SerializationException"),
        ("SageMaker.NoSuchOperation", b"{}", "UnknownOperationException"),
        ("NotSageMaker.CreateModel", b"{}", "UnknownOperationException"),
        (
            "SageMaker.DescribeEndpoint",
            b'{"EndpointName": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            None,
        ),
    ],
)
def test_malformed_control_requests_get_the_right_error(
    gateway: Gateway, target: str, body: bytes, code: str | None
) -> None:
    reply = control_post(gateway, target, body)
    assert reply.status == 400, reply
    if code is not None:
        assert reply.code == code, reply
    else:
        assert reply.code, reply


header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=1100,
)


def test_runtime_fuzz_of_endpoint_names_gets_4xx(gateway: Gateway) -> None:
    """Random endpoint names, percent-encoded as clients do: ValidationError (a bad name,
    or no such endpoint) or the endpoint's answer, never a 5xx."""
    codes: Counter[str] = Counter()

    @settings(FUZZ, max_examples=150)
    @given(name=st.text(max_size=80) | st.sampled_from([KEPT, "a" * 63, "a" * 64, "-x", "a-"]))
    def one_call(name: str) -> None:
        reply = invoke_raw(gateway, quote(name, safe=""), b"fuzz")
        assert_client_error(reply, name)
        codes[reply.code or str(reply.status)] += 1

    one_call()
    assert codes["ValidationError"] > 0, codes


def test_runtime_fuzz_of_headers_gets_4xx(gateway: Gateway) -> None:
    """Random Content-Type, Accept and CustomAttributes values (Latin-1, up to past the
    1024-character limit) to a real endpoint: an answer or a 4xx error, never a 5xx."""
    codes: Counter[str] = Counter()

    @settings(FUZZ, max_examples=150)
    @given(content_type=header_text, accept=header_text, attributes=header_text)
    def one_call(content_type: str, accept: str, attributes: str) -> None:
        headers = {
            "Content-Type": content_type,
            "Accept": accept,
            "X-Amzn-SageMaker-Custom-Attributes": attributes,
        }
        headers = {k: v.strip() for k, v in headers.items() if v.strip()}
        reply = invoke_raw(gateway, KEPT, b"fuzz", headers)
        assert_client_error(reply, headers)
        codes[reply.code or str(reply.status)] += 1

    one_call()
    assert codes["200"] > 0, codes
    assert codes["ValidationError"] > 0, codes


def test_body_over_the_limit_without_length_is_refused(gateway: Gateway) -> None:
    """A chunked body that grows past 4 MB is refused with ValidationError once it passes
    the limit, not read to its end."""
    body = b"x" * (LIMIT + 1)
    path = f"/endpoints/{KEPT}/invocations"
    signed = signed_head(gateway, path, body, {})
    head = request_head(path, signed, "Transfer-Encoding: chunked\r\n")
    step = 256 * 1024
    chunks = [
        f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        for piece in (body[i : i + step] for i in range(0, len(body), step))
    ]
    reply = exchange(gateway, head, [*chunks, b"0\r\n\r\n"])
    assert (reply.status, reply.code) == (400, "ValidationError"), reply
    assert b"4194304" in reply.body


def test_slow_sender_is_served(gateway: Gateway) -> None:
    """A body sent in pieces, slower than one packet but within the body timeout, is
    served whole."""
    body = b"slowly-but-surely"
    path = f"/endpoints/{KEPT}/invocations"
    signed = signed_head(gateway, path, body, {"Content-Type": "text/plain"})
    head = request_head(path, signed, f"Content-Length: {len(body)}\r\n")
    pieces = [body[i : i + 4] for i in range(0, len(body), 4)]
    reply = exchange(gateway, head, pieces, pause_s=BODY_TIMEOUT_S / 10)
    assert (reply.status, reply.body) == (200, body), reply


def test_stalled_sender_times_out_and_holds_no_token(gateway: Gateway) -> None:
    """A client that stops sending mid-body gets 408 RequestTimeoutException after the
    body timeout; meanwhile the endpoint (MaxConcurrency 1) serves others."""
    body = b"x" * 100
    path = "/endpoints/echo/invocations"
    signed = signed_head(gateway, path, body, {})
    head = request_head(path, signed, f"Content-Length: {len(body)}\r\n")
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as stalled:
        stalled.sendall(head + body[:10])
        rt = gateway.runtime()
        assert rt.invoke_endpoint(EndpointName="echo", Body=b"other")["Body"].read() == b"other"
        answer = stalled.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"RequestTimeoutException" in answer


def resigned(gw: Gateway, body: bytes, **change: Any) -> dict[str, str]:
    """Headers of a request to the kept endpoint signed over ``body``, then changed."""
    path = f"/endpoints/{KEPT}/invocations"
    signed = signed_head(gw, path, body, {"X-Amz-Meta": "1"}, now=change.get("now"))
    if "region" in change:
        signed["Authorization"] = signed["Authorization"].replace(
            "/us-east-1/", f"/{change['region']}/"
        )
    if "service" in change:
        signed["Authorization"] = signed["Authorization"].replace(
            "/sagemaker/", f"/{change['service']}/"
        )
    if change.get("drop"):
        signed.pop("X-Amz-Meta")
    return signed


@pytest.mark.parametrize(
    ("change", "sent", "code"),
    [
        ({"now": time.time() - 20 * 60}, b"body", "InvalidSignatureException"),
        ({"now": time.time() + 20 * 60}, b"body", "InvalidSignatureException"),
        ({}, b"another body", "InvalidSignatureException"),
        ({"region": "eu-west-1"}, b"body", "InvalidSignatureException"),
        ({"region": "Not_A_Region"}, b"body", "IncompleteSignatureException"),
        ({"service": "s3"}, b"body", "IncompleteSignatureException"),
        ({"drop": True}, b"body", "IncompleteSignatureException"),
    ],
    ids=[
        "stale-date",
        "future-date",
        "other-body",
        "rewritten-region",
        "invalid-region",
        "wrong-service",
        "missing-signed-header",
    ],
)
def test_sigv4_edge_cases_are_refused_with_403(
    gateway: Gateway, change: dict[str, Any], sent: bytes, code: str
) -> None:
    headers = resigned(gateway, b"body", **change)
    path = f"/endpoints/{KEPT}/invocations"
    head = request_head(path, headers, f"Content-Length: {len(sent)}\r\n")
    reply = exchange(gateway, head, [sent])
    assert (reply.status, reply.code) == (403, code), reply


def test_the_raw_client_is_served_when_the_request_is_valid(gateway: Gateway) -> None:
    """The fuzz's raw client itself: a valid call is served, so its refusals are the
    gateway's verdicts, not the client's mistakes."""
    reply = invoke_raw(gateway, KEPT, b"hello", {"Content-Type": "text/plain"})
    assert (reply.status, reply.body) == (200, b"hello"), reply
