"""Sweeping the ``coldbrew-<pid>`` groups of gateways that died without ``close``.

A group is stale when process ``<pid>`` is gone, or started after the group was made (a
reused pid); a stale group is removed only when it holds no processes. Blocking, brief
filesystem I/O.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Final

PARENT_PATTERN: Final = re.compile(r"coldbrew-(\d+)")
# A process's start time is known to a clock tick, converted through the boot time.
START_SLACK_S: Final = 0.05


def _started_at(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds, to a clock tick), None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Field 22, counted after the parenthesised command name, which may hold spaces.
    ticks = int(text.rsplit(")", 1)[1].split()[19])
    booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return booted + ticks / os.sysconf("SC_CLK_TCK")


def sweep_stale(base: Path, log: logging.Logger) -> None:
    """Remove the ``coldbrew-<n>`` groups under ``base`` whose owner is gone: process
    ``n`` has exited, or started after the group was made (a reused pid). Groups that
    still hold processes are left alone. Raises RuntimeError when this very process
    already owns one: a second live enforcer would share its worker names."""
    for entry in base.iterdir():
        found = PARENT_PATTERN.fullmatch(entry.name)
        if found is None or not entry.is_dir():
            continue
        pid = int(found.group(1))
        try:
            created = entry.stat().st_ctime
        except FileNotFoundError:
            continue  # another gateway swept it first
        started = _started_at(pid)
        if started is not None and started <= created + START_SLACK_S:
            if pid == os.getpid():
                raise RuntimeError(f"this process already has a cgroup enforcer at {entry}")
            continue
        try:
            for child in [c for c in entry.iterdir() if c.is_dir()]:
                os.rmdir(child)
            os.rmdir(entry)
            log.info("removed stale cgroup %s", entry)
        except OSError as exc:
            log.warning("left stale cgroup %s: %s", entry, exc.strerror)
