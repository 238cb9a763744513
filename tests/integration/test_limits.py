"""Resource limits on real cgroups: real child processes join them and the kernel
enforces them. Needs root; each cgroup mode runs only where the machine offers it."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from workers.pool.cgroups import EnforcerUnavailable, detect_enforcer
from workers.pool.limits import (
    DISK_BYTES,
    THREAD_VARIABLES,
    Enforcer,
    ResourcePlan,
    plan_resources,
)
from workers.wire.messages import Placement

pytestmark = pytest.mark.timeout(60)

LOG = logging.getLogger("test.limits")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_MODES = ("cgroup2", "cgroup1")
HOST_CPUS = len(os.sched_getaffinity(0))

# The worker side: join the placement, report, then obey commands until stdin closes.
CHILD = """
import json, os, resource, sys, threading, time
from workers.child.limits import join_placement
from workers.wire.messages import Placement
if sys.argv[2:] == ["threaded"]:
    threading.Thread(target=threading.Event().wait, daemon=True).start()
join_placement(Placement.from_json(json.loads(sys.argv[1])))
print(json.dumps({
    "pid": os.getpid(),
    "cgroup": open("/proc/self/cgroup").read(),
    "threads": [open(f"/proc/self/task/{t}/cgroup").read() for t in os.listdir("/proc/self/task")],
    "env": dict(os.environ),
    "fsize": resource.getrlimit(resource.RLIMIT_FSIZE),
    "affinity": sorted(os.sched_getaffinity(0)),
}), flush=True)
for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    if command == "alloc":
        data = b"x" * (int(argument) << 20)
        print(json.dumps({"allocated": len(data)}), flush=True)
    elif command == "spin":
        wall0, cpu0 = time.monotonic(), time.process_time()
        while time.monotonic() - wall0 < float(argument):
            pass
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)
"""


class Child:
    """A process running CHILD under ``placement``; a context manager that kills and reaps
    it on exit. Lines are read with a deadline, never by sleeping."""

    def __init__(self, placement: Placement, *, threaded: bool = False) -> None:
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
        extra = ["threaded"] if threaded else []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(placement.to_json()), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env=env,
        )

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())

    def read(self, timeout: float = 15.0) -> dict[str, Any]:
        """The child's next JSON line; fails when it exits first or the deadline passes."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line from the child within {timeout} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"child exited ({self.proc.wait(10)}): {self.stderr()}")
            line += chunk
        result: dict[str, Any] = json.loads(line)
        return result

    def close_stdin(self) -> None:
        """End the child's command loop: it exits with status 0."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout=timeout)


def offered_mode() -> str:
    """What this machine offers, judged independently of the code under test."""
    for mount in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        controllers = mount / "cgroup.controllers"
        if controllers.exists() and {"cpu", "memory"} <= set(controllers.read_text().split()):
            return "cgroup2"
    cpu = CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us"
    memory = CGROUP_ROOT / "memory" / "memory.limit_in_bytes"
    return "cgroup1" if cpu.exists() and memory.exists() else "fallback"


def our_cgroups() -> list[Path]:
    """Every ``coldbrew-<this pid>`` directory anywhere under the cgroup mounts."""
    wanted = f"coldbrew-{os.getpid()}"
    return [
        Path(top) / name for top, dirs, _ in os.walk(CGROUP_ROOT) for name in dirs if name == wanted
    ]


def group_with(placement: Placement, filename: str) -> Path:
    """The worker's group directory that has ``filename`` (v1 has one per controller)."""
    for procs in placement.cgroup_procs:
        group = Path(procs).parent
        if (group / filename).exists():
            return group
    raise AssertionError(f"no group of {placement.cgroup_procs} has {filename}")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("cgroup tests need root to create cgroups")


@pytest.fixture(params=CGROUP_MODES)
def enforcer(request: pytest.FixtureRequest) -> Iterator[Enforcer]:
    """A cgroup enforcer of each mode this machine offers; closed even when a test fails."""
    require_root()
    mode: str = request.param
    try:
        found = detect_enforcer(prefer=mode, log=LOG)
    except EnforcerUnavailable as exc:
        pytest.skip(f"{mode} is not available on this machine: {exc}")
    try:
        yield found
    finally:
        found.close()


def test_auto_picks_what_the_machine_offers() -> None:
    """Auto detection reports the mode the machine offers (cgroup1 on the dev hosts)."""
    require_root()
    found = detect_enforcer(log=LOG)
    try:
        assert found.mode == offered_mode()
    finally:
        found.close()
    assert our_cgroups() == []


@pytest.mark.parametrize("mode", CGROUP_MODES)
def test_forcing_an_unavailable_mode_fails_cleanly(mode: str) -> None:
    """A mode the machine lacks raises with a reason and leaves no cgroup behind."""
    require_root()
    if mode == offered_mode():
        pytest.skip(f"{mode} is available here")
    with pytest.raises(EnforcerUnavailable, match=f"{mode} unavailable"):
        detect_enforcer(prefer=mode, log=LOG)
    assert our_cgroups() == []


