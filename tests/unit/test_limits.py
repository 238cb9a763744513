"""Resource plans, placements and the measurements the watchdogs use (no cgroups here)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workers.child.limits import join_placement
from workers.pool.cgroups import FallbackEnforcer, detect_enforcer
from workers.pool.limits import (
    DISK_BYTES,
    THREAD_VARIABLES,
    ResourcePlan,
    directory_bytes,
    plan_resources,
    rss_bytes,
)
from workers.wire.messages import Placement

LOG = logging.getLogger("test.limits")


@pytest.mark.parametrize(
    ("memory_mb", "vcpus", "threads", "weight", "shares"),
    [
        (1024, 1024 / 1769, 1, 100, 1024),
        (2048, 2048 / 1769, 2, 200, 2048),
        (3072, 3072 / 1769, 2, 300, 3072),
        (4096, 2.0, 2, 400, 4096),
        (5120, 2.0, 2, 500, 5120),
        (6144, 2.0, 2, 600, 6144),
    ],
)
def test_plan_for_each_memory_size_on_two_cpus(
    memory_mb: int, vcpus: float, threads: int, weight: int, shares: int
) -> None:
    """Each SageMaker memory size gets memory/1769 vCPUs capped at the host's 2, the
    rounded-up thread count and a weight proportional to memory."""
    plan = plan_resources(memory_mb, mb_per_vcpu=1769, host_cpus=2)
    assert plan.memory_mb == memory_mb
    assert plan.vcpus == pytest.approx(vcpus)
    assert plan.threads == threads
    assert plan.cpu_weight == weight
    assert plan.cpu_shares == shares
    assert plan.memory_bytes == memory_mb * 1024 * 1024
    assert plan.disk_bytes == DISK_BYTES == 5 * 1024**3


def test_smallest_plan_is_a_fraction_of_a_cpu() -> None:
    """1024 MB is 0.579 vCPU: a 57886 us quota per 100 ms period, and one thread."""
    plan = plan_resources(1024, host_cpus=2)
    assert round(plan.vcpus, 3) == 0.579
    assert plan.cpu_quota_us(100_000) == 57_886
    assert plan.thread_environment() == {
        **dict.fromkeys(THREAD_VARIABLES, "1"),
        "OPENBLAS_THREAD_TIMEOUT": "22",
    }


def test_weights_are_proportional_to_memory() -> None:
    """Twice the memory is twice the CPU weight, on the v2 and the v1 scale alike."""
    small = plan_resources(1024, host_cpus=2)
    large = plan_resources(2048, host_cpus=2)
    assert (large.cpu_weight, large.cpu_shares) == (2 * small.cpu_weight, 2 * small.cpu_shares)


def test_cap_follows_mb_per_vcpu_and_host() -> None:
    """A different ratio changes the cap; many host CPUs lift the cap to memory's share."""
    assert plan_resources(2048, mb_per_vcpu=1024, host_cpus=8).vcpus == 2.0
    assert plan_resources(6144, host_cpus=64).vcpus == pytest.approx(6144 / 1769)
    assert plan_resources(6144, host_cpus=64).threads == 4
    assert plan_resources(6144, host_cpus=1).vcpus == 1.0


def test_tiny_quota_is_raised_to_the_kernel_minimum() -> None:
    """A quota below the kernel's 1 ms minimum is written as 1 ms."""
    plan = ResourcePlan(memory_mb=8, vcpus=0.001, cpu_weight=1, threads=1)
    assert plan.cpu_quota_us(100_000) == 1000


@pytest.mark.parametrize(
    "arguments",
    [
        {"memory_mb": 0, "host_cpus": 2},
        {"memory_mb": 1024, "host_cpus": 0},
        {"memory_mb": 1024, "host_cpus": 2, "mb_per_vcpu": 0},
    ],
)
def test_plan_rejects_non_positive_arguments(arguments: dict[str, int]) -> None:
    """Zero memory, CPUs or ratio is a ValueError, not a zero quota."""
    with pytest.raises(ValueError, match="must be >= 1"):
        plan_resources(**arguments)


