"""The cgroup v2 and v1 enforcers: one gateway-owned parent group per hierarchy and one
group per worker below it, with the worker's plan written into its limit files.

Build them with ``detect_enforcer``, which proves each on a probe worker (``establish``)
before handing it out. Blocking, brief filesystem I/O.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from workers.pool.cgroups.files import counter, remove_group, write
from workers.pool.cgroups.sweep import sweep_stale
from workers.pool.limits import ResourcePlan, plan_resources
from workers.wire.messages import Placement

CFS_PERIOD_US: Final = 100_000


class EnforcerUnavailable(RuntimeError):
    """A resource-limit mode cannot be used on this machine; the message says why."""


def _worker_dir(parent: Path, name: str) -> Path:
    if not name or name in (".", "..") or "/" in name or name.startswith("cgroup."):
        raise ValueError(f"invalid worker name {name!r}")
    return parent / name


class _CgroupEnforcer:
    """What cgroup v1 and v2 share: a gateway-owned parent in each hierarchy and one group
    per worker below each parent."""

    mode = "cgroup"

    def __init__(self, parents: Sequence[Path], log: logging.Logger) -> None:
        # One hierarchy may carry both controllers (mounted together): one group then.
        self._parents = tuple(dict.fromkeys(parents))
        self._log = log

    def _configure(self, name: str, plan: ResourcePlan) -> None:
        raise NotImplementedError

    def establish(self) -> None:
        """Create the parents and prove the whole cycle on a probe worker. Raises
        EnforcerUnavailable, after removing whatever it created."""
        created: list[Path] = []
        try:
            for parent in self._parents:
                sweep_stale(parent.parent, self._log)
                parent.mkdir()
                created.append(parent)
                self._after_parent_created(parent)
            self.prepare("probe", plan_resources(1024, host_cpus=1))
            self.release("probe")
        except BaseException as exc:
            for parent in reversed(created):
                with contextlib.suppress(OSError):
                    remove_group(parent)
            if isinstance(exc, OSError):
                raise EnforcerUnavailable(f"{self.mode} unusable: {exc}") from exc
            raise

    def _after_parent_created(self, parent: Path) -> None:
        """Hook: v2 passes its controllers down here."""

    def groups(self, name: str) -> tuple[Path, ...]:
        """The directories of worker ``name``'s groups, one per hierarchy."""
        return tuple(_worker_dir(parent, name) for parent in self._parents)

    def prepare(self, name: str, plan: ResourcePlan) -> Placement:
        groups = self.groups(name)
        if any(group.exists() for group in groups):
            self.release(name)  # left by an earlier worker of that name
        made: list[Path] = []
        try:
            for group in groups:
                group.mkdir()
                made.append(group)
            self._configure(name, plan)
        except BaseException:
            for group in made:
                with contextlib.suppress(OSError):
                    remove_group(group)
            raise
        return Placement(
            cgroup_procs=tuple(str(group / "cgroup.procs") for group in groups),
            cpu_affinity=None,
            env=plan.thread_environment(),
            fsize_limit=plan.disk_bytes,
            cgroup_v1=self.mode == "cgroup1",
        )

    def release(self, name: str) -> None:
        for group in self.groups(name):
            remove_group(group)

    def close(self) -> None:
        failures: list[str] = []
        for parent in self._parents:
            try:
                remove_group(parent)
            except OSError as exc:
                failures.append(str(exc))
        if failures:
            raise OSError(errno.EBUSY, "; ".join(failures))


