"""A worker's resources: what it may use, and how a worker process takes its place.

Each worker gets CPU in proportion to its memory, as Lambda does: a hard cap of
``memory_mb / mb_per_vcpu`` vCPUs (never more than the host has), a CPU weight proportional
to ``memory_mb`` for when CPUs are contended, and the common thread-count variables set to
the cap rounded up. Memory is capped at ``memory_mb`` MiB (SageMaker's ``MemorySizeInMB``
of 1024 is 1 GiB). Its private directory is capped at ``DISK_BYTES``.

This module is imported inside worker processes, so it imports only cheap standard
modules (a worker must not pay for asyncio, logging or the pool machinery). Creating and
removing cgroups is the gateway's side, in ``workers.cgroups``.
"""

from __future__ import annotations

import math
import os
import resource
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from workers.kernel import thread_count

# Lambda's published ratio: one vCPU per 1769 MB of memory.
MB_PER_VCPU: Final = 1769

# "5 GB" of ephemeral disk, read as GiB: the larger reading, so a model that keeps to
# either one is never refused.
DISK_BYTES: Final = 5 * 1024**3

# Thread pools of OpenMP, OpenBLAS, MKL, numexpr and Accelerate size themselves from these
# when the library loads; without them each would start one thread per host CPU.
THREAD_VARIABLES: Final = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

# OpenBLAS threads busy-wait for work for 2**OPENBLAS_THREAD_TIMEOUT CPU cycles when they
# start and after each parallel call (default 2**28: ~0.1 s). Under a CPU quota that spin
# spends the quota the model needs: growing the pools of a forked 2048 MB scikit-learn
# worker to two threads burnt ~230 ms of CPU and made its load and first call 6x slower.
# 2**22 cycles (~1.5 ms) still keeps the threads awake between back-to-back calls. The
# model's Environment may set another value (read where OpenBLAS loads: in a zygote, the
# zygote's value applies).
BLAS_SPIN_ENV: Final = {"OPENBLAS_THREAD_TIMEOUT": "22"}

# cgroup v2 cpu.weight of a 1024 MB worker: the kernel's default weight, so a 1024 MB
# worker competes like any ordinary process. v1 cpu.shares default to 1024 for the same.
WEIGHT_PER_GIB: Final = 100
MAX_CPU_WEIGHT: Final = 10_000  # cgroup v2 cpu.weight range is 1..10000
MIN_CPU_SHARES: Final = 2  # cgroup v1 cpu.shares range is 2..262144
MAX_CPU_SHARES: Final = 262_144