@pytest.mark.parametrize(("affinity", "v1"), [(None, True), ((0, 3), False)])
def test_placement_survives_a_json_round_trip(affinity: tuple[int, ...] | None, v1: bool) -> None:
    """A placement sent through JSON text comes back equal."""
    placement = Placement(
        cgroup_procs=("/sys/fs/cgroup/cpu/coldbrew-1/w-1/cgroup.procs",),
        cpu_affinity=affinity,
        env={"OMP_NUM_THREADS": "2"},
        fsize_limit=12345,
        cgroup_v1=v1,
    )
    assert Placement.from_json(json.loads(json.dumps(placement.to_json()))) == placement


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"cgroup_procs": "x", "cpu_affinity": None, "env": {}, "fsize_limit": 1},
        {"cgroup_procs": [], "cpu_affinity": [], "env": {}, "fsize_limit": 1},
        {"cgroup_procs": [], "cpu_affinity": [-1], "env": {}, "fsize_limit": 1},
        {"cgroup_procs": [], "cpu_affinity": None, "env": {"A": 1}, "fsize_limit": 1},
        {"cgroup_procs": [], "cpu_affinity": None, "env": {}, "fsize_limit": 0},
        {"cgroup_procs": [], "cpu_affinity": None, "env": {}, "fsize_limit": True},
        {"cgroup_procs": [], "cpu_affinity": None, "env": {}, "fsize_limit": 1, "cgroup_v1": 1},
    ],
)
def test_placement_rejects_malformed_json(data: Any) -> None:
    """Anything but the shape ``to_json`` writes is a ValueError."""
    with pytest.raises(ValueError, match="placement"):
        Placement.from_json(data)


def test_fallback_spreads_workers_over_cpus() -> None:
    """Fallback pins successive workers to successive CPUs, wrapping around, and gives a
    multi-thread worker as many CPUs as threads (never more than the host has)."""
    enforcer = FallbackEnforcer([3, 1, 2, 0])
    one = plan_resources(1024, host_cpus=4)
    two = plan_resources(2048, host_cpus=4)
    six = plan_resources(6144, host_cpus=8)
    affinities = [enforcer.prepare(f"w-{i}", one).cpu_affinity for i in range(5)]
    assert affinities == [(0,), (1,), (2,), (3,), (0,)]
    assert enforcer.prepare("w-5", two).cpu_affinity == (1, 2)
    assert enforcer.prepare("w-6", two).cpu_affinity == (0, 3)
    assert enforcer.prepare("w-7", six).cpu_affinity == (0, 1, 2, 3)


def test_fallback_placement_has_no_cgroups_and_sets_threads_and_disk() -> None:
    """A fallback placement joins no cgroup, and carries the thread count and disk cap."""
    placement = FallbackEnforcer([0, 1]).prepare("w-1", plan_resources(2048, host_cpus=2))
    assert placement.cgroup_procs == ()
    assert placement.env == {
        **dict.fromkeys(THREAD_VARIABLES, "2"),
        "OPENBLAS_THREAD_TIMEOUT": "22",
    }
    assert placement.fsize_limit == DISK_BYTES


def test_fallback_forced_and_unknown_modes() -> None:
    """Forcing fallback needs nothing from the machine; an unknown mode is a ValueError."""
    enforcer = detect_enforcer(prefer="fallback", log=LOG)
    assert enforcer.mode == "fallback"
    assert "affinity" in enforcer.describe()
    assert enforcer.out_of_memory("w-1") is False
    with pytest.raises(ValueError, match="unknown limits mode"):
        detect_enforcer(prefer="cgroup3", log=LOG)


def test_rss_of_this_process_and_of_a_gone_one() -> None:
    """rss_bytes reads a live process's resident size and None for a reaped one."""
    before = rss_bytes(os.getpid())
    ballast = bytearray(b"\x01" * (64 << 20))
    after = rss_bytes(os.getpid())
    assert before is not None
    assert after is not None
    assert after - before >= 60 << 20
    del ballast
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    assert rss_bytes(gone.pid) is None


def test_directory_bytes_counts_regular_files_only(tmp_path: Path) -> None:
    """Files in nested directories count by size; links to files outside do not."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"o" * 10_000)
    root = tmp_path / "private"
    (root / "a" / "b").mkdir(parents=True)
    (root / "top.txt").write_bytes(b"t" * 100)
    (root / "a" / "mid.bin").write_bytes(b"m" * 2_000)
    (root / "a" / "b" / "deep.bin").write_bytes(b"d" * 30)
    (root / "a" / "link").symlink_to(outside)
    (root / "a" / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    assert directory_bytes(root) == 2_130
    assert directory_bytes(tmp_path / "missing") == 0


def test_join_failure_names_the_cgroup(tmp_path: Path) -> None:
    """A cgroup that cannot be joined is an OSError naming it (nothing else is applied)."""
    missing = tmp_path / "gone" / "cgroup.procs"
    placement = Placement(cgroup_procs=(str(missing),), cpu_affinity=None, fsize_limit=DISK_BYTES)
    with pytest.raises(OSError, match=f"cannot join cgroup {missing}"):
        join_placement(placement)
