"""Cold-start tiers, zygote death and fallback, learned imports, provisioned workers,
and worker resource limits, with real gateway, zygote and worker processes."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.control import control_client, create_model
from tests.support import (
    Gateway,
    clean_env,
    is_running,
    running_gateway,
    toml_config,
    wait_until,
)
from workers.pool.limits import plan_resources

pytestmark = pytest.mark.timeout(120)


def call(gw: Gateway, name: str, body: bytes) -> tuple[bytes, str | None]:
    """Invoke; return the answer and the cold-start tier (None when warm)."""
    result = gw.runtime().invoke_endpoint(EndpointName=name, Body=body)
    header = result["ResponseMetadata"]["HTTPHeaders"].get("x-coldbrew-cold-start")
    tier = header.split(";")[0].removeprefix("tier=") if header else None
    return result["Body"].read(), tier


def reaped(gw: Gateway, pid: int) -> None:
    wait_until(lambda: not is_running(pid), timeout=15, what=f"worker {pid} to be reaped")


def ready_model_zygotes(gw: Gateway) -> list[int]:
    """Model zygotes that have loaded their model: a process with the name may still be
    loading (or be a worker it just forked, not yet renamed)."""
    log = gw.log()
    return [pid for pid in gw.children("cb-model-zygote") if f"model zygote {pid} ready" in log]


def quick_reaping(tmp_path: Path, endpoints: dict[str, dict[str, Any]], **pool: Any) -> str:
    return toml_config(
        tmp_path / "state", endpoints=endpoints, pool={"idle_timeout_s": 0.3, **pool}
    )


def test_cold_starts_move_to_the_model_zygote(tmp_path: Path) -> None:
    """The first cold start forks the runtime zygote; from its second invocation the
    endpoint has a model zygote, and once the worker is reaped the next cold start forks
    that."""
    with running_gateway(tmp_path, quick_reaping(tmp_path, {"behave": {}})) as gw:
        first, tier = call(gw, "behave", b"pid")
        assert tier == "runtime-zygote"
        assert gw.children("cb-model-zygote") == [], "a one-off invocation gets no zygote"
        assert call(gw, "behave", b"pid") == (first, None)
        wait_until(lambda: ready_model_zygotes(gw), timeout=30, what="a ready model zygote")
        reaped(gw, int(first))
        second, tier = call(gw, "behave", b"pid")
        assert tier == "model-zygote"
        assert second != first
        assert call(gw, "behave", b"pid") == (second, None)
        if Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists() and os.geteuid() == 0:
            # The worker joined its groups itself, before it told the gateway it was ready.
            for controller in ("cpu", "memory"):
                assert cgroup_dir(int(second), controller).name.startswith("worker-")


def test_runtime_zygote_environment_is_clean_and_single_threaded(tmp_path: Path) -> None:
    """The runtime zygote gets none of the gateway's secrets or settings; frameworks it
    imports start no thread pools, and OpenBLAS threads its workers start spin briefly."""
    secret = "zygote-must-not-see-this"
    env = clean_env(AWS_SECRET_ACCESS_KEY=secret, COLDBREW_TEST_SETTING=secret)
    with running_gateway(tmp_path, quick_reaping(tmp_path, {}), env=env) as gw:
        zygotes = wait_until(lambda: gw.children("cb-zygote"), timeout=30, what="the zygote")
        raw = Path(f"/proc/{zygotes[0]}/environ").read_bytes()
    variables = dict(item.split("=", 1) for item in raw.decode().split("\0") if item)
    assert secret not in raw.decode()
    assert not {"AWS_SECRET_ACCESS_KEY", "COLDBREW_TEST_SETTING"} & set(variables)
    assert variables["OMP_NUM_THREADS"] == variables["OPENBLAS_NUM_THREADS"] == "1"
    assert variables["OPENBLAS_THREAD_TIMEOUT"] == "22"


def test_zygotes_off_starts_fresh_interpreters(tmp_path: Path) -> None:
    """With zygotes off every cold start is a fresh interpreter and no zygote runs."""
    config = quick_reaping(tmp_path, {"behave": {}}, zygotes=False)
    with running_gateway(tmp_path, config) as gw:
        _, tier = call(gw, "behave", b"pid")
        assert tier == "spawn"
        assert gw.zygote_pids() == []


def test_runtime_zygote_death_falls_back_and_restarts(tmp_path: Path) -> None:
    """A killed runtime zygote: the next cold start still succeeds, and a new runtime
    zygote replaces it."""
    with running_gateway(tmp_path, quick_reaping(tmp_path, {"behave": {}, "echo": {}})) as gw:
        (runtime,) = wait_until(lambda: gw.children("cb-zygote"), timeout=30)
        os.kill(runtime, signal.SIGKILL)
        wait_until(lambda: not is_running(runtime), timeout=10)
        answer, tier = call(gw, "echo", b"still served")
        assert answer == b"still served"
        assert tier in ("spawn", "runtime-zygote")
        # A new runtime zygote says so in the log under its own pid.
        wait_until(
            lambda: any(
                int(pid) != runtime for pid in re.findall(r"runtime zygote (\d+) ready", gw.log())
            ),
            timeout=30,
            what="a new runtime zygote",
        )
        assert "restarting it" in gw.log()


def test_model_zygote_death_falls_back(tmp_path: Path) -> None:
    """A killed model zygote is replaced in the background at once; the next cold start
    succeeds whether it finds the replacement or falls back to the runtime zygote."""
    with running_gateway(tmp_path, quick_reaping(tmp_path, {"behave": {}})) as gw:
        worker, _ = call(gw, "behave", b"pid")
        call(gw, "behave", b"pid")
        # Killed once it is ready: one that dies while loading its model is a failed start,
        # retried only after a back-off.
        (zygote,) = wait_until(lambda: ready_model_zygotes(gw), timeout=30)
        os.kill(zygote, signal.SIGKILL)
        reaped(gw, int(worker))
        wait_until(lambda: not is_running(zygote), timeout=10)
        answer, tier = call(gw, "behave", b"pid")
        assert int(answer) != int(worker)
        assert tier in ("model-zygote", "runtime-zygote")
        try:
            wait_until(
                lambda: [pid for pid in ready_model_zygotes(gw) if pid != zygote],
                timeout=30,
                what="a new model zygote",
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{gw.log()}") from None


def test_failed_model_zygote_start_is_reported_and_served_around(tmp_path: Path) -> None:
    """A model zygote that dies while loading its model is logged with its exit status and
    its last output; the endpoint goes on serving from the runtime zygote."""
    config = quick_reaping(tmp_path, {"zygotecrash": {}})
    with running_gateway(tmp_path, config) as gw:
        _, tier = call(gw, "zygotecrash", b"x")
        assert tier == "runtime-zygote"
        call(gw, "zygotecrash", b"x")
        line = wait_until(
            lambda: [ln for ln in gw.log().splitlines() if "model zygote failed to start" in ln],
            timeout=30,
            what="the failed model zygote start to be logged",
        )[0]
        assert "exited with status 7" in line
        assert "giving up inside the model zygote" in line
        assert ready_model_zygotes(gw) == []
        wait_until(lambda: not gw.worker_pids(), timeout=15, what="the worker to be reaped")
        assert call(gw, "zygotecrash", b"again") == (b"again", "runtime-zygote")


@pytest.mark.parametrize("model", ["nofork", "threads"])
def test_models_unfit_for_a_zygote_never_get_one(tmp_path: Path, model: str) -> None:
    """A handler with FORK_AFTER_LOAD = False, or one that starts a thread while loading,
    is never held in a model zygote: its workers load the model themselves."""
    with running_gateway(tmp_path, quick_reaping(tmp_path, {model: {}})) as gw:
        sm = control_client(gw.url)
        assert call(gw, model, b"x") == (b"x", "runtime-zygote")
        call(gw, model, b"x")
        wait_until(
            lambda: (
                sm.describe_endpoint(EndpointName=model)["ResponseMetadata"]
                and "no model zygote" in gw.log()
            ),
            timeout=30,
            what="the model zygote to be refused",
        )
        wait_until(
            lambda: not gw.children("cb-model-zygote"),
            timeout=10,
            what="the refused model zygote to exit",
        )
        assert not re.search(r"model zygote \d+ ready", gw.log())


def test_handler_imports_are_learned(tmp_path: Path) -> None:
    """What a handler imported on its first load is pre-imported by the runtime zygote
    from then on, and remembered in the state directory."""
    with running_gateway(tmp_path, quick_reaping(tmp_path, {"importer": {}})) as gw:
        call(gw, "importer", b"x")
        learned = gw.state_dir / "learned-imports.json"
        wait_until(
            lambda: learned.exists() and "colorsys" in json.loads(learned.read_text()),
            timeout=30,
            what="colorsys to be learned",
        )
    second = tmp_path / "again"
    second.mkdir()
    with running_gateway(second, toml_config(tmp_path / "state", endpoints={})) as gw:
        wait_until(lambda: "pre-imported" in gw.log(), timeout=30)
        assert "colorsys" in json.loads((tmp_path / "state" / "learned-imports.json").read_text())


def a_model_with_many_imports(root: Path, count: int) -> Path:
    """A model whose handler imports ``count`` modules with long names from a library
    outside the model, as a deep-learning stack has it (torch alone imports over a
    thousand); the runtime zygote learns them, but cannot import them itself."""
    library = root / "lib" / "an_installed_library_with_a_long_name"
    library.mkdir(parents=True)
    (library / "__init__.py").write_text("")
    for number in range(count):
        (library / f"a_submodule_with_a_long_descriptive_name_{number:05d}.py").write_text("")
    code = root / "model" / "code"
    code.mkdir(parents=True)
    (code / "inference.py").write_text(
        "import importlib\n"
        "import sys\n"
        f"sys.path.insert(0, {str(root / 'lib')!r})\n"
        f"for number in range({count}):\n"
        "    importlib.import_module(\n"
        "        'an_installed_library_with_a_long_name.'\n"
        "        f'a_submodule_with_a_long_descriptive_name_{number:05d}'\n"
        "    )\n\n\n"
        "def model_fn(model_dir):\n"
        "    return None\n\n\n"
        "def predict_fn(data, model):\n"
        "    return data\n"
    )
    return root / "model"


def test_thousands_of_learned_imports_cross_every_channel(tmp_path: Path) -> None:
    """3,000 module names (about 240 KB) travel in the worker's ready message, the
    runtime zygote's pre-import request and, after a restart, the next runtime zygote's
    start, which its command line could not carry."""
    model = a_model_with_many_imports(tmp_path / "many", 3000)
    config = quick_reaping(tmp_path, {"many": {"model_dir": str(model)}})
    with running_gateway(tmp_path, config) as gw:
        (zygote,) = wait_until(lambda: gw.children("cb-zygote"), timeout=30, what="the zygote")
        assert call(gw, "many", b"[1]") == (b"[1]", "runtime-zygote")
        wait_until(
            lambda: "runtime zygote could not pre-import 3001 modules" in gw.log(),
            timeout=60,
            what="the runtime zygote to try the 3,000 learned modules",
        )
        assert is_running(zygote), "the pre-import request broke the runtime zygote"
        learned = json.loads((gw.state_dir / "learned-imports.json").read_text())
        assert len([name for name in learned if name.startswith("an_installed")]) == 3001
    again = tmp_path / "again"
    again.mkdir()
    with running_gateway(again, toml_config(tmp_path / "state", endpoints={})) as gw:
        wait_until(lambda: "pre-imported" in gw.log(), timeout=60, what="the runtime zygote")
        (zygote,) = gw.children("cb-zygote")
        assert len(Path(f"/proc/{zygote}/cmdline").read_bytes()) < 1024
        assert "restarting" not in gw.log()


def test_a_file_in_the_workers_directory_cannot_stand_in_for_a_preloaded_module(
    tmp_path: Path,
) -> None:
    """The runtime zygote runs in the workers' private root, where a worker can write. A
    module file planted there under a name the zygote pre-imports is not imported: only
    the interpreter's own paths are searched."""
    marker = tmp_path / "planted-module-ran"
    private_root = tmp_path / "state" / "workers"
    private_root.mkdir(parents=True)
    (private_root / "planted_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = quick_reaping(tmp_path, {"behave": {}}, preload=["colorsys", "planted_module"])
    with running_gateway(tmp_path, config) as gw:
        wait_until(lambda: "pre-imported" in gw.log(), timeout=30, what="the runtime zygote")
        assert call(gw, "behave", b"pid")[1] == "runtime-zygote"
        assert "pre-imported 4 modules" in gw.log()  # the 3 it always has, and colorsys
    assert not marker.exists()


@pytest.fixture
def installed_module_that_starts_a_thread() -> Iterator[str]:
    """A module in the interpreter's own site-packages (where the runtime zygote can
    import it, as it would an installed library) that starts a thread when imported;
    removed afterwards. Its name is unique to this test run."""
    name = f"coldbrew_test_thread_at_import_{os.getpid()}"
    path = Path(sysconfig.get_paths()["purelib"]) / f"{name}.py"
    path.write_text(
        "import threading\n\nthreading.Thread(target=threading.Event().wait, daemon=True).start()\n"
    )
    try:
        yield name
    finally:
        path.unlink()


def test_a_learned_import_that_starts_a_thread_is_dropped(
    tmp_path: Path, installed_module_that_starts_a_thread: str
) -> None:
    """One endpoint's model imports a library that starts a thread. Learned, it would
    leave the shared runtime zygote unable to fork for every endpoint; instead it is
    dropped and the zygote replaced, and other endpoints keep their fast cold starts."""
    name = installed_module_that_starts_a_thread
    code = tmp_path / "threaded" / "code"
    code.mkdir(parents=True)
    (code / "inference.py").write_text(
        f"import {name}  # noqa: F401\n\n\n"
        "def model_fn(model_dir):\n"
        "    return None\n\n\n"
        "def predict_fn(data, model):\n"
        "    return data\n"
    )
    endpoints = {"threaded": {"model_dir": str(tmp_path / "threaded")}, "behave": {}}
    with running_gateway(tmp_path, quick_reaping(tmp_path, endpoints)) as gw:
        (first,) = wait_until(lambda: gw.children("cb-zygote"), timeout=30, what="the zygote")
        assert call(gw, "threaded", b"[1]") == (b"[1]", "runtime-zygote")
        wait_until(
            lambda: f"importing {name} started a thread" in gw.log(),
            timeout=30,
            what="the thread to be noticed",
        )
        replaced = wait_until(
            lambda: [pid for pid in gw.children("cb-zygote") if pid != first],
            timeout=30,
            what="a new runtime zygote",
        )
        wait_until(
            lambda: f"runtime zygote {replaced[0]} ready" in gw.log(),
            timeout=30,
            what="the new runtime zygote to be ready",
        )
        assert call(gw, "behave", b"pid")[1] == "runtime-zygote"
        assert name not in json.loads((gw.state_dir / "learned-imports.json").read_text())


def test_provisioned_workers_stay_warm(tmp_path: Path) -> None:
    """ProvisionedConcurrency workers exist before any invocation, survive reaping, and
    are replaced when they die."""
    with running_gateway(tmp_path, quick_reaping(tmp_path, {"echo": {}})) as gw:
        sm = control_client(gw.url)
        create_model(sm, "pc", "behave")
        sm.create_endpoint_config(
            EndpointConfigName="pc",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "pc",
                    "ServerlessConfig": {
                        "MemorySizeInMB": 1024,
                        "MaxConcurrency": 4,
                        "ProvisionedConcurrency": 2,
                    },
                }
            ],
        )
        sm.create_endpoint(EndpointName="pc", EndpointConfigName="pc")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="pc")
        warm = wait_until(lambda: len(gw.worker_pids()) == 2 and gw.worker_pids(), timeout=30)
        # A serverless worker beside them is reaped after 0.3 s; theirs are not.
        other, _ = call(gw, "echo", b"x")
        echo_worker = [pid for pid in gw.worker_pids() if pid not in warm]
        assert other == b"x"
        wait_until(lambda: not any(is_running(pid) for pid in echo_worker), timeout=15)
        assert sorted(gw.worker_pids()) == sorted(warm)
        os.kill(warm[0], signal.SIGKILL)
        wait_until(
            lambda: len(gw.worker_pids()) == 2 and warm[0] not in gw.worker_pids(),
            timeout=30,
            what="the provisioned worker to be replaced",
        )