class Cgroup2Enforcer(_CgroupEnforcer):
    """cgroup v2: ``cpu.max``, ``cpu.weight``, ``memory.max``, ``memory.swap.max`` (0, so
    swap cannot stretch the limit) and ``memory.oom.group`` (an OOM kills the whole worker,
    not one of its processes). Build it with ``detect_enforcer``."""

    mode = "cgroup2"

    def __init__(self, parent: Path, log: logging.Logger, *, pids_limit: int | None = None) -> None:
        super().__init__([parent], log)
        self.parent = parent
        # A fork bomb ends at this many tasks (processes and threads) per worker.
        self.pids_limit = pids_limit

    def describe(self) -> str:
        return f"cgroup v2 (cpu.max, cpu.weight, memory.max, memory.swap.max) under {self.parent}"

    def _after_parent_created(self, parent: Path) -> None:
        pids = " +pids" if self.pids_limit is not None else ""
        write(parent / "cgroup.subtree_control", f"+cpu +memory{pids}")

    def _configure(self, name: str, plan: ResourcePlan) -> None:
        group = _worker_dir(self.parent, name)
        write(group / "cpu.max", f"{plan.cpu_quota_us(CFS_PERIOD_US)} {CFS_PERIOD_US}")
        write(group / "cpu.weight", str(plan.cpu_weight))
        write(group / "memory.max", str(plan.memory_bytes))
        if self.pids_limit is not None:
            write(group / "pids.max", str(self.pids_limit))
        # Both exist only with swap accounting and on kernels from 4.19 on, respectively.
        for optional, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            if (group / optional).exists():
                write(group / optional, value)

    def out_of_memory(self, name: str) -> bool:
        group = _worker_dir(self.parent, name)
        return (counter(group / "memory.events", "oom_kill") or 0) > 0


class Cgroup1Enforcer(_CgroupEnforcer):
    """cgroup v1: ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, ``cpu.shares`` and
    ``memory.limit_in_bytes``, plus ``memory.memsw.limit_in_bytes`` (memory + swap) when
    the kernel accounts swap. Build it with ``detect_enforcer``.

    ``max_quota_us``: a v1 child's CFS quota may not exceed an ancestor's, so quotas are
    clipped to the tightest quota above the gateway (None when no ancestor has one).
    """

    mode = "cgroup1"

    def __init__(
        self,
        cpu_parent: Path,
        memory_parent: Path,
        log: logging.Logger,
        *,
        max_quota_us: int | None = None,
        pids_parent: Path | None = None,
        pids_limit: int | None = None,
    ) -> None:
        parents = [cpu_parent, memory_parent]
        if pids_parent is not None and pids_limit is not None:
            parents.append(pids_parent)
        super().__init__(parents, log)
        self.cpu_parent = cpu_parent
        self.memory_parent = memory_parent
        self.max_quota_us = max_quota_us
        # A fork bomb ends at this many tasks (processes and threads) per worker.
        self.pids_parent = pids_parent if pids_limit is not None else None
        self.pids_limit = pids_limit

    def describe(self) -> str:
        return (
            "cgroup v1 (cpu.cfs_quota_us, cpu.shares, memory.limit_in_bytes, "
            f"memory.memsw.limit_in_bytes) under {self.cpu_parent} and {self.memory_parent}"
        )

    def _configure(self, name: str, plan: ResourcePlan) -> None:
        cpu = _worker_dir(self.cpu_parent, name)
        memory = _worker_dir(self.memory_parent, name)
        quota = plan.cpu_quota_us(CFS_PERIOD_US)
        if self.max_quota_us is not None:
            quota = min(quota, self.max_quota_us)
        write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        write(cpu / "cpu.cfs_quota_us", str(quota))
        write(cpu / "cpu.shares", str(plan.cpu_shares))
        write(memory / "memory.limit_in_bytes", str(plan.memory_bytes))
        # memsw may never be below limit_in_bytes, so it is written second.
        if (memory / "memory.memsw.limit_in_bytes").exists():
            write(memory / "memory.memsw.limit_in_bytes", str(plan.memory_bytes))
        if self.pids_parent is not None:
            write(_worker_dir(self.pids_parent, name) / "pids.max", str(self.pids_limit))

    def out_of_memory(self, name: str) -> bool:
        """The ``oom_kill`` count of ``memory.oom_control``. Kernels before 4.13 lack it;
        there ``memory.failcnt > 0`` (the group hit its limit) stands in, which the caller
        should trust only together with a SIGKILL exit."""
        memory = _worker_dir(self.memory_parent, name)
        kills = counter(memory / "memory.oom_control", "oom_kill")
        if kills is not None:
            return kills > 0
        try:
            return int((memory / "memory.failcnt").read_text()) > 0
        except FileNotFoundError:
            return False
