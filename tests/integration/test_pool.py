"""The worker pool on its own, with real worker processes (no gateway)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import MODELS, REPO, is_running, worker_processes
from workers import (
    Invocation,
    PoolClosed,
    PoolLimits,
    PoolManager,
    SetupFailed,
    WorkerSpec,
)

pytestmark = pytest.mark.timeout(60)

LOG = logging.getLogger("test.pool")


def spec(name: str = "behave", **environment: str) -> WorkerSpec:
    return WorkerSpec(label=name, model_dir=MODELS / name, memory_mb=1024, environment=environment)


def limits(max_workers: int = 4, idle_timeout_s: float = 60.0) -> PoolLimits:
    return PoolLimits(
        max_workers=max_workers,
        idle_timeout_s=idle_timeout_s,
        invocation_timeout_s=30.0,
        setup_timeout_s=30.0,
        max_response_bytes=4 * 1024 * 1024,
    )


def call(body: bytes) -> Invocation:
    return Invocation(request_id="test", body=body)


async def wait_for(condition: object, timeout: float = 10.0) -> None:
    """Poll a condition on the event loop with a deadline (no guessed sleeps)."""
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_burst_from_zero_starts_at_most_one_worker_per_request(tmp_path: Path) -> None:
    """N concurrent calls to an empty pool start at most N workers and answer all N."""
    async with PoolManager(private_root=tmp_path, log=LOG).running() as manager:
        pool = manager.pool("ep", spec(), limits(max_workers=6))
        results = await asyncio.gather(*(pool.invoke(call(b"pid")) for _ in range(6)))
        assert all(r.status == 200 for r in results)
        assert all(r.cold_start for r in results)
        assert len({r.body for r in results}) == 6
        assert pool.statistics().idle == 6


async def test_pool_never_exceeds_max_workers(tmp_path: Path) -> None:
    """Without admission in front, callers beyond max_workers wait for a worker instead
    of starting more; every call is answered."""
    async with PoolManager(private_root=tmp_path, log=LOG).running() as manager:
        pool = manager.pool("ep", spec(), limits(max_workers=2))
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, pool.total)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        try:
            results = await asyncio.gather(*(pool.invoke(call(b"sleep:0.2")) for _ in range(5)))
        finally:
            watcher.cancel()
        assert [r.body for r in results] == [b"slept"] * 5
        assert peak == 2
        assert len(worker_processes(tmp_path)) == 2


async def test_most_recently_used_worker_is_reused(tmp_path: Path) -> None:
    """With two idle workers, the one released last serves the next call."""
    async with PoolManager(private_root=tmp_path, log=LOG).running() as manager:
        pool = manager.pool("ep", spec(), limits())
        # Two workers busy at once; the second finishes (is released) last.
        early, late = await asyncio.gather(
            pool.invoke(call(b"sleeppid:0.1")), pool.invoke(call(b"sleeppid:0.5"))
        )
        assert early.body != late.body
        for _ in range(3):
            again = await pool.invoke(call(b"pid"))
            assert not again.cold_start
            assert again.body == late.body


async def test_idle_worker_is_reaped_and_its_directory_removed(tmp_path: Path) -> None:
    """A worker idle past idle_timeout_s exits and its private directory is removed."""
    async with PoolManager(private_root=tmp_path, log=LOG).running() as manager:
        pool = manager.pool("ep", spec(), limits(idle_timeout_s=0.2))
        result = await pool.invoke(call(b"pid"))
        pid = int(result.body)
        assert list(tmp_path.iterdir())
        await wait_for(lambda: not is_running(pid))
        assert not worker_processes(tmp_path)
        assert pool.statistics().reaped == 1
        await wait_for(lambda: not list(tmp_path.iterdir()))


async def test_closed_pool_refuses_new_work_and_finishes_in_flight(tmp_path: Path) -> None:
    """After close_nowait, the in-flight call still completes; new calls get PoolClosed."""
    async with PoolManager(private_root=tmp_path, log=LOG).running() as manager:
        pool = manager.pool("ep", spec(), limits())
        in_flight = asyncio.create_task(pool.invoke(call(b"sleep:0.5")))
        await wait_for(lambda: pool.statistics().busy == 1)
        pool.close_nowait()
        with pytest.raises(PoolClosed):
            await pool.invoke(call(b"x"))
        assert (await in_flight).body == b"slept"
        await asyncio.wait_for(pool.wait_closed(), timeout=10)
        assert not worker_processes(tmp_path)


async def test_changed_spec_retires_the_old_pool(tmp_path: Path) -> None:
    """A new spec for the same key gets a new pool; the old pool's workers stop."""
    async with PoolManager(private_root=tmp_path, log=LOG).running() as manager:
        old = manager.pool("ep", spec(VERSION="1"), limits())
        old_pid = int((await old.invoke(call(b"pid"))).body)
        new = manager.pool("ep", spec(VERSION="2"), limits())
        assert new is not old
        assert manager.pool("ep", spec(VERSION="2"), limits()) is new
        await wait_for(lambda: not is_running(old_pid))
        assert int((await new.invoke(call(b"pid"))).body) != old_pid


