"""Untrusted model code: each attack a hostile tenant would try, from a real model in a
real gateway with two accounts, is refused by the sandbox.

The attacker is ``tests/models/attacker``: every request names one attack and the
answer says what the kernel let it do. Without the sandbox (model code as the gateway's
root user, in its namespaces) every attack here works, so each test fails there.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.integration.control import control_client, create_model, serverless_variant
from tests.support import (
    MODELS,
    REPO,
    Gateway,
    clean_env,
    is_running,
    running_gateway,
    toml_config,
    wait_until,
)
from workers import sandbox_unavailable

pytestmark = pytest.mark.skipif(
    sandbox_unavailable() is not None, reason=f"no sandbox here: {sandbox_unavailable()}"
)

ALICE, BOB = "111111111111", "222222222222"
CREDENTIALS = (
    '[[auth.credentials]]\naccess_key_id = "AKIDALICE"\nsecret_access_key = "a"\n'
    f'account_id = "{ALICE}"\n'
    '[[auth.credentials]]\naccess_key_id = "AKIDBOB"\nsecret_access_key = "b"\n'
    f'account_id = "{BOB}"\n'
)
PIDS_LIMIT = 64
TMP_MB = 16
SANDBOX = f'[sandbox]\nmode = "on"\npids_limit = {PIDS_LIMIT}\ntmp_size_mb = {TMP_MB}\n'


@pytest.fixture(scope="module")
def victim_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bob's model: a copy of the attacker's, in a folder of its own."""
    folder = tmp_path_factory.mktemp("bob") / "model"
    shutil.copytree(MODELS / "attacker", folder)
    return folder


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, victim_model: Path) -> Iterator[Gateway]:
    tmp_path = tmp_path_factory.mktemp("sandbox")
    config = toml_config(
        tmp_path / "state",
        endpoints={
            "attacker": {"account_id": ALICE, "model_dir": str(MODELS / "attacker")},
            "victim": {"account_id": BOB, "model_dir": str(victim_model)},
        },
        extra=CREDENTIALS + SANDBOX,
        sandbox=None,
    )
    with running_gateway(tmp_path, config) as gateway:
        yield gateway


def attack(gw: Gateway, name: str, *, account: str = ALICE, endpoint: str = "", **args: Any) -> Any:
    """Have the model of ``account`` try the attack ``name``; its report."""
    key = "AKIDALICE" if account == ALICE else "AKIDBOB"
    secret = "a" if account == ALICE else "b"
    client = gw.runtime(access_key=key, secret_key=secret)
    endpoint = endpoint or ("attacker" if account == ALICE else "victim")
    body = json.dumps({"attack": name, **args}).encode()
    answer = client.invoke_endpoint(
        EndpointName=endpoint, Body=body, ContentType="application/json"
    )
    return json.loads(answer["Body"].read())


def test_model_code_runs_as_its_accounts_uid_without_any_privilege(gw: Gateway) -> None:
    alice, bob = attack(gw, "identity"), attack(gw, "identity", account=BOB)
    assert alice["uid"] != 0
    assert bob["uid"] != 0
    assert alice["uid"] != bob["uid"]
    assert alice["gid"] != bob["gid"]
    for report in (alice, bob):
        assert report["groups"] == [] or report["groups"] == [report["gid"]]
        for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(report[capabilities], 16) == 0, report
        assert report["NoNewPrivs"] == "1"
        assert report["Seccomp"] == "2"  # a filter
        # SageMaker's path, passed as model_dir; HOME is the private area.
        assert report["model_dir"] == "/opt/ml/model"
        assert report["home"] == report["cwd"] == "/tmp"


def test_gateway_config_state_and_environment_are_unreachable(gw: Gateway) -> None:
    config = gw.log_path.parent / "coldbrew.toml"
    targets = [
        config,
        gw.state_dir / "registry.sqlite3",
        Path(f"/proc/{gw.pid}/environ"),
        Path(f"/proc/{gw.pid}/cmdline"),
    ]
    for target in targets:
        report = attack(gw, "read_file", path=str(target))
        assert "ok" not in report, target
        assert report["errno"] in (errno.ENOENT, errno.EACCES), target


def test_other_accounts_models_and_the_installation_cannot_be_read_or_changed(
    gw: Gateway, victim_model: Path
) -> None:
    theirs = victim_model / "inference.py"
    before = theirs.read_bytes()
    assert "ok" not in attack(gw, "read_file", path=str(theirs))
    assert "ok" not in attack(gw, "write_file", path=str(theirs))
    assert theirs.read_bytes() == before
    # The installation is there to read (wherever it lives, /tmp included)...
    import numpy

    for installed in (REPO / "workers" / "__init__.py", Path(numpy.__file__)):
        assert attack(gw, "read_file", path=str(installed)).get("ok"), installed
    # ...but its own model and the Python installation cannot be changed.
    own = attack(gw, "write_file", path="/opt/ml/model/inference.py")
    assert own.get("errno") in (errno.EROFS, errno.EACCES)
    installed = attack(gw, "write_file", path=str(Path(json.__file__)))
    assert installed.get("errno") in (errno.EROFS, errno.EACCES)


