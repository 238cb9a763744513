"""SigV4 verify/sign, checked against botocore's signer, curl and a real boto3 client."""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import boto3
import botocore.config
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.edge.sigv4 import (
    Credential,
    ParsedAuthorization,
    Principal,
    SigV4Error,
    Verifier,
    parse_authorization,
    sign,
)

ALICE = Credential("AKIDALICE", "alice-secret/with+odd=chars", "111122223333")
BOB = Credential("AKIDBOB", "bob-secret", "444455556666")
KEYS = {c.access_key_id: c for c in (ALICE, BOB)}
SKEW = 300.0
BASE = "http://127.0.0.1:8080"
CONTROL_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "SageMaker.CreateEndpoint",
}
CONTROL_BODY = b'{"EndpointName": "demo", "EndpointConfigName": "demo-cfg"}'
BINARY_BODY = bytes(range(256)) * 4
ODD_NAME_PATH = f"/endpoints/{quote('a b/c', safe='')}/invocations"
RUNTIME_HEADERS = {
    "Content-Type": "application/octet-stream",
    "Accept": "application/json",
    "X-Amzn-SageMaker-Custom-Attributes": "  trace=abc   span=1 ",
    "X-Amzn-SageMaker-Target-Model": "m.tar.gz",
    "X-Amzn-SageMaker-Inference-Id": "inf-1",
}


def epoch(stamp: str) -> float:
    """Epoch seconds of an X-Amz-Date stamp."""
    return float(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))


T0 = epoch("20261128T115749Z")


@dataclass
class Wire:
    """A request as the server sees it."""

    method: str
    raw_path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def verify(
        self, *, now: float | None = None, lookup: Callable[[str], Credential | None] = KEYS.get
    ) -> Principal:
        parsed = parse_authorization(self.header("Authorization"))
        at = epoch(self.header("X-Amz-Date") or "") if now is None else now
        return Verifier(lookup, max_skew_s=SKEW).verify(
            method=self.method,
            raw_path=self.raw_path,
            query_string=self.query,
            headers=self.headers,
            body=self.body,
            parsed=parsed,
            now=at,
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def with_header(self, name: str, value: str | None) -> Wire:
        headers = {k: v for k, v in self.headers.items() if k.lower() != name.lower()}
        if value is not None:
            headers[name] = value
        return Wire(self.method, self.raw_path, self.query, headers, self.body)


def botocore_signed(
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    cred: Credential = ALICE,
    region: str = "eu-west-1",
    token: str | None = None,
    service: str = "sagemaker",
) -> Wire:
    """Sign with botocore (wall-clock date) and add the Host header an HTTP client sends."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    creds = Credentials(cred.access_key_id, cred.secret_access_key, token)
    SigV4Auth(creds, service, region).add_auth(request)
    parts = urlsplit(url)
    sent = dict(request.headers.items())
    sent["Host"] = parts.netloc
    return Wire("POST", parts.path, parts.query, sent, body)


def our_signed(
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    now: float = T0,
    region: str = "eu-west-1",
    token: str | None = None,
) -> Wire:
    """Sign with our `sign`."""
    parts = urlsplit(url)
    sent = sign(
        method="POST",
        url=url,
        headers=headers,
        body=body,
        credential=ALICE,
        region=region,
        now=now,
        session_token=token,
    )
    return Wire("POST", parts.path, parts.query, sent, body)


def expect_error(code: str, fn: Callable[[], object]) -> SigV4Error:
    with pytest.raises(SigV4Error) as info:
        fn()
    assert info.value.code == code, info.value.message
    return info.value


# ------------------------------------------------------------------ botocore-signed


def test_botocore_control_plane_request_verifies() -> None:
    """A botocore-signed control-plane call verifies and names the key's account and region."""
    wire = botocore_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY)
    assert wire.verify() == Principal("AKIDALICE", "111122223333", "eu-west-1")