async def test_leaving_the_manager_stops_every_worker(tmp_path: Path) -> None:
    """Leaving `async with PoolManager` stops idle and busy workers and waits for them."""
    async with PoolManager(private_root=tmp_path, log=LOG).running() as manager:
        pool = manager.pool("ep", spec(), limits())
        await asyncio.gather(*(pool.invoke(call(b"pid")) for _ in range(3)))
        pids = worker_processes(tmp_path)
        assert len(pids) == 3
    assert not any(is_running(pid) for pid in pids)
    assert not list(tmp_path.iterdir())


def voluntary_switches(pid: int) -> int:
    """How often process ``pid`` has gone to sleep (its voluntary context switches)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches for {pid}")


async def test_a_warm_worker_sleeps_once_per_request(tmp_path: Path) -> None:
    """A warm worker wakes only for its requests: reading its reply does not wake it too
    (a worker blocked in recv would be woken by the freed write space, twice per call)."""
    async with PoolManager(private_root=tmp_path, log=LOG).running() as manager:
        pool = manager.pool("ep", spec(), limits())
        pid = int((await pool.invoke(call(b"pid"))).body)
        calls = 300
        before = voluntary_switches(pid)
        for _ in range(calls):
            assert (await pool.invoke(call(b"pid"))).body == str(pid).encode()
        assert voluntary_switches(pid) - before < 1.5 * calls


async def test_a_worker_that_breaks_the_protocol_while_loading_is_named_for_it(
    tmp_path: Path,
) -> None:
    """Model code that writes a frame the gateway must refuse on the worker's channel (a
    header of length 0) fails the load with that reason, not with how the kill that
    followed ended the worker."""
    code = tmp_path / "model" / "code"
    code.mkdir(parents=True)
    (code / "inference.py").write_text(
        "import gc\n"
        "import socket\n"
        "for found in gc.get_objects():\n"
        "    if isinstance(found, socket.socket) and found.family == socket.AF_UNIX:\n"
        "        found.sendall(bytes(8))\n\n\n"
        "def model_fn(model_dir):\n"
        "    return None\n"
    )
    broken = WorkerSpec(label="broken", model_dir=tmp_path / "model", memory_mb=1024)
    async with PoolManager(private_root=tmp_path / "private", log=LOG).running() as manager:
        pool = manager.pool("ep", broken, limits())
        with pytest.raises(SetupFailed, match=r"broke the protocol.*header length 0"):
            await pool.invoke(call(b"x"))


async def test_a_bug_in_one_workers_supervision_is_contained_to_that_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A supervision task that raises (a bug, here planted in the log forwarding of the
    first worker) puts that worker down and is logged with its traceback; the endpoint
    serves on with a new worker, another endpoint is untouched, and the manager still
    stops cleanly, with no worker left."""
    from workers.pool import launch

    forward = launch.forward_output
    strike = asyncio.Event()
    planted: list[bool] = []

    async def forward_with_a_bug(*args: object, **kwargs: object) -> None:
        if not planted:  # the first worker's supervision fails once the test says so
            planted.append(True)
            await strike.wait()
            raise RuntimeError("planted supervision bug")
        await forward(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(launch, "forward_output", forward_with_a_bug)
    async with PoolManager(private_root=tmp_path, log=LOG).running() as manager:
        doomed = manager.pool("doomed", spec(), limits())
        other = manager.pool("other", spec(), limits())
        first = int((await doomed.invoke(call(b"pid"))).body)
        strike.set()
        await wait_for(lambda: not is_running(first))
        second = int((await doomed.invoke(call(b"pid"))).body)
        assert second != first
        assert (await other.invoke(call(b"echo"))).status == 200
        pids = worker_processes(tmp_path)
        assert second in pids
        assert first not in pids
    assert not any(is_running(pid) for pid in [first, *pids])
    bugs = [r for r in caplog.records if "bug in background task" in r.getMessage()]
    assert len(bugs) == 1
    assert bugs[0].exc_info is not None
    assert "planted supervision bug" in str(bugs[0].exc_info[1])


# Run in a process of its own: with zygotes on, the manager makes its process a child
# subreaper, which the test process should not become.
RUNTIME_ZYGOTE_EXIT = """
import asyncio, logging, pathlib, sys
from tests.support import is_running
from workers import PoolManager

async def main():
    manager = PoolManager(
        private_root=pathlib.Path(sys.argv[1]), log=logging.getLogger("t"), zygotes=True
    )
    async with manager.running():
        zygote = manager.runtime_zygote_pid()
        assert zygote is not None and is_running(zygote)
    print(zygote, is_running(zygote))

asyncio.run(main())
"""


def test_leaving_the_manager_waits_for_the_runtime_zygote_to_exit(tmp_path: Path) -> None:
    """The runtime zygote has exited by the time the manager is left, not a moment after
    (it would outlive a gateway that exits right then)."""
    done = subprocess.run(
        [sys.executable, "-c", RUNTIME_ZYGOTE_EXIT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    pid, running = done.stdout.split()
    assert running == "False"
    assert not is_running(int(pid))
