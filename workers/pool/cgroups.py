"""Enforcing a worker's ``ResourcePlan``: cgroup v2, cgroup v1, or affinity as a fallback.

The gateway picks one ``Enforcer`` at start (``detect_enforcer``). For each worker it calls
``prepare`` (create the worker's cgroups and write their limits), hands the returned
``Placement`` to the worker process, which joins it before running model code, and after
the worker exited calls ``out_of_memory`` then ``release``. ``close`` at shutdown removes
the gateway's own cgroups.

Layout (``<pid>`` is the gateway's process id, ``<name>`` the worker's name):

- cgroup v2: ``<base>/coldbrew-<pid>/<name>``, where ``<base>`` is the parent of the
  gateway's own cgroup (its beside, not inside, the gateway's group: a v2 group that holds
  processes cannot pass controllers down), or the root when the gateway is in the root.
  ``+cpu +memory`` are enabled in ``<base>`` and ``coldbrew-<pid>``'s subtree_control.
- cgroup v1: ``<cpu mount>/<own cpu cgroup>/coldbrew-<pid>/<name>`` and the same under the
  memory mount, the gateway's own groups read from /proc/self/cgroup.
- fallback: no cgroups; each worker is pinned to ``threads`` CPUs, taken round-robin so
  workers spread, and its memory and disk are left to the caller's watchdogs.

``coldbrew-<n>`` groups whose process ``n`` is gone (a gateway killed without ``close``;
its workers die with it) are removed when the next gateway starts, if they hold no
processes. A pid reused since is told apart by its start time.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from workers.pool.limits import Enforcer, ResourcePlan, plan_resources
from workers.wire.messages import Placement

__all__ = [
    "Cgroup1Enforcer",
    "Cgroup2Enforcer",
    "Enforcer",
    "EnforcerUnavailable",
    "FallbackEnforcer",
    "detect_enforcer",
]

CFS_PERIOD_US: Final = 100_000
# How long ``release`` retries a busy group while the kernel finishes a process's exit.
RELEASE_TIMEOUT_S: Final = 2.0
PROC_SELF_CGROUP: Final = Path("/proc/self/cgroup")
MODES: Final = ("cgroup2", "cgroup1", "fallback")
PARENT_PATTERN: Final = re.compile(r"coldbrew-(\d+)")
# A process's start time is known to a clock tick, converted through the boot time.
START_SLACK_S: Final = 0.05


class EnforcerUnavailable(RuntimeError):
    """A resource-limit mode cannot be used on this machine; the message says why."""


def _write(path: Path, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {value!r} to {path}: {exc.strerror}") from exc


def _counter(path: Path, key: str) -> int | None:
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
            _write(kill_file, "1")
        return
    try:
        pids = (group / "cgroup.procs").read_text().split()
    except FileNotFoundError:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def _remove_group(group: Path, timeout_s: float = RELEASE_TIMEOUT_S) -> None:
    """rmdir ``group`` and any groups below it, killing their processes. Missing is fine."""
    with contextlib.suppress(FileNotFoundError):
        for child in [entry for entry in group.iterdir() if entry.is_dir()]:
            _remove_group(child, timeout_s)
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


def _sweep_stale(base: Path, log: logging.Logger) -> None:
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


def _own_cgroups(proc_cgroup: Path = PROC_SELF_CGROUP) -> dict[str, str]:
    """Controller -> this process's cgroup path; the cgroup v2 path is under key ""."""
    found: dict[str, str] = {}
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _locate(mount: Path, path: str) -> Path:
    """The directory of cgroup ``path`` under ``mount``. A container may see its own
    group mounted as the root while /proc/self/cgroup names the host's path."""
    candidate = mount / path.lstrip("/")
    if candidate.is_dir():
        return candidate
    procs = (mount / "cgroup.procs").read_text().split()
    if str(os.getpid()) in procs:
        return mount
    raise EnforcerUnavailable(f"cannot find this process's cgroup {path} under {mount}")


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

    def _establish(self) -> None:
        """Create the parents and prove the whole cycle on a probe worker. Raises
        EnforcerUnavailable, after removing whatever it created."""
        created: list[Path] = []
        try:
            for parent in self._parents:
                _sweep_stale(parent.parent, self._log)
                parent.mkdir()
                created.append(parent)
                self._after_parent_created(parent)
            self.prepare("probe", plan_resources(1024, host_cpus=1))
            self.release("probe")
        except BaseException as exc:
            for parent in reversed(created):
                with contextlib.suppress(OSError):
                    _remove_group(parent)
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
                    _remove_group(group)
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
            _remove_group(group)

    def close(self) -> None:
        failures: list[str] = []
        for parent in self._parents:
            try:
                _remove_group(parent)
            except OSError as exc:
                failures.append(str(exc))
        if failures:
            raise OSError(errno.EBUSY, "; ".join(failures))