def test_proc_shows_only_the_sandboxes_own_processes(gw: Gateway) -> None:
    report = attack(gw, "processes")
    names = set(report["pids"].values())
    # A worker sees itself, and at most its model zygote and that zygote's other workers.
    assert names <= {"cb-worker", "cb-model-zygote"}, report
    assert str(gw.pid) not in report["pids"] or report["pids"][str(gw.pid)] != "python"
    assert len(report["pids"]) <= 3


def test_tracing_and_reading_other_processes_is_refused(gw: Gateway) -> None:
    zygotes = gw.zygote_pids()
    assert zygotes
    # The seccomp filter: even tracing oneself is refused.
    assert attack(gw, "ptrace") == {"errno": errno.EPERM}
    for target in [gw.pid, *zygotes]:
        assert "ok" not in attack(gw, "ptrace", pid=target)
        assert attack(gw, "read_memory", pid=target) == {"errno": errno.EPERM}
        assert "ok" not in attack(gw, "steal_socket", pid=target, fd=3)


def test_cgroup_limits_cannot_be_raised_or_left(gw: Gateway) -> None:
    report = attack(gw, "cgroup_escape")
    assert report["ok"] is False, report


def test_a_fork_bomb_stops_at_the_pids_limit(gw: Gateway) -> None:
    report = attack(gw, "fork_bomb", limit=4 * PIDS_LIMIT)
    assert report["ok"] is False, report
    assert report["errno"] == errno.EAGAIN, report
    assert report["forked"] < PIDS_LIMIT


def test_the_private_area_is_capped_as_a_whole_and_the_rest_is_read_only(gw: Gateway) -> None:
    report = attack(gw, "fill_disk", megabytes=4 * TMP_MB)
    assert report["errno"] == errno.ENOSPC, report
    assert report["written_mb"] <= TMP_MB, report
    for outside in ("/", "/var/tmp", "/opt/ml"):
        assert attack(gw, "fill_disk", megabytes=1, directory=outside)["errno"] in (
            errno.EROFS,
            errno.ENOENT,
            errno.EACCES,
        )


def daemons(marker: str) -> list[int]:
    """Host processes running ``/bin/sleep <marker>``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in argv and is_running(int(entry.name)):
                found.append(int(entry.name))
    return found


@contextmanager
def deployed(gw: Gateway, name: str, **model: Any) -> Iterator[Any]:
    """Alice's endpoint ``name`` serving the attacker (``model``: CreateModel extras),
    deployed through the control plane and removed afterwards; yields her client."""
    sm = control_client(gw.url, access_key="AKIDALICE", secret_key="a")
    try:
        create_model(sm, name, "attacker", **model)
        sm.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=[serverless_variant(name)]
        )
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name)
        yield sm
    finally:
        for call in (
            lambda: sm.delete_endpoint(EndpointName=name),
            lambda: sm.delete_endpoint_config(EndpointConfigName=name),
            lambda: sm.delete_model(ModelName=name),
        ):
            with suppress(sm.exceptions.ClientError):
                call()
        sm.close()


def test_processes_left_behind_end_with_the_endpoint(gw: Gateway) -> None:
    marker = f"{1000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    with deployed(gw, "leaver") as sm:
        assert attack(gw, "leave_daemon", endpoint="leaver", marker=marker)["ok"]
        wait_until(lambda: daemons(marker), timeout=10, what="the daemon to run")
        sm.delete_endpoint(EndpointName="leaver")
        wait_until(lambda: not daemons(marker), timeout=20, what="the daemon to end")


def test_runtime_zygotes_are_per_account(gw: Gateway) -> None:
    """Each account's workers come from its own runtime zygote."""
    attack(gw, "identity")
    attack(gw, "identity", account=BOB)
    ready = [line for line in gw.log().splitlines() if "runtime zygote" in line and "ready" in line]
    assert len({line.split("runtime zygote ")[1].split()[0] for line in ready}) >= 2, ready


def gateway_with(tmp_path: Path, endpoints: dict[str, dict[str, Any]], sandbox: str) -> str:
    return toml_config(
        tmp_path / "state", endpoints=endpoints, extra=CREDENTIALS + sandbox, sandbox=None
    )


def test_a_planted_module_reaches_no_other_account(tmp_path: Path) -> None:
    module = f"cb_planted_{uuid.uuid4().hex[:8]}"
    env = {"PLANT_MODULE": module, "ME": "alice"}
    config = gateway_with(
        tmp_path,
        {
            "attacker": {
                "account_id": ALICE,
                "model_dir": str(MODELS / "attacker"),
                "environment": env,
            },
            "victim": {"account_id": BOB, "model_dir": str(MODELS / "attacker")},
        },
        SANDBOX,
    )
    site = next(Path(p) for p in sys.path if p.endswith("site-packages"))
    try:
        with running_gateway(tmp_path, config) as gw:
            attack(gw, "identity")
            assert not (site / f"{module}.py").exists()
            report = attack(gw, "modules", account=BOB, names=[module])
            assert report["loaded"] == []
            learned = list((tmp_path / "state").glob("learned-imports*.json"))
            bob_file = [path for path in learned if BOB in path.name]
            assert all(module not in path.read_text() for path in bob_file)
    finally:
        (site / f"{module}.py").unlink(missing_ok=True)


