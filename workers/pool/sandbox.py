"""The gateway's side of the sandbox: which uid each account's model code runs as, what
its processes see of the machine, and whether this machine can build sandboxes at all.

What a sandboxed process does with a ``SandboxSpec`` is ``workers.child.sandbox``.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from workers.wire.kernel import (
    CLONE_NEWIPC,
    CLONE_NEWNS,
    CLONE_NEWPID,
    SYS_MOUNT_SETATTR,
    unshare,
)
from workers.wire.sandbox import SandboxSpec, installation_paths

# The system a Python process needs, read-only: programs, libraries, configuration
# (name resolution, certificates, time zones), and the CPU topology BLAS libraries read.
SYSTEM_PATHS: Final = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/sys/devices/system/cpu",
)
# SageMaker Serverless Inference gives each worker this much ephemeral storage.
EPHEMERAL_BYTES: Final = 5 * 1024**3


@dataclass(frozen=True, slots=True)
class Sandboxes:
    """How model code is sandboxed on this gateway.

    ``accounts``: every account that may run models here, each given its own uid and
    gid: ``uid_base`` plus its place in sorted order (so two accounts never share one).
    ``root``: an empty directory sandboxes mount their root on. ``hidden``: paths
    (config file, state directory) covered wherever the read-only view would show them.
    """

    accounts: tuple[str, ...]
    uid_base: int
    root: Path
    hidden: tuple[str, ...] = ()
    tmp_bytes: int = EPHEMERAL_BYTES

    def uid_of(self, account: str) -> int:
        """The uid (and gid) of ``account``'s model code. Raises LookupError for an
        account this gateway was not configured with."""
        ordered = sorted(self.accounts)
        try:
            return self.uid_base + ordered.index(account)
        except ValueError:
            raise LookupError(f"account {account!r} has no sandbox uid") from None

    def spec_for(self, account: str, model_dir: Path, *, network: bool) -> SandboxSpec:
        """The sandbox of a process of ``account`` serving the model in ``model_dir``."""
        uid = self.uid_of(account)
        return SandboxSpec(
            uid=uid,
            gid=uid,
            root=str(self.root),
            model_dir=str(model_dir),
            read_only=(*SYSTEM_PATHS, *installation_paths()),
            hidden=self.hidden,
            tmp_bytes=self.tmp_bytes,
            network=network,
        )


def sandbox_unavailable() -> str | None:
    """Why this machine cannot build sandboxes (None: it can): it needs root, and the
    kernel must grant new mount, pid and ipc namespaces (tried in a throwaway child)."""
    if os.geteuid() != 0:
        return "the gateway does not run as root, so it cannot switch model code to other uids"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC)
            code = 0
        except OSError as exc:
            os.write(write, str(exc).encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        reason = reader.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return f"the kernel refuses new namespaces: {reason or 'the probe failed'}"
    if not _has_mount_setattr():
        return "the kernel lacks mount_setattr (Linux 5.12 and later have it)"
    return None


def _has_mount_setattr() -> bool:
    """mount_setattr with a bad descriptor answers EBADF where it exists, ENOSYS where
    not."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall(SYS_MOUNT_SETATTR, -1, b"", 0, None, 0)
    return ctypes.get_errno() != errno.ENOSYS