def test_serve_with_a_forced_mode_this_machine_lacks_is_refused_by_name(tmp_path: Path) -> None:
    """`coldbrew serve` asked for limits the machine cannot give says so, naming the
    setting, and exits 2: no traceback, no gateway."""
    lacking = [mode for mode in CGROUP_MODES if mode != offered_mode()]
    if not lacking:
        pytest.skip("every cgroup mode is available here")
    config = tmp_path / "coldbrew.toml"
    config.write_text(
        f'[server]\nport = 0\nstate_dir = "{tmp_path / "state"}"\n'
        f'[pool]\ncpu_limits = "{lacking[0]}"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "config key pool.cpu_limits:" in done.stderr
    assert f"{lacking[0]} unavailable" in done.stderr
    assert "Traceback" not in done.stderr


def expected_files(mode: str, plan: ResourcePlan) -> dict[str, str]:
    quota = str(round(plan.vcpus * 100_000))
    memory = str(plan.memory_mb * 1024 * 1024)
    if mode == "cgroup2":
        return {
            "cpu.max": f"{quota} 100000",
            "cpu.weight": str(plan.cpu_weight),
            "memory.max": memory,
            "memory.swap.max": "0",
        }
    return {
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": quota,
        "cpu.shares": str(plan.memory_mb),
        "memory.limit_in_bytes": memory,
        "memory.memsw.limit_in_bytes": memory,
    }


@pytest.mark.parametrize("memory_mb", [1024, 3072])
def test_prepare_writes_the_plan(enforcer: Enforcer, memory_mb: int) -> None:
    """The worker's cgroup files hold exactly the plan's quota, weight and memory cap."""
    plan = plan_resources(memory_mb, host_cpus=HOST_CPUS)
    placement = enforcer.prepare("w-1", plan)
    written = {}
    for filename in expected_files(enforcer.mode, plan):
        try:
            group = group_with(placement, filename)
        except AssertionError:
            assert filename in ("memory.swap.max", "memory.memsw.limit_in_bytes")
            continue  # the kernel does not account swap
        written[filename] = (group / filename).read_text().strip()
    expected = {k: v for k, v in expected_files(enforcer.mode, plan).items() if k in written}
    assert written == expected
    if memory_mb == 1024:
        quota_file = "cpu.max" if enforcer.mode == "cgroup2" else "cpu.cfs_quota_us"
        assert written[quota_file].split()[0] == "57886"


def joined_controllers(proc_cgroup: str, name: str) -> set[str]:
    """The controllers whose line of a /proc/.../cgroup text ends in worker ``name``'s
    group ({""} for the v2 hierarchy)."""
    suffix = f"/coldbrew-{os.getpid()}/{name}"
    return {line.split(":")[1] for line in proc_cgroup.splitlines() if line.endswith(suffix)}


@pytest.mark.parametrize("threaded", [False, True], ids=["one-thread", "two-threads"])
def test_child_joins_its_cgroups_and_limits(enforcer: Enforcer, threaded: bool) -> None:
    """A real child ends up in the worker's groups with every thread it has (a single
    thread joins under v1 through the ``tasks`` file, a threaded process as a whole),
    with the thread variables and the file-size limit set; release removes the groups
    once it exited."""
    plan = plan_resources(2048, host_cpus=HOST_CPUS)
    placement = enforcer.prepare("w-1", plan)
    with Child(placement, threaded=threaded) as child:
        report = child.read()
        for procs in placement.cgroup_procs:
            assert str(report["pid"]) in Path(procs).read_text().split()
        expected = {""} if enforcer.mode == "cgroup2" else {"cpu", "memory"}
        assert joined_controllers(report["cgroup"], "w-1") == expected
        assert len(report["threads"]) == (2 if threaded else 1)
        for thread in report["threads"]:
            assert joined_controllers(thread, "w-1") == expected
        for variable in THREAD_VARIABLES:
            assert report["env"][variable] == str(plan.threads)
        assert report["fsize"] == [DISK_BYTES, DISK_BYTES]
        child.close_stdin()
        assert child.wait() == 0
    enforcer.release("w-1")
    assert all(not Path(procs).parent.exists() for procs in placement.cgroup_procs)
    enforcer.release("w-1")  # already gone: no error


def test_release_kills_what_is_left_in_the_groups(enforcer: Enforcer) -> None:
    """Releasing a worker whose process still runs kills it and removes the groups."""
    placement = enforcer.prepare("w-1", plan_resources(1024, host_cpus=HOST_CPUS))
    with Child(placement) as child:
        child.read()
        enforcer.release("w-1")
        assert child.wait() == -signal.SIGKILL
    assert all(not Path(procs).parent.exists() for procs in placement.cgroup_procs)


def small_plan() -> ResourcePlan:
    return ResourcePlan(memory_mb=64, vcpus=1.0, cpu_weight=6, threads=1)


def test_kernel_oom_kill_is_reported(enforcer: Enforcer) -> None:
    """A child allocating 200 MB in a 64 MB group is SIGKILLed by the kernel, and
    out_of_memory says so."""
    placement = enforcer.prepare("w-oom", small_plan())
    with Child(placement) as child:
        child.read()
        child.send("alloc 200")
        assert child.wait() == -signal.SIGKILL
    assert enforcer.out_of_memory("w-oom") is True
    enforcer.release("w-oom")


def test_plain_sigkill_is_not_out_of_memory(enforcer: Enforcer) -> None:
    """A child killed by SIGKILL within its memory limit is not reported as OOM."""
    placement = enforcer.prepare("w-kill", small_plan())
    with Child(placement) as child:
        child.read()
        child.send("alloc 8")
        assert child.read()["allocated"] == 8 << 20
        child.proc.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    assert enforcer.out_of_memory("w-kill") is False
    enforcer.release("w-kill")


def test_cpu_quota_throttles_a_spinning_child(enforcer: Enforcer) -> None:
    """Under a 0.25-vCPU quota, 1.5 s of spinning gets about 0.375 s of CPU (bound 0.6 s,
    against 1.5 s unthrottled), and the kernel counts throttled periods."""
    plan = ResourcePlan(memory_mb=1024, vcpus=0.25, cpu_weight=100, threads=1)
    placement = enforcer.prepare("w-spin", plan)
    with Child(placement) as child:
        child.read()
        child.send("spin 1.5")
        spun = child.read()
    assert spun["wall"] >= 1.5
    assert spun["cpu"] <= 0.6
    stat = (group_with(placement, "cpu.stat") / "cpu.stat").read_text().split()
    assert int(stat[stat.index("nr_throttled") + 1]) > 0
    enforcer.release("w-spin")


def test_close_leaves_no_cgroup_behind(enforcer: Enforcer) -> None:
    """close removes the gateway's parent groups with every worker group under them."""
    plan = plan_resources(1024, host_cpus=HOST_CPUS)
    placement = enforcer.prepare("w-1", plan)
    enforcer.prepare("w-2", plan)
    with Child(placement) as child:
        child.read()
    assert our_cgroups() != []
    enforcer.close()
    assert our_cgroups() == []
    enforcer.close()  # idempotent: the fixture closes again


def test_a_second_enforcer_in_one_process_is_refused(enforcer: Enforcer) -> None:
    """A second cgroup enforcer in the same process is an error, and the first one keeps
    its groups (they are named after the process, so two would collide)."""
    with pytest.raises(RuntimeError, match="already has a cgroup enforcer"):
        detect_enforcer(prefer=enforcer.mode, log=LOG)
    placement = enforcer.prepare("w-1", plan_resources(1024, host_cpus=HOST_CPUS))
    with Child(placement) as child:
        assert child.read()["env"]["OMP_NUM_THREADS"] == "1"


def test_stale_groups_of_a_dead_gateway_are_swept() -> None:
    """Groups left by a gateway that died without close are removed by the next one."""
    require_root()
    try:
        first = detect_enforcer(prefer=offered_mode(), log=LOG)
    except EnforcerUnavailable as exc:
        pytest.skip(f"no cgroup mode here: {exc}")
    if first.mode == "fallback":
        pytest.skip("no cgroup mode here")
    placement = first.prepare("w-1", plan_resources(1024, host_cpus=HOST_CPUS))
    first.close()
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait(timeout=10)
    stale = [Path(p).parent.parent.parent / f"coldbrew-{gone.pid}" for p in placement.cgroup_procs]
    try:
        for parent in stale:
            (parent / "w-7").mkdir(parents=True)
        second = detect_enforcer(prefer=first.mode, log=LOG)
        second.close()
        assert [parent for parent in stale if parent.exists()] == []
    finally:
        for parent in stale:
            for group in (parent / "w-7", parent):
                if group.exists():
                    group.rmdir()


def test_fallback_pins_the_child() -> None:
    """In fallback mode the child runs on the CPUs of its placement only."""
    if HOST_CPUS < 2:
        pytest.skip("pinning cannot be told apart from the default on one CPU")
    found = detect_enforcer(prefer="fallback", log=LOG)
    placement = found.prepare("w-1", plan_resources(1024, host_cpus=HOST_CPUS))
    assert placement.cpu_affinity is not None
    assert len(placement.cpu_affinity) == 1
    with Child(placement) as child:
        report = child.read()
    assert report["affinity"] == list(placement.cpu_affinity)
    assert report["env"]["OMP_NUM_THREADS"] == "1"
    assert report["fsize"] == [DISK_BYTES, DISK_BYTES]