class Cgroup2Enforcer(_CgroupEnforcer):
    """cgroup v2: ``cpu.max``, ``cpu.weight``, ``memory.max``, ``memory.swap.max`` (0, so
    swap cannot stretch the limit) and ``memory.oom.group`` (an OOM kills the whole worker,
    not one of its processes). Build it with ``detect_enforcer``."""

    mode = "cgroup2"

    def __init__(self, parent: Path, log: logging.Logger) -> None:
        super().__init__([parent], log)
        self.parent = parent

    def describe(self) -> str:
        return f"cgroup v2 (cpu.max, cpu.weight, memory.max, memory.swap.max) under {self.parent}"

    def _after_parent_created(self, parent: Path) -> None:
        _write(parent / "cgroup.subtree_control", "+cpu +memory")

    def _configure(self, name: str, plan: ResourcePlan) -> None:
        group = _worker_dir(self.parent, name)
        _write(group / "cpu.max", f"{plan.cpu_quota_us(CFS_PERIOD_US)} {CFS_PERIOD_US}")
        _write(group / "cpu.weight", str(plan.cpu_weight))
        _write(group / "memory.max", str(plan.memory_bytes))
        # Both exist only with swap accounting and on kernels from 4.19 on, respectively.
        for optional, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            if (group / optional).exists():
                _write(group / optional, value)

    def out_of_memory(self, name: str) -> bool:
        group = _worker_dir(self.parent, name)
        return (_counter(group / "memory.events", "oom_kill") or 0) > 0


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
    ) -> None:
        super().__init__([cpu_parent, memory_parent], log)
        self.cpu_parent = cpu_parent
        self.memory_parent = memory_parent
        self.max_quota_us = max_quota_us

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
        _write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(quota))
        _write(cpu / "cpu.shares", str(plan.cpu_shares))
        _write(memory / "memory.limit_in_bytes", str(plan.memory_bytes))
        # memsw may never be below limit_in_bytes, so it is written second.
        if (memory / "memory.memsw.limit_in_bytes").exists():
            _write(memory / "memory.memsw.limit_in_bytes", str(plan.memory_bytes))

    def out_of_memory(self, name: str) -> bool:
        """The ``oom_kill`` count of ``memory.oom_control``. Kernels before 4.13 lack it;
        there ``memory.failcnt > 0`` (the group hit its limit) stands in, which the caller
        should trust only together with a SIGKILL exit."""
        memory = _worker_dir(self.memory_parent, name)
        kills = _counter(memory / "memory.oom_control", "oom_kill")
        if kills is not None:
            return kills > 0
        try:
            return int((memory / "memory.failcnt").read_text()) > 0
        except FileNotFoundError:
            return False


class FallbackEnforcer:
    """No cgroups: each worker is pinned to ``plan.threads`` CPUs of ``cpus``, handed out
    round-robin so workers spread, and gets the thread-count variables. Memory and disk
    are the caller's to watch (``rss_bytes``, ``directory_bytes``)."""

    mode = "fallback"

    def __init__(self, cpus: Sequence[int]) -> None:
        if not cpus:
            raise ValueError("FallbackEnforcer needs at least one CPU")
        self.cpus = tuple(sorted(set(cpus)))
        self._next = 0
        self._lock = threading.Lock()

    def describe(self) -> str:
        return (
            f"no cgroups: CPU affinity round-robin over CPUs {list(self.cpus)} and "
            "thread-count variables; memory and disk by watchdog"
        )

    def prepare(self, name: str, plan: ResourcePlan) -> Placement:
        count = min(plan.threads, len(self.cpus))
        with self._lock:
            start = self._next
            self._next = (start + count) % len(self.cpus)
        chosen = sorted(self.cpus[(start + i) % len(self.cpus)] for i in range(count))
        return Placement(
            cgroup_procs=(),
            cpu_affinity=tuple(chosen),
            env=plan.thread_environment(),
            fsize_limit=plan.disk_bytes,
        )

    def release(self, name: str) -> None:
        """Nothing to remove."""

    def out_of_memory(self, name: str) -> bool:
        """Always False: only the caller's watchdog knows it killed for memory."""
        return False

    def close(self) -> None:
        """Nothing to remove."""


def _v2_mounts(root: Path) -> Iterator[Path]:
    """cgroup2 mounts at ``root`` or, in hybrid mode, at ``root/unified``."""
    for candidate in (root, root / "unified"):
        if (candidate / "cgroup.controllers").exists():
            yield candidate