def test_botocore_runtime_request_with_token_binary_body_and_odd_name_verifies() -> None:
    """Binary body, session token, sagemaker headers and a double-encoded name all verify."""
    wire = botocore_signed(
        BASE + ODD_NAME_PATH, RUNTIME_HEADERS, BINARY_BODY, token="TOKEN123", region="us-east-2"
    )
    signed = parse_authorization(wire.header("Authorization")).signed_headers
    assert "x-amz-security-token" in signed
    assert "x-amzn-sagemaker-custom-attributes" in signed
    assert wire.raw_path == "/endpoints/a%20b%2Fc/invocations"
    assert wire.verify() == Principal("AKIDALICE", "111122223333", "us-east-2")


def test_aiohttp_style_headers_verify() -> None:
    """Case-insensitive multidict headers (as aiohttp hands them over) verify too."""
    wire = botocore_signed(BASE + ODD_NAME_PATH, RUNTIME_HEADERS, BINARY_BODY, token="T")
    proxy = CIMultiDictProxy(CIMultiDict({k.upper(): v for k, v in wire.headers.items()}))
    principal = Verifier(KEYS.get, max_skew_s=SKEW).verify(
        method="POST",
        raw_path=wire.raw_path,
        query_string="",
        headers=proxy,
        body=wire.body,
        parsed=parse_authorization(proxy["Authorization"]),
        now=epoch(proxy["X-Amz-Date"]),
    )
    assert principal.account_id == "111122223333"


def test_verifier_class_with_tiny_key_cache_verifies_across_keys_and_regions() -> None:
    """A Verifier whose key cache holds one key gives the same answers while it evicts keys."""
    verifier = Verifier(KEYS.get, max_skew_s=SKEW, key_cache_size=1)
    for region in ("eu-west-1", "us-east-1", "eu-west-1"):
        wire = botocore_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY, region=region)
        principal = verifier.verify(
            method=wire.method,
            raw_path=wire.raw_path,
            query_string=wire.query,
            headers=wire.headers,
            body=wire.body,
            parsed=parse_authorization(wire.header("Authorization")),
            now=epoch(wire.header("X-Amz-Date") or ""),
        )
        assert principal.region == region
    tampered = wire.with_header("Content-Type", "text/plain")
    expect_error(
        "InvalidSignatureException",
        lambda: verifier.verify(
            method=tampered.method,
            raw_path=tampered.raw_path,
            query_string=tampered.query,
            headers=tampered.headers,
            body=tampered.body,
            parsed=parse_authorization(tampered.header("Authorization")),
            now=epoch(tampered.header("X-Amz-Date") or ""),
        ),
    )


def test_signed_content_sha256_header_is_accepted_when_it_matches_the_body() -> None:
    """A signed x-amz-content-sha256 equal to the body hash verifies."""
    headers = {**CONTROL_HEADERS, "X-Amz-Content-SHA256": hashlib.sha256(CONTROL_BODY).hexdigest()}
    wire = botocore_signed(BASE + "/", headers, CONTROL_BODY)
    assert (
        "x-amz-content-sha256" in parse_authorization(wire.header("Authorization")).signed_headers
    )
    assert wire.verify().access_key_id == "AKIDALICE"


@pytest.mark.parametrize("claimed", ["UNSIGNED-PAYLOAD", hashlib.sha256(b"other").hexdigest()])
def test_signed_content_sha256_header_that_does_not_cover_the_body_is_refused(claimed: str) -> None:
    """UNSIGNED-PAYLOAD or a hash of other bytes is refused even though botocore signed it."""
    wire = botocore_signed(BASE + "/", {**CONTROL_HEADERS, "X-Amz-Content-SHA256": claimed}, b"{}")
    expect_error("InvalidSignatureException", wire.verify)


# -------------------------------------------------------------------- our signer


