"""``ArtifactStore``: ModelDataUrls resolved to model directories, through a cache of
unpacked archives (the layout and its rules are in the package docstring).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from gateway.store.artifacts.archive import DIR_MODE, ArtifactLimits, unpack
from gateway.store.artifacts.errors import fail
from gateway.store.artifacts.s3 import S3Reader
from gateway.store.artifacts.urls import S3Object, parse

_STAGING_PREFIX: Final = ".tmp-"
_KEY_HEX_CHARS: Final = 32
_CACHE_LAYOUT: Final = "1"
_DEFAULT_LIMITS: Final = ArtifactLimits()


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
        limits: ArtifactLimits = _DEFAULT_LIMITS,
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
        where = parse(url)
        if isinstance(where, S3Object):
            return self._resolve_s3(url, where)
        return self._resolve_local(url, where.path)

    def _resolve_local(self, url: str, path: Path) -> Path:
        try:
            if stat.S_ISDIR(os.stat(path).st_mode):
                return path
            # O_NONBLOCK: a FIFO swapped in after the stat must not hang the open.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            fail(url, f"{path} does not exist")
        except OSError as exc:
            fail(url, f"cannot open {path}: {exc.strerror}")
        with open(fd, "rb") as archive:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                fail(url, f"{path} is neither a directory nor a regular file")
            self._check_archive_size(url, before.st_size)

            def fill(tree: Path, scratch: Path) -> None:
                unpack(url, archive, tree, self._limits)
                after = os.fstat(fd)
                if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                    fail(url, f"{path} changed while it was being unpacked; try again")

            key = _cache_key("file", str(path), str(before.st_size), str(before.st_mtime_ns))
            return self._materialise(url, key, fill)

    def _resolve_s3(self, url: str, obj: S3Object) -> Path:
        s3 = S3Reader(url, obj, self._environ)
        etag, size = s3.head()
        self._check_archive_size(url, size)

        def fill(tree: Path, scratch: Path) -> None:
            archive_path = scratch / "model.tar.gz"
            s3.download(etag, archive_path, self._limits.max_archive_bytes)
            with archive_path.open("rb") as archive:
                unpack(url, archive, tree, self._limits)

        return self._materialise(url, _cache_key("s3", obj.bucket, obj.key, etag), fill)

    def _check_archive_size(self, url: str, size: int) -> None:
        if size > self._limits.max_archive_bytes:
            fail(
                url,
                f"the archive is {size} bytes, more than the limit of "
                f"{self._limits.max_archive_bytes} bytes",
            )

    def _ensure_cache_dir(self) -> None:
        self._cache_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)

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
                fail(url, f"cannot write to the artifact cache {self._cache_dir}: {exc}")
            try:
                tree = scratch / "model"
                tree.mkdir()
                tree.chmod(DIR_MODE)
                fill(tree, scratch)
                try:
                    tree.rename(final)
                except OSError as exc:
                    # Should another process share the cache after all and win the race,
                    # its tree is as complete as ours.
                    if not final.is_dir():
                        fail(url, f"cannot store the unpacked model in {final}: {exc}")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return final
