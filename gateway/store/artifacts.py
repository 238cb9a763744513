"""Model artifacts: from a model's ``ModelDataUrl`` to a local, unpacked model directory.

A ``ModelDataUrl`` may name, in this order of detection:

* a directory, as an absolute path or a ``file://`` URL: used in place, never copied;
* a regular file, as an absolute path or a ``file://`` URL: read as a gzip-compressed tar
  archive (SageMaker's ``model.tar.gz``; ``.tgz`` is the same thing) whatever its name,
  and unpacked once into the artifact cache;
* ``s3://bucket/key``: an object holding a ``model.tar.gz``, downloaded with boto3 (an
  optional dependency, imported only here) and then unpacked like a local archive.

Anything else is an ``ArtifactError`` whose message names ``ModelDataUrl``.

The cache is ``cache_dir/<key>/``, where ``<key>`` hashes the archive's identity: (path,
size, mtime) for a local file, (bucket, key, ETag) for an S3 object. A changed archive
therefore gets a new directory and an unchanged one is reused; old directories are never
removed here, because workers may still be running from them. A directory appears in the
cache only by an atomic rename of a fully unpacked tree, so one that exists is complete.
Work in progress lives in ``cache_dir/.tmp-*``; the store assumes it is the only writer
of ``cache_dir`` (one gateway per state directory), so it removes every ``.tmp-*`` when it
is built, and everything of a failed attempt when the attempt fails.

Unpacking trusts nothing in the archive (see ``_Extractor``): members are written only
below the model directory, links are refused except hard links to files unpacked earlier
from the same archive, special files are refused, and every directory is mode 0755 and
every file 0644 (0755 if it was executable), so worker processes can read the tree.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, NoReturn
from urllib.parse import unquote, urlsplit

_MAX_URL_LENGTH: Final = 1024  # the API's limit on ModelDataUrl
_STAGING_PREFIX: Final = ".tmp-"
_KEY_HEX_CHARS: Final = 32
_CACHE_LAYOUT: Final = "1"
_CHUNK_BYTES: Final = 1024 * 1024
_DIR_MODE: Final = 0o755
_FILE_MODE: Final = 0o644
_EXECUTABLE_FILE_MODE: Final = 0o755
_SUPPORTED: Final = "an absolute path, a file:// URL or s3://bucket/key"


class ArtifactError(Exception):
    """A ModelDataUrl cannot be turned into a model directory.

    ``message`` names ModelDataUrl and says what is wrong; it is fit to show the user as a
    ValidationException message or an endpoint's FailureReason.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ArtifactLimits:
    """Bounds on one archive. The archive limit is the serverless ephemeral disk (5 GB)."""

    max_archive_bytes: int = 5 * 1024**3
    max_unpacked_bytes: int = 10 * 1024**3
    max_members: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_archive_bytes", "max_unpacked_bytes", "max_members"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ArtifactLimits.{name} must be > 0")


@dataclass(frozen=True, slots=True)
class _LocalPath:
    path: Path


@dataclass(frozen=True, slots=True)
class _S3Object:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _fail(url: str, problem: str) -> NoReturn:
    raise ArtifactError(f"ModelDataUrl {url!r}: {problem}")


def _parse(url: str) -> _LocalPath | _S3Object:
    if len(url) > _MAX_URL_LENGTH:
        _fail(url[:64] + "...", f"is longer than {_MAX_URL_LENGTH} characters")
    if "\0" in url:
        _fail(url, "contains a NUL character")
    if url.startswith("/"):
        return _LocalPath(Path(url))
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "file":
        return _parse_file_url(url)
    if sep and scheme == "s3":
        return _parse_s3_url(url, rest)
    if sep:
        _fail(url, f"the {scheme}:// scheme is not supported; use {_SUPPORTED}")
    _fail(url, f"is a relative path; use {_SUPPORTED}")


def _parse_file_url(url: str) -> _LocalPath:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        _fail(url, f"file:// URLs must name a local file, not one on host {parts.netloc!r}")
    if parts.query or parts.fragment:
        _fail(url, "a file:// URL may not carry a query or fragment (percent-encode ? and #)")
    path = unquote(parts.path)
    if not path.startswith("/") or "\0" in path:
        _fail(url, "a file:// URL must hold an absolute path, e.g. file:///models/iris")
    return _LocalPath(Path(path))


