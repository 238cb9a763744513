"""Reading one S3 object with boto3 (an optional dependency, imported only here).

Every failure, boto3 missing included, is an ``ArtifactError``; blocking network I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from gateway.store.artifacts.archive import CHUNK_BYTES
from gateway.store.artifacts.errors import fail
from gateway.store.artifacts.urls import S3Object


class S3Reader:
    """One S3 object read with boto3, every failure turned into an ArtifactError."""

    def __init__(self, url: str, obj: S3Object, environ: Mapping[str, str]) -> None:
        try:
            import boto3  # type: ignore[import-untyped]
            from botocore.config import Config  # type: ignore[import-untyped]
            from botocore.exceptions import (  # type: ignore[import-untyped]
                BotoCoreError,
                ClientError,
            )
        except ImportError:
            fail(url, "s3:// artifacts need boto3 on the gateway: pip install boto3")
        self._url = url
        self._obj = obj
        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
        self._client_error: type[Exception] = ClientError
        endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
        key_id = environ.get("AWS_ACCESS_KEY_ID")
        secret = environ.get("AWS_SECRET_ACCESS_KEY")
        explicit_keys = bool(key_id and secret)
        try:
            session = boto3.session.Session(
                aws_access_key_id=key_id if explicit_keys else None,
                aws_secret_access_key=secret if explicit_keys else None,
                aws_session_token=environ.get("AWS_SESSION_TOKEN") if explicit_keys else None,
                region_name=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"),
                profile_name=None if explicit_keys else environ.get("AWS_PROFILE"),
            )
            # Endpoints come from ``environ`` only (not from the process environment or
            # the AWS config file), so the store's environ is the whole truth.
            config = Config(
                ignore_configured_endpoint_urls=True,
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=10,
                read_timeout=60,
            )
            self._client: Any = session.client("s3", endpoint_url=endpoint or None, config=config)
        except BotoCoreError as exc:
            fail(url, f"cannot set up an S3 client: {exc}")

    def _failure(self, exc: Exception, doing: str) -> NoReturn:
        if isinstance(exc, self._client_error):
            error: Mapping[str, Any] = getattr(exc, "response", {}).get("Error", {})
            code = str(error.get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                fail(self._url, f"{self._obj} does not exist")
            if code == "NoSuchBucket":
                fail(self._url, f"the bucket {self._obj.bucket!r} does not exist")
            if code in ("403", "AccessDenied", "Forbidden"):
                fail(self._url, f"access to {self._obj} is denied")
            if code in ("412", "PreconditionFailed"):
                fail(self._url, f"{self._obj} changed while it was being read; try again")
        fail(self._url, f"cannot {doing} {self._obj}: {exc}")

    def head(self) -> tuple[str, int]:
        """The object's (ETag, size in bytes)."""
        try:
            head = self._client.head_object(Bucket=self._obj.bucket, Key=self._obj.key)
        except self._errors as exc:
            self._failure(exc, "read")
        return str(head["ETag"]), int(head["ContentLength"])

    def download(self, etag: str, dest: Path, max_bytes: int) -> None:
        """Write the object to ``dest``, refusing it if its ETag is no longer ``etag`` (so
        the cache key matches the content) or it grows past ``max_bytes``."""
        written = 0
        try:
            response = self._client.get_object(
                Bucket=self._obj.bucket, Key=self._obj.key, IfMatch=etag
            )
            with dest.open("wb") as out:
                for chunk in response["Body"].iter_chunks(CHUNK_BYTES):
                    written += len(chunk)
                    if written > max_bytes:
                        fail(self._url, f"the archive is more than {max_bytes} bytes")
                    out.write(chunk)
        except self._errors as exc:
            self._failure(exc, "download")
        except OSError as exc:
            fail(self._url, f"cannot store the downloaded archive: {exc}")
