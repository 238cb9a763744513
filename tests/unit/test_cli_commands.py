"""Pure parts of the control-plane commands: generated names, model locations, the
table, readable timestamps, URL checks, and refusals made before any request."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.cli.client import control_config
from gateway.cli.commands import format_table, readable
from gateway.cli.deploy import MAX_DEPLOY_NAME, deploy, model_data_url
from gateway.cli.resources import generated_name, is_generated
from gateway.cli.session import CommandFailed, Session, url_problem

NOON = datetime(2026, 1, 2, 12, 30, 45, tzinfo=UTC).timestamp()


def test_generated_name_is_the_endpoint_and_a_utc_stamp() -> None:
    """Generated names are NAME-YYYYmmddHHMMSS in UTC."""
    assert generated_name("shop", NOON) == "shop-20260102123045"
    assert generated_name("shop", NOON + 1) == "shop-20260102123046"


def test_is_generated_matches_only_this_endpoints_stamped_names() -> None:
    """Only NAME-<14 digits> counts; other endpoints' and hand-made names do not."""
    assert is_generated("shop", "shop-20260102123045")
    assert not is_generated("shop", "shop-v2")
    assert not is_generated("shop", "shop-2026")
    assert not is_generated("shop", "shop-eu-20260102123045")
    assert not is_generated("sh", "shop-20260102123045")
    assert not is_generated("a.b", "axb-20260102123045")


def test_model_data_url_makes_local_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative directory becomes its absolute path; URLs pass unchanged."""
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert model_data_url("model") == str(tmp_path / "model")
    assert model_data_url("s3://bucket/model.tar.gz") == "s3://bucket/model.tar.gz"
    assert model_data_url("file:///srv/model") == "file:///srv/model"


def test_model_data_url_refuses_a_missing_path(tmp_path: Path) -> None:
    """A local path that does not exist is refused with the path named."""
    with pytest.raises(CommandFailed, match="no-such"):
        model_data_url(str(tmp_path / "no-such"))


def test_table_columns_are_aligned() -> None:
    """Each column is as wide as its widest cell; no trailing blanks."""
    text = format_table([("NAME", "STATUS"), ("a-long-name", "InService"), ("b", "Failed")])
    assert text == "NAME         STATUS\na-long-name  InService\nb            Failed\n"


def test_readable_turns_timestamps_into_iso_utc() -> None:
    """Timestamp members, nested too, become ISO-8601 UTC; other values stay."""
    document = {
        "CreationTime": NOON,
        "MaxConcurrency": 5,
        "Flag": True,
        "ProductionVariants": [{"DeployedImages": [{"ResolutionTime": NOON + 0.25}]}],
    }
    assert readable(document) == {
        "CreationTime": "2026-01-02T12:30:45.000Z",
        "MaxConcurrency": 5,
        "Flag": True,
        "ProductionVariants": [
            {"DeployedImages": [{"ResolutionTime": "2026-01-02T12:30:45.250Z"}]}
        ],
    }


def test_url_problem_accepts_only_http_urls_with_a_host() -> None:
    """http(s)://host[:port] passes; anything else is explained."""
    assert url_problem("http://127.0.0.1:8080") is None
    assert url_problem("https://gw.example.com") is None
    for bad in ("localhost:8080", "ftp://host", "http://", "127.0.0.1"):
        assert url_problem(bad) is not None


def session_for(url: str) -> tuple[Session, io.StringIO]:
    err = io.StringIO()
    config = control_config(os.environ, endpoint_url=url)
    return Session(config, io.StringIO(), err), err


def test_deploy_refuses_a_name_without_room_for_the_stamp(tmp_path: Path) -> None:
    """A name too long for NAME-<stamp> is refused before any request is sent."""
    # Nothing listens on this URL: a request would fail differently.
    session, err = session_for("http://127.0.0.1:9")
    assert deploy(session, str(tmp_path), "n" * (MAX_DEPLOY_NAME + 1)) == 1
    assert "too long" in err.getvalue()
    assert len(generated_name("n" * MAX_DEPLOY_NAME, NOON)) == 63


def test_commands_refuse_a_malformed_url(tmp_path: Path) -> None:
    """A malformed gateway URL is one line and exit status 1."""
    session, err = session_for("localhost:8080")
    assert deploy(session, str(tmp_path), "ok") == 1
    assert err.getvalue().count("\n") == 1
    assert "http://HOST[:PORT]" in err.getvalue()