def cgroup_dir(pid: int, controller: str) -> Path:
    """The cgroup v1 directory of ``pid`` in ``controller``'s hierarchy."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    raise AssertionError(f"{pid} has no {controller} cgroup")


def test_workers_get_cpu_and_memory_in_proportion(tmp_path: Path) -> None:
    """A 1024 MB worker and a 2048 MB worker sit in their own cgroups with CPU quotas of
    MemorySizeInMB / 1769 vCPUs, weights 1:2, and memory capped at their size."""
    if os.geteuid() != 0 or not Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists():
        pytest.skip("needs root and cgroup v1 cpu/memory controllers")
    endpoints = {"behave": {"memory_size_mb": 1024}, "echo": {"memory_size_mb": 2048}}
    with running_gateway(tmp_path, quick_reaping(tmp_path, endpoints)) as gw:
        small = int(call(gw, "behave", b"pid")[0])
        large = [pid for pid in gw.worker_pids() if pid != small]
        call(gw, "echo", b"x")
        (large_pid,) = [pid for pid in gw.worker_pids() if pid not in (small, *large)]
        for pid, memory in ((small, 1024), (large_pid, 2048)):
            plan = plan_resources(memory, mb_per_vcpu=1769, host_cpus=len(os.sched_getaffinity(0)))
            cpu = cgroup_dir(pid, "cpu")
            assert cpu.name.startswith("worker-")
            assert int((cpu / "cpu.cfs_quota_us").read_text()) == plan.cpu_quota_us(100000)
            assert int((cpu / "cpu.shares").read_text()) == memory
            mem = cgroup_dir(pid, "memory")
            assert int((mem / "memory.limit_in_bytes").read_text()) == memory * 1024 * 1024
        assert "worker limits: cgroup v1" in gw.log()


@pytest.mark.parametrize("mode", ["auto", "fallback"])
def test_worker_over_its_memory_gets_a_model_error(tmp_path: Path, mode: str) -> None:
    """A worker that allocates past its MemorySizeInMB is stopped (by the kernel's cgroup
    limit, or by the watchdog in fallback mode); the caller's ModelError says so, and the
    next call is served."""
    if mode == "auto" and os.geteuid() != 0:
        pytest.skip("cgroup limits need root")
    config = toml_config(
        tmp_path / "state",
        endpoints={"behave": {"memory_size_mb": 1024}},
        pool={"cpu_limits": mode},
    )
    with running_gateway(tmp_path, config) as gw:
        with pytest.raises(ClientError) as caught:
            gw.runtime().invoke_endpoint(EndpointName="behave", Body=b"alloc:1600")
        error = caught.value.response
        assert error["Error"]["Code"] == "ModelError"
        assert "ran out of its MemorySizeInMB (1024 MB)" in error["OriginalMessage"]
        assert call(gw, "behave", b"ok")[0] == b"ok"
        assert gw.proc.poll() is None


def test_no_zygote_or_worker_outlives_a_killed_gateway(tmp_path: Path) -> None:
    """SIGKILL of the gateway takes the runtime zygote, model zygotes and workers with it."""
    with running_gateway(tmp_path, quick_reaping(tmp_path, {"behave": {}})) as gw:
        call(gw, "behave", b"pid")
        call(gw, "behave", b"pid")
        wait_until(lambda: gw.children("cb-model-zygote"), timeout=30)
        family = gw.zygote_pids() + gw.worker_pids()
        assert len(family) >= 3
        gw.stop(signal.SIGKILL)
        wait_until(
            lambda: not any(is_running(pid) for pid in family),
            timeout=10,
            what="every zygote and worker to die with the gateway",
        )


def test_provisioned_concurrency_reserves_region_concurrency(tmp_path: Path) -> None:
    """An endpoint's ProvisionedConcurrency is its own: another endpoint cannot take that
    share of the region's concurrency, and reservations beyond the region are refused."""
    config = toml_config(
        tmp_path / "state", endpoints={"behave": {}}, quotas={"region_concurrency": 3}
    )
    with running_gateway(tmp_path, config) as gw:
        sm = control_client(gw.url)
        create_model(sm, "reserved", "echo")
        for name, provisioned in (("two", 2), ("three", 3)):
            variant = {
                "VariantName": "AllTraffic",
                "ModelName": "reserved",
                "ServerlessConfig": {
                    "MemorySizeInMB": 1024,
                    "MaxConcurrency": 3,
                    "ProvisionedConcurrency": provisioned,
                },
            }
            sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
        sm.create_endpoint(EndpointName="reserved", EndpointConfigName="two")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="reserved")
        # behave may use what is left of the region: 3 - 2 = 1 concurrent invocation.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(call, gw, "behave", b"sleep:2")
            wait_until(
                lambda: gw.children("cb-worker") and "behave: worker" in gw.log(), timeout=30
            )
            with pytest.raises(ClientError) as caught:
                gw.runtime().invoke_endpoint(EndpointName="behave", Body=b"x")
            assert caught.value.response["Error"]["Code"] == "ThrottlingException"
            assert busy.result(timeout=30)[0] == b"slept"
        with pytest.raises(sm.exceptions.ResourceLimitExceeded):
            sm.create_endpoint(EndpointName="more", EndpointConfigName="two")
        # Its own reservation may grow to the whole region: nobody else reserves any.
        sm.update_endpoint_weights_and_capacities(
            EndpointName="reserved",
            DesiredWeightsAndCapacities=[
                {
                    "VariantName": "AllTraffic",
                    "ServerlessUpdateConfig": {"ProvisionedConcurrency": 3},
                }
            ],
        )
        sm.get_waiter("endpoint_in_service").wait(EndpointName="reserved")
        described = sm.describe_endpoint(EndpointName="reserved")
        assert (
            described["ProductionVariants"][0]["CurrentServerlessConfig"]["ProvisionedConcurrency"]
            == 3
        )
        wait_until(lambda: len(gw.children("cb-worker")) >= 3, timeout=30)
