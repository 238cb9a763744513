"""Reading a ``ModelDataUrl``: a local path (absolute, or a ``file://`` URL) or an S3 object.

Syntax only: nothing here does I/O. Every refusal is an ``ArtifactError`` naming
ModelDataUrl.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from gateway.store.artifacts.errors import fail

_MAX_URL_LENGTH: Final = 1024  # the API's limit on ModelDataUrl
_SUPPORTED: Final = "an absolute path, a file:// URL or s3://bucket/key"


@dataclass(frozen=True, slots=True)
class LocalPath:
    """A ModelDataUrl naming a local directory or archive."""

    path: Path


@dataclass(frozen=True, slots=True)
class S3Object:
    """A ModelDataUrl naming one S3 object; ``str()`` gives its ``s3://`` URL."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse(url: str) -> LocalPath | S3Object:
    """Where ``url`` points. Raises ArtifactError for a URL no store could accept."""
    if len(url) > _MAX_URL_LENGTH:
        fail(url[:64] + "...", f"is longer than {_MAX_URL_LENGTH} characters")
    if "\0" in url:
        fail(url, "contains a NUL character")
    if url.startswith("/"):
        return LocalPath(Path(url))
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "file":
        return _parse_file_url(url)
    if sep and scheme == "s3":
        return _parse_s3_url(url, rest)
    if sep:
        fail(url, f"the {scheme}:// scheme is not supported; use {_SUPPORTED}")
    fail(url, f"is a relative path; use {_SUPPORTED}")


def _parse_file_url(url: str) -> LocalPath:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        fail(url, f"file:// URLs must name a local file, not one on host {parts.netloc!r}")
    if parts.query or parts.fragment:
        fail(url, "a file:// URL may not carry a query or fragment (percent-encode ? and #)")
    path = unquote(parts.path)
    if not path.startswith("/") or "\0" in path:
        fail(url, "a file:// URL must hold an absolute path, e.g. file:///models/iris")
    return LocalPath(Path(path))


def _parse_s3_url(url: str, rest: str) -> S3Object:
    # S3 keys are not percent-encoded in s3:// URLs (as with the AWS CLI), and may hold
    # '?' or '#', so the URL is split by hand rather than by urlsplit.
    bucket, _, key = rest.partition("/")
    if not bucket or any(c.isspace() for c in bucket):
        fail(url, "s3:// URLs must be s3://bucket/key")
    if not key or key.endswith("/"):
        fail(url, "must name one S3 object (a model.tar.gz), not a bucket or a prefix")
    return S3Object(bucket, key)


def check_url(url: str) -> None:
    """Check the shape of a ModelDataUrl (scheme and syntax only; no I/O, never blocks).

    Raises ArtifactError for a URL that ``ArtifactStore.resolve`` could never accept. A URL
    that passes may still fail to resolve (a missing file, an unreadable archive).
    """
    parse(url)
