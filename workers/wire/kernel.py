"""The few Linux process controls workers and zygotes rely on (prctl), and what they read
of themselves from /proc."""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Final

PR_SET_PDEATHSIG: Final = 1
PR_SET_NAME: Final = 15
PR_SET_CHILD_SUBREAPER: Final = 36

# Process names (the kernel's 15-byte "comm"), as ps and top show them.
WORKER_NAME: Final = "cb-worker"
RUNTIME_ZYGOTE_NAME: Final = "cb-zygote"
MODEL_ZYGOTE_NAME: Final = "cb-model-zygote"


def _prctl(option: int, value: int | bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies, even by SIGKILL; exit at once if the
    parent is already gone (the check after the request closes that race)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(70)


def thread_count() -> int:
    """Threads of this process, native ones included (the kernel's count)."""
    return len(os.listdir("/proc/self/task"))


def set_process_name(name: str) -> None:
    """Name this process for ps/top (truncated to 15 bytes by the kernel)."""
    _prctl(PR_SET_NAME, name.encode()[:15])


def become_subreaper() -> None:
    """Adopt orphaned descendants (workers forked by zygotes), so this process can reap
    them and they can die with it. Raises OSError when the kernel refuses."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