SIGN_CASES = {
    "control": (BASE + "/", CONTROL_HEADERS, CONTROL_BODY, None),
    "runtime-odd-name-token": (BASE + ODD_NAME_PATH, RUNTIME_HEADERS, BINARY_BODY, "TOK"),
    "default-https-port": (
        "https://runtime.sagemaker.eu-west-1.amazonaws.com:443/endpoints/x/invocations",
        {"Content-Type": "text/csv"},
        b"1,2,3\n",
        None,
    ),
    "query-and-empty-body": (BASE + "/endpoints/demo/invocations?b=2&a=x%2Fy", {}, b"", None),
}


@pytest.mark.parametrize("case", SIGN_CASES)
def test_our_signature_equals_botocores_for_the_same_date(case: str) -> None:
    """For the same inputs and date, sign() and botocore produce the same Authorization."""
    url, headers, body, token = SIGN_CASES[case]
    theirs = botocore_signed(url, headers, body, token=token)
    now = epoch(theirs.header("X-Amz-Date") or "")
    ours = our_signed(url, headers, body, now=now, token=token)
    assert ours.header("Authorization") == theirs.header("Authorization")
    assert ours.header("X-Amz-Security-Token") == token
    assert ours.verify(now=now).account_id == "111122223333"


def test_sign_sets_host_date_and_keeps_given_headers() -> None:
    """sign() adds Host (port kept when not default), X-Amz-Date and Authorization."""
    sent = sign(
        method="POST",
        url="http://user@LocalHost:8080/endpoints/demo/invocations",
        headers={"Content-Type": "application/json", "User-Agent": "ua", "host": "stale"},
        body=b"[[1,2]]",
        credential=BOB,
        region="us-east-1",
        now=T0,
    )
    assert sent["Host"] == "localhost:8080"
    assert "host" not in sent
    assert sent["X-Amz-Date"] == "20261128T115749Z"
    assert sent["User-Agent"] == "ua"
    assert sent["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDBOB/20261128/us-east-1/sagemaker/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature="
    )


def test_multiple_values_of_a_signed_header_are_joined_with_commas() -> None:
    """A header repeated on the wire is canonicalised as its values joined by ','."""
    wire = our_signed(BASE + "/", {**CONTROL_HEADERS, "X-Amz-Meta": "a,b"}, CONTROL_BODY)
    repeated = CIMultiDict((k, v) for k, v in wire.headers.items() if k != "X-Amz-Meta")
    repeated.add("X-Amz-Meta", " a")
    repeated.add("x-amz-meta", "b ")
    principal = Verifier(KEYS.get, max_skew_s=SKEW).verify(
        method="POST",
        raw_path="/",
        query_string="",
        headers=CIMultiDictProxy(repeated),
        body=CONTROL_BODY,
        parsed=parse_authorization(wire.header("Authorization")),
        now=T0,
    )
    assert principal.access_key_id == "AKIDALICE"


# -------------------------------------------------------------- parse failures


@pytest.mark.parametrize("header", [None, "", "   "])
def test_absent_authorization_is_missing_token(header: str | None) -> None:
    """No Authorization header at all is MissingAuthenticationTokenException."""
    error = expect_error("MissingAuthenticationTokenException", lambda: parse_authorization(header))
    assert error.message == "Missing Authentication Token"


GOOD_CRED = "Credential=AKIDALICE/20261128/eu-west-1/sagemaker/aws4_request"
SIG = "Signature=" + "0" * 64