def _probe_cgroup2(root: Path, log: logging.Logger) -> Cgroup2Enforcer:
    mounts = list(_v2_mounts(root))
    if not mounts:
        raise EnforcerUnavailable(f"cgroup2 unavailable: no cgroup2 mount at {root}")
    mount = mounts[0]
    own = _locate(mount, _own_cgroups().get("", "/"))
    base = own if own == mount else own.parent
    offered = (base / "cgroup.controllers").read_text().split()
    missing = [c for c in ("cpu", "memory") if c not in offered]
    if missing:
        raise EnforcerUnavailable(
            f"cgroup2 unavailable: {base} offers controllers {offered}, lacks {missing}"
        )
    enabled = (base / "cgroup.subtree_control").read_text().split()
    added = [c for c in ("cpu", "memory") if c not in enabled]
    try:
        for controller in added:
            _write(base / "cgroup.subtree_control", f"+{controller}")
    except OSError as exc:
        _disable(base, added, log)
        raise EnforcerUnavailable(f"cgroup2 unavailable: {exc}") from exc
    enforcer = Cgroup2Enforcer(base / f"coldbrew-{os.getpid()}", log)
    try:
        enforcer._establish()
    except EnforcerUnavailable:
        _disable(base, added, log)
        raise
    return enforcer


def _disable(base: Path, controllers: list[str], log: logging.Logger) -> None:
    """Undo enabling ``controllers`` below ``base``, best effort: a group another program
    created meanwhile may already use them."""
    for controller in reversed(controllers):
        try:
            _write(base / "cgroup.subtree_control", f"-{controller}")
        except OSError as exc:
            log.warning("left +%s enabled in %s: %s", controller, base, exc.strerror)


def _v1_max_quota_us(mount: Path, own: Path) -> int | None:
    """The tightest CFS quota of ``own`` and its ancestors, per CFS_PERIOD_US."""
    ratios: list[float] = []
    for group in (own, *own.parents):
        quota = int((group / "cpu.cfs_quota_us").read_text())
        if quota > 0:
            ratios.append(quota / int((group / "cpu.cfs_period_us").read_text()))
        if group == mount:
            break
    return int(min(ratios) * CFS_PERIOD_US) if ratios else None


def _probe_cgroup1(root: Path, log: logging.Logger) -> Cgroup1Enforcer:
    # Resolved: a distribution may link both names to one hierarchy (cpu,memory).
    cpu_mount, memory_mount = (root / "cpu").resolve(), (root / "memory").resolve()
    if not (cpu_mount / "cpu.cfs_quota_us").exists():
        raise EnforcerUnavailable(f"cgroup1 unavailable: no v1 cpu hierarchy at {cpu_mount}")
    if not (memory_mount / "memory.limit_in_bytes").exists():
        raise EnforcerUnavailable(f"cgroup1 unavailable: no v1 memory hierarchy at {memory_mount}")
    own = _own_cgroups()
    if "cpu" not in own or "memory" not in own:
        raise EnforcerUnavailable("cgroup1 unavailable: /proc/self/cgroup lacks cpu or memory")
    own_cpu = _locate(cpu_mount, own["cpu"])
    own_memory = _locate(memory_mount, own["memory"])
    parent_name = f"coldbrew-{os.getpid()}"
    enforcer = Cgroup1Enforcer(
        own_cpu / parent_name,
        own_memory / parent_name,
        log,
        max_quota_us=_v1_max_quota_us(cpu_mount, own_cpu),
    )
    enforcer._establish()
    return enforcer


def detect_enforcer(
    *,
    prefer: str = "auto",
    root_v2: Path = Path("/sys/fs/cgroup"),
    root_v1: Path = Path("/sys/fs/cgroup"),
    log: logging.Logger,
) -> Enforcer:
    """The enforcer for this machine: ``prefer`` ``"auto"`` tries cgroup v2, then v1, then
    the fallback; naming a mode forces it.

    On success a cgroup mode has created the gateway's parent group(s); ``close`` removes
    them. A failed probe leaves nothing behind. Raises ValueError for an unknown
    ``prefer``, EnforcerUnavailable, with the reason, for a forced mode this machine
    cannot provide, and RuntimeError when this process already has a cgroup enforcer.
    """
    if prefer != "auto" and prefer not in MODES:
        raise ValueError(f"unknown limits mode {prefer!r}; expected auto or one of {MODES}")
    probes = (("cgroup2", _probe_cgroup2, root_v2), ("cgroup1", _probe_cgroup1, root_v1))
    for mode, probe, root in probes:
        if prefer not in ("auto", mode):
            continue
        try:
            return probe(root, log)
        except (EnforcerUnavailable, OSError) as exc:
            reason = str(exc) if isinstance(exc, EnforcerUnavailable) else f"{mode} unusable: {exc}"
            if prefer == mode:
                raise EnforcerUnavailable(reason) from exc
            log.info("%s", reason)
    return FallbackEnforcer(sorted(os.sched_getaffinity(0)))