def _parse_s3_url(url: str, rest: str) -> _S3Object:
    # S3 keys are not percent-encoded in s3:// URLs (as with the AWS CLI), and may hold
    # '?' or '#', so the URL is split by hand rather than by urlsplit.
    bucket, _, key = rest.partition("/")
    if not bucket or any(c.isspace() for c in bucket):
        _fail(url, "s3:// URLs must be s3://bucket/key")
    if not key or key.endswith("/"):
        _fail(url, "must name one S3 object (a model.tar.gz), not a bucket or a prefix")
    return _S3Object(bucket, key)


def check_url(url: str) -> None:
    """Check the shape of a ModelDataUrl (scheme and syntax only; no I/O, never blocks).

    Raises ArtifactError for a URL that ``ArtifactStore.resolve`` could never accept. A URL
    that passes may still fail to resolve (a missing file, an unreadable archive).
    """
    _parse(url)


def _cache_key(*fields: str) -> str:
    # The layout version is hashed in too, so a change to how archives are unpacked
    # never reuses a tree unpacked the old way.
    material = "\0".join((_CACHE_LAYOUT, *fields))
    return hashlib.sha256(material.encode()).hexdigest()[:_KEY_HEX_CHARS]


class ArtifactStore:
    """Resolves ModelDataUrls to model directories, unpacking archives into a cache.

    Thread-safe: concurrent ``resolve`` calls for the same archive unpack it once and all
    return the same directory. The store must be the only writer of ``cache_dir``.
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        limits: ArtifactLimits = ArtifactLimits(),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Create ``cache_dir`` if needed and remove unfinished work left in it by an earlier
        process (blocking, briefly). ``environ`` (default ``os.environ``) supplies the S3
        endpoint, region and credentials; see ``resolve``."""
        # Absolute, so the directories handed out stay valid if the working directory changes.
        self._cache_dir = cache_dir.absolute()
        self._limits = limits
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._ensure_cache_dir()
        for stale in self._cache_dir.glob(_STAGING_PREFIX + "*"):
            # Never read again; a leftover that cannot be removed now goes next start.
            shutil.rmtree(stale, ignore_errors=True)

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir

    def resolve(self, url: str) -> Path:
        """The model directory ``url`` names, unpacking (and downloading) it if needed.

        Blocking (file and network I/O): run it in a thread. For ``s3://`` the S3 endpoint
        is ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, else boto3's default; the
        region is ``AWS_REGION`` or ``AWS_DEFAULT_REGION``; credentials are
        ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` or
        ``AWS_PROFILE`` from the store's environ, else boto3's own credential chain.

        Raises ArtifactError for every failure (bad URL, missing or unreadable artifact,
        an unsafe or oversized archive, S3 errors); a failure leaves nothing in the cache.
        """
        where = _parse(url)
        if isinstance(where, _S3Object):
            return self._resolve_s3(url, where)
        return self._resolve_local(url, where.path)

    def _resolve_local(self, url: str, path: Path) -> Path:
        try:
            if stat.S_ISDIR(os.stat(path).st_mode):
                return path
            # O_NONBLOCK: a FIFO swapped in after the stat must not hang the open.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            _fail(url, f"{path} does not exist")
        except OSError as exc:
            _fail(url, f"cannot open {path}: {exc.strerror}")
        with open(fd, "rb") as archive:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                _fail(url, f"{path} is neither a directory nor a regular file")
            self._check_archive_size(url, before.st_size)

            def fill(tree: Path, scratch: Path) -> None:
                _unpack(url, archive, tree, self._limits)
                after = os.fstat(fd)
                if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                    _fail(url, f"{path} changed while it was being unpacked; try again")

            key = _cache_key("file", str(path), str(before.st_size), str(before.st_mtime_ns))
            return self._materialise(url, key, fill)

    def _resolve_s3(self, url: str, obj: _S3Object) -> Path:
        s3 = _S3(url, obj, self._environ)
        etag, size = s3.head()
        self._check_archive_size(url, size)

        def fill(tree: Path, scratch: Path) -> None:
            archive_path = scratch / "model.tar.gz"
            s3.download(etag, archive_path, self._limits.max_archive_bytes)
            with archive_path.open("rb") as archive:
                _unpack(url, archive, tree, self._limits)

        return self._materialise(url, _cache_key("s3", obj.bucket, obj.key, etag), fill)

    def _check_archive_size(self, url: str, size: int) -> None:
        if size > self._limits.max_archive_bytes:
            _fail(
                url,
                f"the archive is {size} bytes, more than the limit of "
                f"{self._limits.max_archive_bytes} bytes",
            )

    def _ensure_cache_dir(self) -> None:
        self._cache_dir.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _materialise(self, url: str, key: str, fill: Callable[[Path, Path], None]) -> Path:
        """``cache_dir/key``, made by ``fill(tree, scratch)`` unless it already exists.

        ``fill`` unpacks into ``tree`` (an empty 0755 directory) and may use ``scratch``
        for other files; both go, whatever happens, and only a complete tree is renamed in.
        """
        final = self._cache_dir / key
        if final.is_dir():
            return final
        with self._lock_for(key):
            if final.is_dir():
                return final
            try:
                self._ensure_cache_dir()
                scratch = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self._cache_dir))
            except OSError as exc:
                _fail(url, f"cannot write to the artifact cache {self._cache_dir}: {exc}")
            try:
                tree = scratch / "model"
                tree.mkdir()
                tree.chmod(_DIR_MODE)
                fill(tree, scratch)
                try:
                    tree.rename(final)
                except OSError as exc:
                    # Should another process share the cache after all and win the race,
                    # its tree is as complete as ours.
                    if not final.is_dir():
                        _fail(url, f"cannot store the unpacked model in {final}: {exc}")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return final


