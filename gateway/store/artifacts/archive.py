"""Unpacking a model archive (a gzip-compressed tar) safely: ``unpack`` and its limits.

Nothing in the archive is trusted; ``_Extractor`` states the rules. Every refusal is an
``ArtifactError``; blocking file I/O.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, NoReturn

from gateway.store.artifacts.errors import fail

CHUNK_BYTES: Final = 1024 * 1024
DIR_MODE: Final = 0o755
_FILE_MODE: Final = 0o644
_EXECUTABLE_FILE_MODE: Final = 0o755


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


def unpack(url: str, archive: IO[bytes], tree: Path, limits: ArtifactLimits) -> None:
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
        fail(url, f"is not a readable gzip-compressed tar archive (model.tar.gz): {exc}")
    except OSError as exc:
        fail(url, f"cannot unpack the archive: {exc}")


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
                fail(self._url, f"the archive has more than {self._limits.max_members} members")
            self._extract(tar, member)

    def drain(self, stream: gzip.GzipFile) -> None:
        """Read ``stream`` to its end, counting what follows the tar archive as unpacked
        bytes (it is decompressed all the same)."""
        while chunk := stream.read(CHUNK_BYTES):
            self._unpacked_bytes += len(chunk)
            if self._unpacked_bytes > self._limits.max_unpacked_bytes:
                fail(self._url, self._too_large())

    def _too_large(self) -> str:
        return f"the archive unpacks to more than {self._limits.max_unpacked_bytes} bytes"

    def _refuse(self, member: tarfile.TarInfo, problem: str) -> NoReturn:
        fail(self._url, f"archive member {member.name!r} {problem}")

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
            path.chmod(DIR_MODE)
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
            shutil.copyfileobj(source, out, CHUNK_BYTES)
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
