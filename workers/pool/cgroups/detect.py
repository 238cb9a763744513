"""Choosing the enforcer for this machine: ``detect_enforcer`` probes cgroup v2, then v1,
then settles for the fallback.

Blocking, brief filesystem I/O; a failed probe leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from workers.pool.cgroups.enforcers import (
    CFS_PERIOD_US,
    Cgroup1Enforcer,
    Cgroup2Enforcer,
    EnforcerUnavailable,
)
from workers.pool.cgroups.fallback import FallbackEnforcer
from workers.pool.cgroups.files import write
from workers.pool.limits import Enforcer

PROC_SELF_CGROUP: Final = Path("/proc/self/cgroup")
MODES: Final = ("cgroup2", "cgroup1", "fallback")


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


def _v2_mounts(root: Path) -> Iterator[Path]:
    """cgroup2 mounts at ``root`` or, in hybrid mode, at ``root/unified``."""
    for candidate in (root, root / "unified"):
        if (candidate / "cgroup.controllers").exists():
            yield candidate


def _probe_cgroup2(root: Path, log: logging.Logger, pids_limit: int | None) -> Cgroup2Enforcer:
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
    wanted = ["cpu", "memory"]
    if pids_limit is not None:
        if "pids" not in offered:
            raise EnforcerUnavailable(f"cgroup2 unavailable: {base} lacks the pids controller")
        wanted.append("pids")
    enabled = (base / "cgroup.subtree_control").read_text().split()
    added = [c for c in wanted if c not in enabled]
    try:
        for controller in added:
            write(base / "cgroup.subtree_control", f"+{controller}")
    except OSError as exc:
        _disable(base, added, log)
        raise EnforcerUnavailable(f"cgroup2 unavailable: {exc}") from exc
    enforcer = Cgroup2Enforcer(base / f"coldbrew-{os.getpid()}", log, pids_limit=pids_limit)
    try:
        enforcer.establish()
    except EnforcerUnavailable:
        _disable(base, added, log)
        raise
    return enforcer


def _disable(base: Path, controllers: list[str], log: logging.Logger) -> None:
    """Undo enabling ``controllers`` below ``base``, best effort: a group another program
    created meanwhile may already use them."""
    for controller in reversed(controllers):
        try:
            write(base / "cgroup.subtree_control", f"-{controller}")
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


def _probe_cgroup1(root: Path, log: logging.Logger, pids_limit: int | None) -> Cgroup1Enforcer:
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
    pids_mount = (root / "pids").resolve()
    pids_parent = None
    if pids_limit is not None:
        if "pids" not in own or not (pids_mount / "tasks").exists():
            raise EnforcerUnavailable(f"cgroup1 unavailable: no v1 pids hierarchy at {pids_mount}")
        pids_parent = _locate(pids_mount, own["pids"]) / parent_name
    enforcer = Cgroup1Enforcer(
        own_cpu / parent_name,
        own_memory / parent_name,
        log,
        max_quota_us=_v1_max_quota_us(cpu_mount, own_cpu),
        pids_parent=pids_parent,
        pids_limit=pids_limit,
    )
    enforcer.establish()
    return enforcer


def detect_enforcer(
    *,
    prefer: str = "auto",
    root_v2: Path = Path("/sys/fs/cgroup"),
    root_v1: Path = Path("/sys/fs/cgroup"),
    log: logging.Logger,
    pids_limit: int | None = None,
) -> Enforcer:
    """The enforcer for this machine: ``prefer`` ``"auto"`` tries cgroup v2, then v1, then
    the fallback; naming a mode forces it.

    On success a cgroup mode has created the gateway's parent group(s); ``close`` removes
    them. ``pids_limit``: the tasks each worker may have (None: unlimited); a cgroup mode
    without the pids controller is then unavailable. A failed probe leaves nothing
    behind. Raises ValueError for an unknown ``prefer``, EnforcerUnavailable, with the
    reason, for a forced mode this machine cannot provide, and RuntimeError when this
    process already has a cgroup enforcer.
    """
    if prefer != "auto" and prefer not in MODES:
        raise ValueError(f"unknown limits mode {prefer!r}; expected auto or one of {MODES}")
    probes = (("cgroup2", _probe_cgroup2, root_v2), ("cgroup1", _probe_cgroup1, root_v1))
    for mode, probe, root in probes:
        if prefer not in ("auto", mode):
            continue
        try:
            return probe(root, log, pids_limit)
        except (EnforcerUnavailable, OSError) as exc:
            reason = str(exc) if isinstance(exc, EnforcerUnavailable) else f"{mode} unusable: {exc}"
            if prefer == mode:
                raise EnforcerUnavailable(reason) from exc
            log.info("%s", reason)
    return FallbackEnforcer(sorted(os.sched_getaffinity(0)))