@dataclass(frozen=True, slots=True)
class ResourcePlan:
    """The resources of one worker. Validated at construction (ValueError).

    ``vcpus`` is the hard CPU cap, ``cpu_weight`` the cgroup v2 ``cpu.weight`` (1024 MB ->
    100, the kernel default; proportional to memory), ``threads`` the thread-pool size and
    ``disk_bytes`` the cap of the worker's private directory and of any single file.
    """

    memory_mb: int
    vcpus: float
    cpu_weight: int
    threads: int
    disk_bytes: int = DISK_BYTES

    def __post_init__(self) -> None:
        if self.memory_mb < 1:
            raise ValueError(f"memory_mb must be >= 1, got {self.memory_mb}")
        if not self.vcpus > 0:
            raise ValueError(f"vcpus must be > 0, got {self.vcpus}")
        if not 1 <= self.cpu_weight <= MAX_CPU_WEIGHT:
            raise ValueError(f"cpu_weight must be in 1..{MAX_CPU_WEIGHT}, got {self.cpu_weight}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.disk_bytes < 1:
            raise ValueError(f"disk_bytes must be >= 1, got {self.disk_bytes}")

    @property
    def memory_bytes(self) -> int:
        """The memory cap in bytes: ``memory_mb`` MiB."""
        return self.memory_mb * 1024 * 1024

    @property
    def cpu_shares(self) -> int:
        """The weight on cgroup v1's scale (``cpu.shares``; 1024 MB -> 1024)."""
        shares = round(self.cpu_weight * 1024 / WEIGHT_PER_GIB)
        return min(max(shares, MIN_CPU_SHARES), MAX_CPU_SHARES)

    def cpu_quota_us(self, period_us: int) -> int:
        """The CPU cap as a CFS quota per ``period_us`` (at least the kernel's 1 ms)."""
        return max(round(self.vcpus * period_us), 1000)

    def thread_environment(self) -> dict[str, str]:
        """The thread-count variables for this plan, and the bound on BLAS spinning."""
        return {**dict.fromkeys(THREAD_VARIABLES, str(self.threads)), **BLAS_SPIN_ENV}


def plan_resources(
    memory_mb: int, *, mb_per_vcpu: int = MB_PER_VCPU, host_cpus: int
) -> ResourcePlan:
    """The resources of a worker with ``memory_mb`` of memory on a host of ``host_cpus``.

    Pure. Raises ValueError for a non-positive argument.
    """
    if mb_per_vcpu < 1:
        raise ValueError(f"mb_per_vcpu must be >= 1, got {mb_per_vcpu}")
    if host_cpus < 1:
        raise ValueError(f"host_cpus must be >= 1, got {host_cpus}")
    if memory_mb < 1:
        raise ValueError(f"memory_mb must be >= 1, got {memory_mb}")
    vcpus = min(memory_mb / mb_per_vcpu, float(host_cpus))
    weight = min(max(round(memory_mb * WEIGHT_PER_GIB / 1024), 1), MAX_CPU_WEIGHT)
    return ResourcePlan(
        memory_mb=memory_mb,
        vcpus=vcpus,
        cpu_weight=weight,
        threads=max(1, math.ceil(vcpus)),
    )


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a worker process puts itself, as data the process applies to itself (with
    ``join_placement``) right after it starts or is forked, before any model code runs.

    ``cgroup_procs``: the ``cgroup.procs`` file of each of the worker's cgroups (empty
    without cgroups). ``cpu_affinity``: the CPUs to pin to when no cgroup caps CPU, else
    None. ``env``: the thread-count variables. ``fsize_limit``: RLIMIT_FSIZE in bytes.
    ``cgroup_v1``: the groups are cgroup v1 ones, which a single-threaded process joins
    through their ``tasks`` files instead (see ``join_cgroup``).
    """

    cgroup_procs: tuple[str, ...]
    cpu_affinity: tuple[int, ...] | None
    env: Mapping[str, str] = field(default_factory=dict)
    fsize_limit: int = DISK_BYTES
    cgroup_v1: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form, for a frame header."""
        return {
            "cgroup_procs": list(self.cgroup_procs),
            "cpu_affinity": None if self.cpu_affinity is None else list(self.cpu_affinity),
            "env": dict(self.env),
            "fsize_limit": self.fsize_limit,
            "cgroup_v1": self.cgroup_v1,
        }

    @classmethod
    def from_json(cls, data: Any) -> Placement:
        """The inverse of ``to_json``. Raises ValueError for anything else."""
        if not isinstance(data, dict):
            raise ValueError(f"placement must be an object, got {type(data).__name__}")
        procs = data.get("cgroup_procs")
        affinity = data.get("cpu_affinity")
        env = data.get("env")
        fsize = data.get("fsize_limit")
        v1 = data.get("cgroup_v1", False)
        if not isinstance(procs, list) or not all(isinstance(p, str) for p in procs):
            raise ValueError("placement cgroup_procs must be a list of paths")
        if affinity is not None and (
            not isinstance(affinity, list)
            or not affinity
            or not all(isinstance(c, int) and c >= 0 for c in affinity)
        ):
            raise ValueError("placement cpu_affinity must be null or a list of CPU numbers")
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ValueError("placement env must map strings to strings")
        if not isinstance(fsize, int) or isinstance(fsize, bool) or fsize < 1:
            raise ValueError("placement fsize_limit must be a positive integer")
        if not isinstance(v1, bool):
            raise ValueError("placement cgroup_v1 must be true or false")
        return cls(
            cgroup_procs=tuple(procs),
            cpu_affinity=None if affinity is None else tuple(affinity),
            env=dict(env),
            fsize_limit=fsize,
            cgroup_v1=v1,
        )


