"""Where each worker runs and what it may use: the pool's view of ``workers.pool.limits``.

A ``Placer`` turns a worker's MemorySizeInMB into a plan (vCPU cap, CPU weight, threads,
memory and disk caps), prepares its cgroups (or the fallback), and afterwards tells
whether the kernel killed it for memory and removes what it prepared.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workers.pool.limits import Enforcer, directory_bytes, plan_resources, rss_bytes


class Placer:
    """Resource placement of workers under one enforcer. Calls block briefly (cgroup
    files); they are made once per worker start and exit."""

    def __init__(
        self, enforcer: Enforcer, *, mb_per_vcpu: int, host_cpus: int | None = None
    ) -> None:
        self._enforcer = enforcer
        self._mb_per_vcpu = mb_per_vcpu
        self._host_cpus = host_cpus or len(os.sched_getaffinity(0)) or 1
        self._memory_mb: dict[str, int] = {}

    @property
    def mode(self) -> str:
        return self._enforcer.mode

    @property
    def watches_memory(self) -> bool:
        """True when no kernel limit caps memory, so the pool must watch it itself."""
        return self._enforcer.mode == "fallback"

    def describe(self) -> str:
        return self._enforcer.describe()

    def prepare(self, name: str, memory_mb: int) -> dict[str, Any]:
        """Prepare the placement of the worker ``name``; return it as JSON for the child,
        which joins it itself before any model code runs (``workers.pool.limits``)."""
        plan = plan_resources(memory_mb, mb_per_vcpu=self._mb_per_vcpu, host_cpus=self._host_cpus)
        self._memory_mb[name] = memory_mb
        return self._enforcer.prepare(name, plan).to_json()

    def memory_bytes(self, name: str) -> int:
        return self._memory_mb.get(name, 0) * 1024 * 1024

    def disk_bytes(self, name: str) -> int:
        memory_mb = self._memory_mb.get(name, 1024)
        plan = plan_resources(memory_mb, mb_per_vcpu=self._mb_per_vcpu, host_cpus=self._host_cpus)
        return plan.disk_bytes

    def out_of_memory(self, name: str) -> bool:
        """After the worker died: did the kernel kill it for exceeding its memory?"""
        return self._enforcer.out_of_memory(name)

    def release(self, name: str) -> None:
        """After the worker exited: remove what ``prepare`` made."""
        self._memory_mb.pop(name, None)
        self._enforcer.release(name)

    def close(self) -> None:
        self._enforcer.close()


def open_cgroup_files(placement: Mapping[str, Any] | None) -> list[int]:
    """Open, for writing, the files a process joins its cgroups through (see
    ``workers.child.limits.join_placement``): ``tasks`` in a cgroup v1 hierarchy,
    ``cgroup.procs`` in v2. The caller owns the descriptors (close them once sent).
    Raises OSError naming the file; nothing stays open then."""
    if placement is None:
        return []
    fds: list[int] = []
    try:
        for procs in placement["cgroup_procs"]:
            path = (
                os.path.join(os.path.dirname(procs), "tasks") if placement["cgroup_v1"] else procs
            )
            try:
                fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
            except OSError as exc:
                raise OSError(exc.errno, f"cannot open {path}: {exc.strerror}") from exc
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def over_memory(pid: int, limit_bytes: int) -> bool:
    """True when the process's resident memory exceeds ``limit_bytes``."""
    resident = rss_bytes(pid)
    return resident is not None and resident > limit_bytes


def over_disk(private_dir: Path, limit_bytes: int) -> bool:
    """True when the files under ``private_dir`` exceed ``limit_bytes``."""
    try:
        return directory_bytes(private_dir) > limit_bytes
    except FileNotFoundError:
        return False