@pytest.mark.parametrize(
    ("header", "wording"),
    [
        ("Bearer abc.def", "Unsupported AWS 'algorithm'"),
        ("AWS4-HMAC-SHA512 " + GOOD_CRED + ", SignedHeaders=host, " + SIG, "algorithm"),
        ("AWS4-HMAC-SHA256", "requires 'Credential' parameter"),
        ("AWS4-HMAC-SHA256 SignedHeaders=host, " + SIG, "requires 'Credential' parameter"),
        ("AWS4-HMAC-SHA256 " + GOOD_CRED + ", " + SIG, "requires 'SignedHeaders' parameter"),
        ("AWS4-HMAC-SHA256 " + GOOD_CRED + ", SignedHeaders=host", "'Signature' parameter"),
        ("AWS4-HMAC-SHA256 " + GOOD_CRED + ", SignedHeaders=host, Signature=", "'Signature'"),
        ("AWS4-HMAC-SHA256 " + GOOD_CRED + ", SignedHeaders, " + SIG, "missing equal-sign"),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDALICE/20261128/sagemaker/aws4_request, "
            "SignedHeaders=host, " + SIG,
            "exactly 5 slash-delimited elements",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDALICE/2026-11-28/eu-west-1/sagemaker/aws4_request,"
            "SignedHeaders=host," + SIG,
            "valid date",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDALICE/20261128//sagemaker/aws4_request, "
            "SignedHeaders=host, " + SIG,
            "valid region",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDALICE/20261128/eu-west-1/sagemaker/aws4_req, "
            "SignedHeaders=host, " + SIG,
            "valid terminator: 'aws4_request', not 'aws4_req'",
        ),
    ],
)
def test_malformed_authorization_is_incomplete_signature(header: str, wording: str) -> None:
    """Each malformed header shape is IncompleteSignatureException with a telling message."""
    error = expect_error("IncompleteSignatureException", lambda: parse_authorization(header))
    assert wording in error.message


def test_parse_accepts_missing_spaces_after_commas() -> None:
    """The k=v list parses with or without spaces after the commas."""
    parsed = parse_authorization(
        f"AWS4-HMAC-SHA256 {GOOD_CRED},SignedHeaders=host;x-amz-date,{SIG}"
    )
    assert parsed == ParsedAuthorization(
        "AKIDALICE", "20261128", "eu-west-1", "sagemaker", ("host", "x-amz-date"), "0" * 64
    )


def test_wrong_service_is_incomplete_signature() -> None:
    """A request botocore signed for another service is refused at parse time."""
    wire = botocore_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY, service="execute-api")
    error = expect_error(
        "IncompleteSignatureException", lambda: parse_authorization(wire.header("Authorization"))
    )
    assert error.message == "Credential should be scoped to correct service: 'sagemaker'. "


# ------------------------------------------------------------- verify failures


def test_unknown_access_key_is_unrecognized_client() -> None:
    """A key the lookup does not know is UnrecognizedClientException."""
    wire = botocore_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY)
    error = expect_error(
        "UnrecognizedClientException", lambda: wire.verify(lookup=lambda _key: None)
    )
    assert error.message == "The security token included in the request is invalid."


def test_wrong_secret_is_invalid_signature() -> None:
    """A known key signed with another secret fails the signature check with AWS's wording."""
    forged = Credential("AKIDALICE", "not-alices-secret", "111122223333")
    wire = botocore_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY, cred=forged)
    error = expect_error("InvalidSignatureException", wire.verify)
    assert error.message.startswith(
        "The request signature we calculated does not match the signature you provided."
    )


def test_tampered_body_is_invalid_signature() -> None:
    """Changing one body byte breaks the signature."""
    wire = botocore_signed(BASE + ODD_NAME_PATH, RUNTIME_HEADERS, BINARY_BODY)
    tampered = Wire(wire.method, wire.raw_path, "", wire.headers, BINARY_BODY[:-1] + b"\x00")
    expect_error("InvalidSignatureException", tampered.verify)


def test_tampered_path_and_query_are_invalid_signature() -> None:
    """A different path or an added query parameter breaks the signature."""
    wire = botocore_signed(BASE + "/endpoints/demo/invocations", RUNTIME_HEADERS, b"x")
    other_path = Wire("POST", "/endpoints/demo2/invocations", "", wire.headers, b"x")
    other_query = Wire("POST", wire.raw_path, "a=1", wire.headers, b"x")
    expect_error("InvalidSignatureException", other_path.verify)
    expect_error("InvalidSignatureException", other_query.verify)


