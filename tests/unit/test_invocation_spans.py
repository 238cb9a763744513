"""The SERVER span's server.address and server.port, from an invocation's Host header."""

from __future__ import annotations

import pytest

from gateway.telemetry.invocation import split_host


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (
            "runtime.sagemaker.us-east-1.amazonaws.com",
            ("runtime.sagemaker.us-east-1.amazonaws.com", None),
        ),
        ("[::1]:8443", ("::1", 8443)),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("example.test:http", ("example.test:http", None)),
        ("example.test:\u0661\u0662", ("example.test:\u0661\u0662", None)),
        ("example.test:", ("example.test:", None)),
        ("", ("", None)),
    ],
)
def test_a_host_header_splits_into_name_and_port(
    host: str, expected: tuple[str, int | None]
) -> None:
    assert split_host(host) == expected
