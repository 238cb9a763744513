"""The few Linux process controls workers and zygotes rely on (prctl), and what they read
of themselves from /proc."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable
from typing import Final

PR_SET_PDEATHSIG: Final = 1
PR_SET_NAME: Final = 15
PR_SET_CHILD_SUBREAPER: Final = 36

# Process names (the kernel's 15-byte "comm"), as ps and top show them.
WORKER_NAME: Final = "cb-worker"
RUNTIME_ZYGOTE_NAME: Final = "cb-zygote"
MODEL_ZYGOTE_NAME: Final = "cb-model-zygote"


def prctl(
    option: int, value: int | bytes = 0, arg3: int = 0, *, libc: ctypes.CDLL | None = None
) -> int:
    """prctl(2) with up to three arguments; raises OSError naming the option on failure.
    ``libc``: a handle to reuse for many calls in a row (opening one costs ~25 us)."""
    if libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
    result = int(libc.prctl(option, value, arg3, 0, 0))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")
    return result


def die_with_parent(parent_pid: int, parent: Callable[[], int] = os.getppid) -> None:
    """SIGKILL this process when its parent dies, even by SIGKILL; exit at once if the
    parent is already gone (the check after the request closes that race). ``parent``
    tells the parent's pid as ``parent_pid`` counts it (see ``ParentWatch`` for a process
    in a pid namespace of its own, where getppid says 0). The kernel forgets the request
    when the process changes its uid: make it after that."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent() != parent_pid:
        os._exit(70)


class ParentWatch:
    """The parent's pid as the gateway's pid namespace counts it, read from the
    ``/proc/self/stat`` of the /proc mounted when the watch was made: a process that
    entered a new pid namespace (its parent is outside it, so getppid says 0) keeps
    telling whether the gateway adopted it, also after it leaves that /proc behind.
    Holds one file descriptor until ``close``."""

    def __init__(self) -> None:
        self.fd = os.open("/proc/self/stat", os.O_RDONLY | os.O_CLOEXEC)

    def __call__(self) -> int:
        stat = os.pread(self.fd, 1024, 0)
        # "pid (comm) state ppid ...": the name may hold spaces and parentheses.
        return int(stat[stat.rindex(b")") + 2 :].split(maxsplit=2)[1])

    def close(self) -> None:
        os.close(self.fd)


def thread_count() -> int:
    """Threads of this process, native ones included (the kernel's count)."""
    return len(os.listdir("/proc/self/task"))


def set_process_name(name: str) -> None:
    """Name this process for ps/top (truncated to 15 bytes by the kernel)."""
    prctl(PR_SET_NAME, name.encode()[:15])


def become_subreaper() -> None:
    """Adopt orphaned descendants (workers forked by zygotes), so this process can reap
    them and they can die with it. Raises OSError when the kernel refuses."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


# Namespaces (clone(2) flags), for unshare.
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000
# mount_setattr(2) (Linux 5.12; the same number on every architecture since 5.x).
SYS_MOUNT_SETATTR: Final = 442


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``CLONE_NEW*`` ``flags``); a new pid
    namespace takes effect for the children forked next. Raises OSError."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare({flags:#x}): {os.strerror(errno)}")