def test_tampered_signed_header_is_invalid_but_unsigned_header_is_free() -> None:
    """Changing a signed header fails; changing an unsigned one (User-Agent) does not."""
    wire = botocore_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY)
    expect_error(
        "InvalidSignatureException",
        wire.with_header("X-Amz-Target", "SageMaker.DeleteEndpoint").verify,
    )
    assert wire.with_header("User-Agent", "changed/1.0").verify().region == "eu-west-1"


def test_garbage_signature_is_invalid_not_a_crash() -> None:
    """A non-hex or non-ASCII signature is refused as a mismatch."""
    wire = botocore_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY)
    auth = wire.header("Authorization") or ""
    head = auth[: auth.index("Signature=")]
    for bad in ("zz", "é" * 64):
        expect_error(
            "InvalidSignatureException",
            wire.with_header("Authorization", head + "Signature=" + bad).verify,
        )


def test_missing_signed_header_is_incomplete_signature() -> None:
    """A header listed in SignedHeaders but absent from the request is named in the error."""
    wire = botocore_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY)
    error = expect_error(
        "IncompleteSignatureException", wire.with_header("X-Amz-Target", None).verify
    )
    assert "'x-amz-target'" in error.message


def test_host_must_be_signed() -> None:
    """SignedHeaders without host is IncompleteSignatureException."""
    wire = botocore_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY)
    auth = (wire.header("Authorization") or "").replace(";host;", ";")
    error = expect_error(
        "IncompleteSignatureException", wire.with_header("Authorization", auth).verify
    )
    assert error.message == (
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    )


def test_scope_region_rewritten_after_signing_is_invalid_signature() -> None:
    """Claiming another region in the scope than the one signed for fails the signature."""
    wire = botocore_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY, region="us-east-1")
    auth = (wire.header("Authorization") or "").replace("/us-east-1/", "/eu-west-1/")
    expect_error("InvalidSignatureException", wire.with_header("Authorization", auth).verify)


def test_stale_date_beyond_skew_is_signature_expired() -> None:
    """A request 5 min 11 s old is refused with AWS's 'Signature expired' wording."""
    wire = our_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY, now=T0)
    error = expect_error("InvalidSignatureException", lambda: wire.verify(now=T0 + 431))
    assert error.message == (
        "Signature expired: 20261128T115749Z is now earlier than 20261128T120000Z "
        "(20261128T120500Z - 5 min.)"
    )


def test_future_date_beyond_skew_is_not_yet_current() -> None:
    """A request dated 10 minutes ahead is refused as 'Signature not yet current'."""
    stamped = epoch("20261128T121000Z")
    wire = our_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY, now=stamped)
    error = expect_error(
        "InvalidSignatureException", lambda: wire.verify(now=epoch("20261128T120000Z"))
    )
    assert error.message == (
        "Signature not yet current: 20261128T121000Z is still later than 20261128T120500Z "
        "(20261128T120000Z + 5 min.)"
    )


def test_dates_exactly_at_the_skew_limit_are_accepted() -> None:
    """A request exactly max_skew_s old or ahead still verifies."""
    wire = our_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY, now=T0)
    assert wire.verify(now=T0 + SKEW).region == "eu-west-1"
    assert wire.verify(now=T0 - SKEW).region == "eu-west-1"


def test_date_header_disagreeing_with_scope_is_incomplete_signature() -> None:
    """An X-Amz-Date on another day than the credential scope is refused before the clock."""
    wire = our_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY, now=T0)
    error = expect_error(
        "IncompleteSignatureException",
        wire.with_header("X-Amz-Date", "20261129T115749Z").verify,
    )
    assert "'20261128' != '20261129'" in error.message


