"""Writing, reading and removing cgroup directories: what every cgroup mode does.

Blocking, brief filesystem I/O; failures are ``OSError`` with the path in the message.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from pathlib import Path
from typing import Final

# How long ``release`` retries a busy group while the kernel finishes a process's exit.
RELEASE_TIMEOUT_S: Final = 2.0


def write(path: Path, value: str) -> None:
    """Write ``value`` to the cgroup file ``path`` in one write(2); an OSError names the
    file and the value."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {value!r} to {path}: {exc.strerror}") from exc


def counter(path: Path, key: str) -> int | None:
    """The value of ``key`` in a flat-keyed cgroup file, None when file or key is missing."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return None


def _kill_members(group: Path) -> None:
    """SIGKILL whatever is still in ``group``: a worker's leftovers must not keep it."""
    kill_file = group / "cgroup.kill"
    if kill_file.exists():
        with contextlib.suppress(FileNotFoundError):
            write(kill_file, "1")
        return
    try:
        pids = (group / "cgroup.procs").read_text().split()
    except FileNotFoundError:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def remove_group(group: Path, timeout_s: float = RELEASE_TIMEOUT_S) -> None:
    """rmdir ``group`` and any groups below it, killing their processes. Missing is fine."""
    with contextlib.suppress(FileNotFoundError):
        for child in [entry for entry in group.iterdir() if entry.is_dir()]:
            remove_group(child, timeout_s)
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        try:
            os.rmdir(group)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            # EBUSY: processes are still in it, or the kernel has not finished their exit.
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise OSError(exc.errno, f"cannot remove cgroup {group}: {exc.strerror}") from exc
        _kill_members(group)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