class Enforcer(Protocol):
    """Applies resource plans to workers. Implementations and ``detect_enforcer`` live in
    ``workers.cgroups``; the protocol lives here so the pool can name it cheaply.

    ``prepare``, ``release`` and ``out_of_memory`` block briefly on the cgroup filesystem;
    they may be called from several threads for different names. A process has at most
    one cgroup enforcer at a time (its groups are named after the process).
    """

    @property
    def mode(self) -> str:
        """``"cgroup2"``, ``"cgroup1"`` or ``"fallback"``."""
        ...

    def describe(self) -> str:
        """One line for the gateway log: the mechanism and where its groups live."""
        ...

    def prepare(self, name: str, plan: ResourcePlan) -> Placement:
        """Create worker ``name``'s cgroups with ``plan``'s limits. Raises OSError (and
        leaves nothing behind) when the cgroup filesystem refuses."""
        ...

    def release(self, name: str) -> None:
        """Remove worker ``name``'s cgroups, killing anything still in them. A missing
        group is fine; raises OSError when a group stays busy for a couple of seconds."""
        ...

    def out_of_memory(self, name: str) -> bool:
        """Whether the kernel's OOM killer killed a process of worker ``name`` for its
        memory limit. Call after the worker died and before ``release``."""
        ...

    def close(self) -> None:
        """Remove every group this enforcer created. Call once every worker exited."""
        ...


def join_placement(placement: Placement) -> None:
    """Apply ``placement`` to the calling process: enter its cgroups, pin its CPUs, set the
    thread-count variables and RLIMIT_FSIZE.

    Call it in the worker process before it starts threads or loads model code: affinity
    is inherited only by threads started later, and thread pools read the variables when
    their library loads. Python ignores SIGXFSZ, so a write past the file-size limit fails
    with OSError (EFBIG) instead of killing the worker. Raises OSError naming what failed.
    """
    # Decided once: joining the first group starts no thread.
    by_thread = placement.cgroup_v1 and thread_count() == 1
    for procs in placement.cgroup_procs:
        join_cgroup(procs, by_thread=by_thread)
    if placement.cpu_affinity is not None:
        try:
            os.sched_setaffinity(0, placement.cpu_affinity)
        except OSError as exc:
            cpus = list(placement.cpu_affinity)
            raise OSError(exc.errno, f"cannot pin to CPUs {cpus}: {exc.strerror}") from exc
    os.environ.update(placement.env)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # An unprivileged process cannot raise its hard limit; a lower one inherited stays.
    limit = (
        placement.fsize_limit
        if hard == resource.RLIM_INFINITY
        else min(hard, placement.fsize_limit)
    )
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot limit file size to {limit} bytes: {exc}") from exc


def join_cgroup(procs: str, *, by_thread: bool) -> None:
    """Move the calling process into the cgroup whose ``cgroup.procs`` file is ``procs``;
    ``by_thread`` (for a single-threaded process in a cgroup v1 hierarchy only) moves its
    one thread through the group's ``tasks`` file instead.

    Moving a whole process takes the kernel's global thread-group lock, whose write side
    waits for an RCU grace period: 5-15 ms on the 2-core machines measured (Linux 6.18),
    on every cold start. Recent kernels skip that lock when a thread moves only itself
    (writing ``0`` to ``tasks``): ~0.15 ms there, and the same membership when the process
    has no other thread; a kernel without that shortcut takes the lock as before. (cgroup
    v2 moves single threads only inside threaded subtrees.) Raises OSError naming the
    group.
    """
    path, value = procs, str(os.getpid()).encode()
    if by_thread:
        path, value = os.path.join(os.path.dirname(procs), "tasks"), b"0"
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot join cgroup {procs}: {exc.strerror}") from exc


def rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` in bytes, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            fields = statm.read().split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if len(fields) < 2:
        return None
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def directory_bytes(path: Path) -> int:
    """Total apparent size of the regular files under ``path``, without following links.

    0 when ``path`` does not exist. Entries that vanish during the walk are skipped (the
    worker keeps writing meanwhile); any other error, such as a directory made unreadable,
    raises OSError.
    """
    total = 0
    pending = [os.fspath(path)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
                elif stat.S_ISREG(info.st_mode):
                    total += info.st_size
    return total