@pytest.mark.parametrize(
    "stamp", [None, "2026-11-28T11:57:49Z", "20261328T115749Z", "20261128T246000Z"]
)
def test_missing_or_malformed_date_header_is_incomplete_signature(stamp: str | None) -> None:
    """No X-Amz-Date, or one that is not a valid basic ISO-8601 UTC stamp, is refused."""
    wire = our_signed(BASE + "/", CONTROL_HEADERS, CONTROL_BODY, now=T0)
    expect_error(
        "IncompleteSignatureException",
        lambda: wire.with_header("X-Amz-Date", stamp).verify(now=T0),
    )


# ------------------------------------------------------------- real clients


@dataclass
class Recorder:
    """What the test server decided for each request."""

    outcomes: list[Principal | SigV4Error] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@pytest.fixture
async def auth_server() -> AsyncIterator[tuple[str, Recorder]]:
    """An aiohttp server that verifies every request with wall-clock `now`."""
    recorder = Recorder()
    keys = {**KEYS, "test": Credential("test", "test", "000000000000")}
    verifier = Verifier(keys.get)

    async def handle(request: web.Request) -> web.Response:
        raw_path, _, query = request.raw_path.partition("?")
        recorder.paths.append(request.raw_path)
        try:
            parsed = parse_authorization(request.headers.get("Authorization"))
            principal = verifier.verify(
                method=request.method,
                raw_path=raw_path,
                query_string=query,
                headers=request.headers,
                body=await request.read(),
                parsed=parsed,
                now=time.time(),
            )
        except SigV4Error as error:
            recorder.outcomes.append(error)
            return web.json_response({"__type": error.code, "message": error.message}, status=403)
        recorder.outcomes.append(principal)
        if request.headers.get("X-Amz-Target") == "SageMaker.ListEndpoints":
            return web.json_response({"Endpoints": []})
        return web.Response(body=b"ok", content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}", recorder
    finally:
        await runner.cleanup()


CURL = shutil.which("curl") or "/usr/bin/curl"


@pytest.mark.parametrize(
    "path", ["/endpoints/demo/invocations", "/endpoints/a%20b%2Fc/invocations?z=1&a=x%2Fy"]
)
async def test_curl_aws_sigv4_requests_verify(auth_server: tuple[str, Recorder], path: str) -> None:
    """`curl --aws-sigv4` requests verify, including its literal (un-normalised) path form."""
    base, recorder = auth_server
    proc = await asyncio.create_subprocess_exec(
        CURL,
        "-sS",
        "--aws-sigv4",
        "aws:amz:us-east-1:sagemaker",
        "--user",
        "test:test",
        "-H",
        "Content-Type: application/json",
        "-d",
        "[[1,2]]",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        base + path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, stderr
    assert recorder.paths == [path]
    assert recorder.outcomes == [Principal("test", "000000000000", "us-east-1")]
    assert stdout == b"200"


async def test_boto3_clients_verify_end_to_end(auth_server: tuple[str, Recorder]) -> None:
    """Real boto3 control-plane and runtime calls (odd endpoint name) verify over HTTP."""
    base, recorder = auth_server

    def call() -> bytes:
        common = {
            "endpoint_url": base,
            "region_name": "ap-south-1",
            "aws_access_key_id": BOB.access_key_id,
            "aws_secret_access_key": BOB.secret_access_key,
            "aws_session_token": "SESSION",
            "config": botocore.config.Config(retries={"total_max_attempts": 1}),
        }
        boto3.client("sagemaker", **common).list_endpoints()
        response = boto3.client("sagemaker-runtime", **common).invoke_endpoint(
            EndpointName="a b/c", Body=BINARY_BODY, ContentType="application/octet-stream"
        )
        return bytes(response["Body"].read())

    assert await asyncio.wait_for(asyncio.to_thread(call), timeout=30) == b"ok"
    assert recorder.paths == ["/", "/endpoints/a%20b%2Fc/invocations"]
    assert recorder.outcomes == [Principal("AKIDBOB", "444455556666", "ap-south-1")] * 2
