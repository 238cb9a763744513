"""A worker's resources: what it may use, planned on the gateway's side.

Each worker gets CPU in proportion to its memory, as Lambda does: a hard cap of
``memory_mb / mb_per_vcpu`` vCPUs (never more than the host has), a CPU weight proportional
to ``memory_mb`` for when CPUs are contended, and the common thread-count variables set to
the cap rounded up. Memory is capped at ``memory_mb`` MiB (SageMaker's ``MemorySizeInMB``
of 1024 is 1 GiB). Its private directory is capped at ``DISK_BYTES``.

Pure planning and the ``Enforcer`` interface; creating and removing cgroups is
``workers.pool.cgroups``, and a worker joins what was prepared for it with
``workers.child.limits``.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from workers.wire.messages import Placement

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


class Enforcer(Protocol):
    """Applies resource plans to workers. Implementations and ``detect_enforcer`` live in
    ``workers.pool.cgroups``; the protocol lives here so the pool can name it cheaply.

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
