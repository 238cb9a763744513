"""Shared test helpers: a real gateway process, conditions with deadlines, process trees.

Nothing here fakes a component: ``Gateway`` runs ``python -m gateway serve`` as its own
process, and tests talk to it over real HTTP with real clients.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config

from gateway.telemetry.catalog import CATALOG, prometheus_name
from workers.wire.kernel import MODEL_ZYGOTE_NAME, RUNTIME_ZYGOTE_NAME, WORKER_NAME

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "tests" / "models"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
# Three iris flowers, one of each species; the demo model answers [0, 1, 2].
DEMO_SAMPLE = b"[[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]"
READY_LINE = re.compile(r"accepting invocations on (http://[A-Za-z0-9.:\[\]-]+)")

# Every SageMaker control-plane operation Coldbrew serves, as the tests expect them.
CONTROL_OPERATIONS = [
    "CreateModel",
    "DescribeModel",
    "DeleteModel",
    "ListModels",
    "CreateEndpointConfig",
    "DescribeEndpointConfig",
    "DeleteEndpointConfig",
    "ListEndpointConfigs",
    "CreateEndpoint",
    "DescribeEndpoint",
    "UpdateEndpoint",
    "UpdateEndpointWeightsAndCapacities",
    "DeleteEndpoint",
    "ListEndpoints",
    "AddTags",
    "ListTags",
    "DeleteTags",
]

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], *, timeout: float, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s.

    This waits on a condition with a deadline; it never sleeps a guessed duration.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            text = (task / "children").read_text()
            found.extend(int(child) for child in text.split())
    except (FileNotFoundError, ProcessLookupError):
        return []
    return found


def process_name(pid: int) -> str:
    """The kernel's name of a process ("comm"), or "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        # The entry can vanish between open and read: the read then fails with ESRCH.
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def worker_processes(under: Path) -> set[int]:
    """Live worker processes whose private directory (their cwd) is below ``under``."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = (entry / "cwd").readlink()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        mine = (b"workers.child.serve" in cmdline or b"workers.child.zygote" in cmdline) and (
            cwd.is_relative_to(under)
        )
        if mine and is_running(int(entry.name)):
            pids.add(int(entry.name))
    return pids


def toml_config(
    state_dir: Path,
    *,
    endpoints: dict[str, dict[str, Any]],
    pool: dict[str, float] | None = None,
    quotas: dict[str, int] | None = None,
    server: dict[str, Any] | None = None,
    extra: str = "",
    sandbox: str | None = "off",
) -> str:
    """A gateway config: port 0, the given state dir, and the given endpoints.

    ``sandbox``: the ``[sandbox] mode`` (None: no ``[sandbox]`` table; ``extra`` may
    bring one). Off by default: these tests tell workers apart by the pid model code
    reports (``os.getpid()``), which a sandbox's pid namespace hides by design; the
    sandbox has its own tests (``test_sandbox.py``).
    """
    lines = ["[server]", "port = 0", f'state_dir = "{state_dir}"', "shutdown_grace_s = 10"]
    lines += [f"{key} = {_toml(value)}" for key, value in (server or {}).items()]
    if sandbox is not None:
        lines += ["[sandbox]", f'mode = "{sandbox}"']
    for section, values in (("pool", pool), ("quotas", quotas)):
        if values:
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    for name, options in endpoints.items():
        lines += ["[[endpoints]]", f'name = "{name}"']
        options = {"model_dir": str(MODELS / name), **options}
        lines += [f"{key} = {_toml(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n" + extra


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{" + ", ".join(f'{k} = "{v}"' for k, v in value.items()) + "}"
    return str(value)


@dataclass
class Gateway:
    """A running ``coldbrew serve`` process."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    state_dir: Path
    workers_seen: set[int] = field(default_factory=set)
    children_seen: set[int] = field(default_factory=set)
    clients: list[Any] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The gateway's live worker processes (not its zygotes)."""
        pids = self.children(WORKER_NAME)
        self.workers_seen.update(pids)
        return pids

    def zygote_pids(self) -> list[int]:
        """The gateway's live zygotes: the runtime zygote and model zygotes."""
        return self.children(RUNTIME_ZYGOTE_NAME) + self.children(MODEL_ZYGOTE_NAME)

    def children(self, name: str) -> list[int]:
        """Live children of the gateway whose process name is ``name``, and those of its
        model zygotes (a sandboxed model zygote's workers are its own children)."""
        pids = [pid for pid in children_of(self.pid) if is_running(pid)]
        zygotes = [pid for pid in pids if process_name(pid) == MODEL_ZYGOTE_NAME]
        pids += [pid for zygote in zygotes for pid in children_of(zygote) if is_running(pid)]
        self.children_seen.update(pids)
        return [pid for pid in pids if process_name(pid) == name]

    def runtime(self, **options: Any) -> Any:
        """A real boto3 sagemaker-runtime client, retries off so each call is one request.
        Closed when the gateway stops, so no connection is left to the collector."""
        client = runtime_client(self.url, **options)
        self.clients.append(client)
        return client

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the gateway and wait for it to exit; return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout=timeout)


def scrape(gw: Gateway) -> list[tuple[str, dict[str, str], float]]:
    """The gateway's /metrics page as (name, labels, value) samples."""
    with urllib.request.urlopen(f"{gw.url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = dict(LABEL.findall(match.group(3) or ""))
        samples.append((match.group(1), labels, float(match.group(4))))
    return samples


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        v
        for n, have, v in samples
        if n == name and all(have.get(key) == want for key, want in labels.items())
    )


def runtime_client(
    url: str,
    *,
    access_key: str = "test",
    secret_key: str = "test",
    region: str = "us-east-1",
    read_timeout: float = 70.0,
) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=read_timeout
        ),
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a gateway under test: ours, minus any AWS settings of the host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(extra)
    return env


def aws_cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment for the AWS CLI under test: the dev credentials and region, and no
    config or credentials file of the host's."""
    return clean_env(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        **extra,
    )


@contextmanager
def running_gateway(
    tmp_path: Path,
    config: str,
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    startup_timeout: float = 60.0,
) -> Iterator[Gateway]:
    """Start a gateway with ``config``; stop it afterwards and check it left no worker."""
    config_path = tmp_path / "coldbrew.toml"
    config_path.write_text(config)
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config_path), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env or clean_env(),
            cwd=REPO,
        )
    gateway: Gateway | None = None
    try:

        def started() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"gateway exited early:\n{log_path.read_text()}")
            match = READY_LINE.search(log_path.read_text(errors="replace"))
            return match.group(1) if match else None

        url = wait_until(started, timeout=startup_timeout, what="the gateway to accept invocations")
        gateway = Gateway(proc, url, log_path, tmp_path / "state")
        yield gateway
    finally:
        for client in gateway.clients if gateway is not None else []:
            client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if gateway is not None:
            seen = gateway.workers_seen | gateway.children_seen
            wait_until(
                lambda: not any(is_running(pid) for pid in seen),
                timeout=10,
                what="every worker to exit with the gateway",
            )


def exported_prometheus_names() -> frozenset[str]:
    """Every series name the gateway's Prometheus page can show (histograms as their
    three series), for checking dashboards and the page against."""
    names: set[str] = set()
    for spec in CATALOG:
        base = prometheus_name(spec)
        if spec.kind == "histogram":
            names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count"})
        else:
            names.add(base)
    return frozenset(names)