def _unpack(url: str, archive: IO[bytes], tree: Path, limits: ArtifactLimits) -> None:
    """Unpack the gzip-compressed tar ``archive`` into the empty directory ``tree``.

    Raises ArtifactError for an unreadable or corrupt archive, an unsafe member or a limit
    passed; ``tree`` may then hold part of the archive, and the caller removes it.
    """
    try:
        with gzip.GzipFile(fileobj=archive, mode="rb") as stream:
            # Stream mode reads members one at a time, front to back, so a huge member
            # list is never held in memory.
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                extractor = _Extractor(url, tree, limits)
                extractor.extract_all(tar)
            # The gzip checksum is only verified at the end of the compressed stream,
            # which tar's end-of-archive marker usually comes before: read on to it.
            extractor.drain(stream)
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        _fail(url, f"is not a readable gzip-compressed tar archive (model.tar.gz): {exc}")
    except OSError as exc:
        _fail(url, f"cannot unpack the archive: {exc}")


class _Extractor:
    """Writes the members of one archive below ``root``, refusing anything unsafe.

    Written by hand rather than with ``TarFile.extract`` so that every rule is here:

    * names: absolute names and ``..`` components are refused; ``.`` and empty components
      are dropped; every target must also resolve inside ``root``.
    * links: symbolic links are refused (one pointing inside could still be combined with
      later members to escape, and model archives rarely need them; archive with
      ``tar --dereference``). A hard link is allowed only to a regular file unpacked
      earlier from the same archive, which it then shares.
    * types: devices, FIFOs and any other special member are refused.
    * modes: directories 0755, files 0644 or 0755 (if any execute bit was set): so no
      setuid, setgid or sticky bit, and never owned by the archive's uid/gid.
    * limits: the member count, and the total of the regular files' sizes, checked before
      each member is written, so nothing past the limit reaches the disk.
    """

    def __init__(self, url: str, root: Path, limits: ArtifactLimits) -> None:
        self._url = url
        self._root = root
        self._real_root = root.resolve()
        self._limits = limits
        self._members = 0
        self._unpacked_bytes = 0
        self._dirs: set[tuple[str, ...]] = {()}
        self._files: dict[str, Path] = {}

    def extract_all(self, tar: tarfile.TarFile) -> None:
        for member in tar:
            self._members += 1
            if self._members > self._limits.max_members:
                _fail(self._url, f"the archive has more than {self._limits.max_members} members")
            self._extract(tar, member)

    def drain(self, stream: gzip.GzipFile) -> None:
        """Read ``stream`` to its end, counting what follows the tar archive as unpacked
        bytes (it is decompressed all the same)."""
        while chunk := stream.read(_CHUNK_BYTES):
            self._unpacked_bytes += len(chunk)
            if self._unpacked_bytes > self._limits.max_unpacked_bytes:
                _fail(self._url, self._too_large())

    def _too_large(self) -> str:
        return f"the archive unpacks to more than {self._limits.max_unpacked_bytes} bytes"

    def _refuse(self, member: tarfile.TarInfo, problem: str) -> NoReturn:
        _fail(self._url, f"archive member {member.name!r} {problem}")

    def _extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = self._safe_parts(member)
        if member.isdir():
            self._make_dirs(member, parts)
        elif not parts:
            self._refuse(member, "names the model directory itself but is not a directory")
        elif member.isreg():
            self._write_file(tar, member, parts)
        elif member.islnk():
            self._hard_link(member, parts)
        elif member.issym():
            self._refuse(
                member, "is a symbolic link; links are not supported (use tar --dereference)"
            )
        else:
            self._refuse(member, "is a device, FIFO or other special file")

    def _safe_parts(self, member: tarfile.TarInfo) -> tuple[str, ...]:
        if member.name.startswith("/"):
            self._refuse(member, "has an absolute path")
        parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
        if ".." in parts:
            self._refuse(member, "has a '..' path component")
        return parts

    def _make_dirs(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> Path:
        path = self._root
        for depth, part in enumerate(parts, start=1):
            path = path / part
            if parts[:depth] in self._dirs:
                continue
            try:
                path.mkdir()
            except FileExistsError:
                # Only a file can be there: every directory made is in self._dirs.
                self._refuse(member, f"needs {path.relative_to(self._root)} as a directory")
            path.chmod(_DIR_MODE)
            self._dirs.add(parts[:depth])
        return path

    def _new_entry(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> Path:
        """The target path of a file member, cleared of an earlier member of that name."""
        target = self._make_dirs(member, parts[:-1]) / parts[-1]
        # No link is ever created, so this holds by construction; checked all the same
        # because a write outside the model directory must never happen.
        if not target.resolve().is_relative_to(self._real_root):
            self._refuse(member, "resolves outside the model directory")
        if parts in self._dirs:
            self._refuse(member, "is a file but an earlier member made it a directory")
        # As with tar, a later member of the same name replaces the earlier one.
        target.unlink(missing_ok=True)
        return target

    def _write_file(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...]
    ) -> None:
        self._unpacked_bytes += member.size
        if self._unpacked_bytes > self._limits.max_unpacked_bytes:
            self._refuse(member, f"is too large: {self._too_large()}")
        target = self._new_entry(member, parts)
        source = tar.extractfile(member)
        if source is None:  # never for a regular member; keeps the type checker honest
            self._refuse(member, "has no data")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        # tarfile hands out exactly member.size bytes (or raises on a short archive), so
        # the size checked above is the size written.
        with source, open(os.open(target, flags, 0o600), "wb") as out:
            shutil.copyfileobj(source, out, _CHUNK_BYTES)
            executable = member.mode & 0o111
            os.fchmod(out.fileno(), _EXECUTABLE_FILE_MODE if executable else _FILE_MODE)
        self._files["/".join(parts)] = target

    def _hard_link(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        # Only names this extractor wrote itself are looked up, so a link can never reach
        # a file outside the archive; an absolute name is refused before its normalised
        # form could match one of them.
        linked = "/".join(p for p in member.linkname.split("/") if p not in ("", "."))
        source = None if member.linkname.startswith("/") else self._files.get(linked)
        if source is None:
            self._refuse(
                member,
                f"is a hard link to {member.linkname!r}, which is not a file unpacked "
                "earlier from this archive",
            )
        target = self._new_entry(member, parts)
        os.link(source, target, follow_symlinks=False)
        self._files["/".join(parts)] = target


class _S3:
    """One S3 object read with boto3, every failure turned into an ArtifactError."""

    def __init__(self, url: str, obj: _S3Object, environ: Mapping[str, str]) -> None:
        try:
            import boto3  # type: ignore[import-untyped]
            from botocore.config import Config  # type: ignore[import-untyped]
            from botocore.exceptions import (  # type: ignore[import-untyped]
                BotoCoreError,
                ClientError,
            )
        except ImportError:
            _fail(url, "s3:// artifacts need boto3 on the gateway: pip install boto3")
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
            _fail(url, f"cannot set up an S3 client: {exc}")

    def _failure(self, exc: Exception, doing: str) -> NoReturn:
        if isinstance(exc, self._client_error):
            error: Mapping[str, Any] = getattr(exc, "response", {}).get("Error", {})
            code = str(error.get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                _fail(self._url, f"{self._obj} does not exist")
            if code == "NoSuchBucket":
                _fail(self._url, f"the bucket {self._obj.bucket!r} does not exist")
            if code in ("403", "AccessDenied", "Forbidden"):
                _fail(self._url, f"access to {self._obj} is denied")
            if code in ("412", "PreconditionFailed"):
                _fail(self._url, f"{self._obj} changed while it was being read; try again")
        _fail(self._url, f"cannot {doing} {self._obj}: {exc}")

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
                for chunk in response["Body"].iter_chunks(_CHUNK_BYTES):
                    written += len(chunk)
                    if written > max_bytes:
                        _fail(self._url, f"the archive is more than {max_bytes} bytes")
                    out.write(chunk)
        except self._errors as exc:
            self._failure(exc, "download")
        except OSError as exc:
            _fail(self._url, f"cannot store the downloaded archive: {exc}")
