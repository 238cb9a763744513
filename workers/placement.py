"""Where each worker runs and what it may use: the pool's view of ``workers.limits``.

A ``Placer`` turns a worker's MemorySizeInMB into a plan (vCPU cap, CPU weight, threads,
memory and disk caps), prepares its cgroups (or the fallback), and afterwards tells
whether the kernel killed it for memory and removes what it prepared.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from workers.limits import Enforcer, directory_bytes, plan_resources, rss_bytes


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
        self._deferred: dict[str, list[str]] = {}

    @property
    def mode(self) -> str:
        return self._enforcer.mode

    @property
    def watches_memory(self) -> bool:
        """True when no kernel limit caps memory, so the pool must watch it itself."""
        return self._enforcer.mode == "fallback"

    def describe(self) -> str:
        return self._enforcer.describe()

    def prepare(self, name: str, memory_mb: int, *, defer_cpu: bool = False) -> dict[str, Any]:
        """Prepare the placement of the worker ``name``; return it as JSON for the child.

        With ``defer_cpu``, the child joins only its memory cgroup itself (before any
        model code, so its memory is capped from the start), and ``attach_deferred``
        moves it into its CPU cgroup afterwards: under cgroup v1 that move can wait
        ~10 ms for the kernel, which would otherwise delay a worker forked with its
        model already loaded. Its CPU cap then applies within milliseconds of its start.
        """
        plan = plan_resources(memory_mb, mb_per_vcpu=self._mb_per_vcpu, host_cpus=self._host_cpus)
        self._memory_mb[name] = memory_mb
        placement = self._enforcer.prepare(name, plan).to_json()
        if defer_cpu and self._enforcer.mode == "cgroup1":
            procs = placement["cgroup_procs"]
            cpu = [path for path in procs if _in_cpu_hierarchy(path)]
            placement["cgroup_procs"] = [path for path in procs if path not in cpu]
            self._deferred[name] = cpu
        return placement

    def attach_deferred(self, name: str, pid: int) -> None:
        """Move a started worker into the cgroups ``prepare`` deferred. Blocking; a
        worker that has already exited (or whose cgroup is gone) is no error."""
        for path in self._deferred.pop(name, []):
            try:
                with open(path, "w") as procs:
                    procs.write(str(pid))
            except (FileNotFoundError, ProcessLookupError):
                return

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
        self._deferred.pop(name, None)
        self._enforcer.release(name)

    def close(self) -> None:
        self._enforcer.close()


def _in_cpu_hierarchy(procs_path: str) -> bool:
    """True for a cgroup v1 ``cgroup.procs`` file of the cpu controller's hierarchy."""
    parts = Path(procs_path).parts
    return any("cpu" in part.split(",") for part in parts[:5])


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