def test_a_model_zygote_loads_within_the_endpoints_memory(tmp_path: Path) -> None:
    env = {"ATTACK_AT_LOAD": "balloon", "BALLOON_MB": "1536"}
    config = gateway_with(
        tmp_path,
        {
            "balloon": {
                "account_id": ALICE,
                "model_dir": str(MODELS / "attacker"),
                "environment": env,
                "memory_size_mb": 1024,
            }
        },
        SANDBOX,
    )
    with running_gateway(tmp_path, config) as gw:
        for _ in range(2):
            attack(gw, "identity", endpoint="balloon")
        wait_until(
            lambda: "model zygote failed to start" in gw.log(),
            timeout=60,
            what="the model zygote to be stopped at its memory limit",
        )
        assert "ready, model loaded" not in gw.log()


def test_network_isolation_leaves_only_loopback(gw: Gateway) -> None:
    port = int(gw.url.rsplit(":", 1)[1])
    with deployed(gw, "isolated", EnableNetworkIsolation=True):
        assert attack(gw, "interfaces", endpoint="isolated")["names"] == ["lo"]
        refused = attack(gw, "connect", endpoint="isolated", host="127.0.0.1", port=port)
        assert refused.get("errno") == errno.ECONNREFUSED
    # Without isolation the network stays (the gateway's port answers).
    assert attack(gw, "connect", host="127.0.0.1", port=port) == {"ok": True}


def test_processes_left_behind_end_when_the_gateway_is_killed(tmp_path: Path) -> None:
    config = gateway_with(
        tmp_path,
        {"attacker": {"account_id": ALICE, "model_dir": str(MODELS / "attacker")}},
        SANDBOX,
    )
    marker = f"{2000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    with running_gateway(tmp_path, config) as gw:
        assert attack(gw, "leave_daemon", marker=marker)["ok"]
        wait_until(lambda: daemons(marker), timeout=10, what="the daemon to run")
        gw.stop(signal.SIGKILL)
    wait_until(lambda: not daemons(marker), timeout=20, what="the daemon to end")


def run_unprivileged(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    """Start a gateway that cannot make namespaces (root without CAP_SYS_ADMIN, as in a
    container), stopping it once it serves: its exit status and output."""
    config_path = tmp_path / "coldbrew.toml"
    config_path.write_text(config)
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config_path)]
    with subprocess.Popen(
        ["setpriv", "--bounding-set", "-sys_admin", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=clean_env(),
    ) as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if "accepting invocations" in line:
                proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines))


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_without_a_sandbox_two_accounts_are_refused_unless_mode_is_off(tmp_path: Path) -> None:
    endpoints: dict[str, dict[str, Any]] = {}
    state = tmp_path / "state"
    auto = toml_config(state, endpoints=endpoints, extra=CREDENTIALS, sandbox="auto")
    refused = run_unprivileged(tmp_path, auto)
    assert refused.returncode == 2, refused.stdout
    assert "sandbox.mode" in refused.stdout
    assert "2 accounts" in refused.stdout
    off = toml_config(state, endpoints=endpoints, extra=CREDENTIALS, sandbox="off")
    served = run_unprivileged(tmp_path, off)
    assert served.returncode == 0, served.stdout
    assert "SANDBOX OFF" in served.stdout
    # One account (the development path) serves without a sandbox, saying so.
    single = run_unprivileged(tmp_path, toml_config(state, endpoints=endpoints, sandbox="auto"))
    assert single.returncode == 0, single.stdout
    assert "SANDBOX UNAVAILABLE" in single.stdout


def test_an_idle_accounts_runtime_zygote_stops_and_starts_again_on_demand(
    tmp_path: Path,
) -> None:
    config = toml_config(
        tmp_path / "state",
        endpoints={"attacker": {"account_id": ALICE, "model_dir": str(MODELS / "attacker")}},
        pool={"idle_timeout_s": 0.2, "zygote_idle_timeout_s": 1.0},
        extra=CREDENTIALS + SANDBOX,
        sandbox=None,
    )
    with running_gateway(tmp_path, config) as gw:
        # Both accounts' zygotes start with the gateway; neither has traffic, so both stop.
        wait_until(
            lambda: len(re.findall(r"runtime zygote \d+ stopped", gw.log())) == 2,
            timeout=30,
            what="both idle runtime zygotes to stop",
        )
        assert not [pid for pid in gw.zygote_pids() if is_running(pid)]
        report = attack(gw, "identity")
        assert report["uid"] != 0
        started = [line for line in gw.log().splitlines() if "runtime zygote" in line]
        assert sum("ready in" in line for line in started) == 3, started
