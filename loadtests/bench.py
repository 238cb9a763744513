"""Benchmark: the gateway against references measured in the same run, as one JSON document.

``python loadtests/bench.py [--quick] [--out FILE]`` runs a gateway (echo endpoints, temporary
state) and the bare echo server side by side and drives both with one load generator. Every
answer must be 200 with the sent body; a run with errors says so (``ok``) and exits 1. Progress
goes to stderr; both servers are stopped (SIGTERM, then SIGKILL) however the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import aiohttp
import uvloop

from gateway.sigv4 import Credential, sign

ROOT = Path(__file__).resolve().parent.parent
ECHO_MODEL = ROOT / "tests" / "models" / "echo"
BARE_ECHO = Path(__file__).resolve().with_name("bare_echo.py")
BARE_NAME = "aiohttp+uvloop bare echo server"
SPAWN_NAME = f"{Path(sys.executable).name} -c pass (spawn and wait)"
WARM_ENDPOINT = "bench-warm"
COLD_ENDPOINT = "bench-cold-{:02d}"
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
sign_request = partial(
    sign,
    method="POST",
    headers={"Content-Type": "application/json", "Accept": "application/json"},
    body=BODY,
    credential=Credential("test", "test", ""),
    region="us-east-1",
)
# Signatures stay valid for 5 minutes; re-signing well before that keeps the client cheap.
RESIGN_AFTER_S = 60.0
STARTUP_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0
# The line both servers write once they serve.
READY = re.compile(rb"accepting invocations on http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class Plan:
    """How much load each measurement applies."""

    warm_up: int
    warm_requests: int
    throughput_s: float
    cold_endpoints: int
    concurrency: int = 16


FULL = Plan(warm_up=200, warm_requests=2000, throughput_s=5.0, cold_endpoints=20)
QUICK = Plan(warm_up=50, warm_requests=200, throughput_s=1.0, cold_endpoints=5)


@dataclass(frozen=True)
class Comparison:
    """One Coldbrew figure beside the same figure of a reference."""

    coldbrew: float
    reference: float
    reference_name: str
    unit: str

    def as_json(self) -> dict[str, object]:
        ratio = round(self.coldbrew / self.reference, 3) if self.reference > 0 else None
        rounded = {"coldbrew": round(self.coldbrew, 3), "reference": round(self.reference, 3)}
        return {**asdict(self), **rounded, "ratio": ratio}


@dataclass(frozen=True)
class Server:
    proc: asyncio.subprocess.Process
    url: str


class LoadGenerator:
    """Invokes endpoints over one keep-alive session, recording failures in ``errors``. Each
    distinct request is signed for the gateway (``signed_for``) once per ``RESIGN_AFTER_S``,
    and the same headers go to either server."""

    def __init__(self, session: aiohttp.ClientSession, signed_for: str, errors: list[str]) -> None:
        self._session, self._signed_for, self._errors = session, signed_for, errors
        self._signed: dict[str, tuple[float, dict[str, str]]] = {}

    def headers(self, path: str) -> dict[str, str]:
        now = time.time()
        signed_at, headers = self._signed.get(path, (0.0, {}))
        if now - signed_at > RESIGN_AFTER_S:
            headers = sign_request(url=self._signed_for + path, now=now)
            self._signed[path] = (now, headers)
        return headers

    async def invoke(self, server: str, endpoint: str) -> float | None:
        """Seconds one invocation took, or None (and an error recorded) if it failed."""
        path = f"/endpoints/{endpoint}/invocations"
        headers = self.headers(path)
        start = time.perf_counter()
        try:
            async with self._session.post(server + path, data=BODY, headers=headers) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            self._errors.append(f"{server}{path}: {error!r}")
            return None
        elapsed = time.perf_counter() - start
        if resp.status != 200 or body != BODY:
            self._errors.append(f"{server}{path}: {resp.status} {body[:200]!r}")
            return None
        return elapsed


@contextlib.asynccontextmanager
async def load_generator(
    concurrency: int, signed_for: str, errors: list[str]
) -> AsyncIterator[LoadGenerator]:
    """One client session, used for both servers alike."""
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60.0)
    timeout = aiohttp.ClientTimeout(total=120.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield LoadGenerator(session, signed_for, errors)


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def statistic(values: list[float], stat: str) -> float:
    """``"max"`` or a nearest-rank percentile like ``"p99"``; 0.0 for no values."""
    ordered = sorted(values) or [0.0]
    q = 100.0 if stat == "max" else float(stat[1:])
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def compare(mine: list[float], theirs: list[float], stats: str, name: str) -> dict[str, object]:
    """Each of ``stats`` ("p50 max") of our latencies beside the reference's, in ms."""
    found = {stat: (statistic(mine, stat), statistic(theirs, stat)) for stat in stats.split()}
    return {
        stat: Comparison(a * 1e3, b * 1e3, name, "ms").as_json() for stat, (a, b) in found.items()
    }


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM ``proc`` by pid, SIGKILL it past ``STOP_DEADLINE_S``; wait until it exited."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_DEADLINE_S):
                await proc.wait()
        except TimeoutError:
            progress(f"pid {proc.pid} ignored SIGTERM for {STOP_DEADLINE_S:g} s; killing it")
            proc.kill()
    await proc.wait()


async def watch(stream: asyncio.StreamReader, name: str, port: asyncio.Future[int]) -> None:
    """Copy ``stream`` to our stderr (draining it, so the server never blocks on a full
    pipe) and resolve ``port`` from the first ``READY`` line."""
    while line := await stream.readline():
        if not port.done() and (match := READY.search(line)):
            port.set_result(int(match.group(1)))
        else:
            sys.stderr.write(f"{name}| {line.decode(errors='replace')}")
    if not port.done():
        port.set_exception(RuntimeError(f"{name} exited before serving"))


@contextlib.asynccontextmanager
async def serving(argv: list[str], name: str) -> AsyncIterator[Server]:
    """Run ``argv`` until its output has a ``READY`` line giving its port; stop it on exit.
    Raises RuntimeError if it exits first or is not serving within ``STARTUP_DEADLINE_S``."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    output = asyncio.create_task(watch(proc.stdout, name, port))
    try:
        try:
            async with asyncio.timeout(STARTUP_DEADLINE_S):
                url = f"http://127.0.0.1:{await port}"
        except TimeoutError:
            raise RuntimeError(f"{name} not serving after {STARTUP_DEADLINE_S:g} s") from None
        yield Server(proc, url)
    finally:
        await stop(proc)
        # Its last lines are copied unless an orphaned descendant holds the pipe open.
        await asyncio.wait({output}, timeout=2.0)
        output.cancel()


def write_config(folder: Path, plan: Plan) -> Path:
    """A gateway config declaring the warm endpoint and ``plan.cold_endpoints`` cold ones."""
    lines = ["[server]", 'host = "127.0.0.1"', "port = 0"]
    lines.append(f"state_dir = {json.dumps(str(folder / 'state'))}")
    for name in [WARM_ENDPOINT, *(COLD_ENDPOINT.format(i) for i in range(plan.cold_endpoints))]:
        lines += ["[[endpoints]]", f'name = "{name}"', f"max_concurrency = {plan.concurrency}"]
        lines.append(f"model_dir = {json.dumps(str(ECHO_MODEL))}")
    path = folder / "coldbrew.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def uss_mb(pid: int) -> float:
    """Unique set size of ``pid`` in MB: its private pages, clean and dirty."""
    kb = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Private_Clean", "Private_Dirty"):
            kb += int(value.split()[0])
    return round(kb / 1024, 2)


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.update(int(child) for child in path.read_text().split())
    return found


def worker_uss_mb(gateway_pid: int, before: set[int], errors: list[str]) -> float | None:
    """USS of the worker the warm phase started: the gateway's one new child process."""
    workers = sorted(children(gateway_pid) - before)
    if len(workers) != 1:
        errors.append(f"expected one warm worker child of the gateway, found {workers}")
        return None
    return uss_mb(workers[0])


async def sequential(gen: LoadGenerator, server: str, plan: Plan) -> list[float]:
    latencies = [
        await gen.invoke(server, WARM_ENDPOINT) for _ in range(plan.warm_up + plan.warm_requests)
    ]
    return [latency for latency in latencies[plan.warm_up :] if latency is not None]


async def measure_warm_latency(
    errors: list[str], ours: Server, bare: Server, plan: Plan
) -> dict[str, object]:
    async with load_generator(1, ours.url, errors) as gen:
        mine, theirs = [await sequential(gen, server.url, plan) for server in (ours, bare)]
    return {**compare(mine, theirs, "p50 p99", BARE_NAME), "requests": plan.warm_requests}


async def requests_per_second(gen: LoadGenerator, server: str, plan: Plan) -> float:
    async def client(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            done += await gen.invoke(server, WARM_ENDPOINT) is not None
        return done

    # Bursts of `concurrency` requests bring up as many workers before the clock starts.
    for _ in range(3):
        await asyncio.gather(*(gen.invoke(server, WARM_ENDPOINT) for _ in range(plan.concurrency)))
    start = time.perf_counter()
    deadline = start + plan.throughput_s
    counts = await asyncio.gather(*(client(deadline) for _ in range(plan.concurrency)))
    return sum(counts) / (time.perf_counter() - start)


async def measure_throughput(
    errors: list[str], ours: Server, bare: Server, plan: Plan
) -> dict[str, object]:
    async with load_generator(plan.concurrency, ours.url, errors) as gen:
        mine, theirs = [await requests_per_second(gen, server.url, plan) for server in (ours, bare)]
    return Comparison(mine, theirs, BARE_NAME, "requests/s").as_json()


async def measure_cold_start(errors: list[str], ours: Server, plan: Plan) -> dict[str, object]:
    """The first request to each of ``plan.cold_endpoints`` zero-scaled endpoints."""
    async with load_generator(1, ours.url, errors) as gen:
        firsts = [
            await gen.invoke(ours.url, COLD_ENDPOINT.format(i)) for i in range(plan.cold_endpoints)
        ]
    theirs = []
    for _ in range(plan.cold_endpoints):
        start = time.perf_counter()
        await (await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")).wait()
        theirs.append(time.perf_counter() - start)
    mine = [latency for latency in firsts if latency is not None]
    return {**compare(mine, theirs, "p50 p90 max", SPAWN_NAME), "endpoints": plan.cold_endpoints}


async def run(plan: Plan) -> dict[str, object]:
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="coldbrew-bench-") as folder:
        config = write_config(Path(folder), plan)
        progress("starting the gateway and the bare echo server")
        gateway_argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
        async with (
            serving(gateway_argv, "gateway") as ours,
            serving([sys.executable, str(BARE_ECHO)], "bare echo") as bare,
        ):
            idle_uss, before = uss_mb(ours.proc.pid), children(ours.proc.pid)
            progress(f"warm latency at concurrency 1 ({plan.warm_requests} requests each)")
            warm = await measure_warm_latency(errors, ours, bare, plan)
            worker_uss = worker_uss_mb(ours.proc.pid, before, errors)
            progress(f"throughput at concurrency {plan.concurrency} ({plan.throughput_s:g} s each)")
            throughput = await measure_throughput(errors, ours, bare, plan)
            progress(f"cold starts on {plan.cold_endpoints} endpoints")
            cold = await measure_cold_start(errors, ours, plan)
    return {
        "warm_latency_c1": warm,
        f"throughput_c{plan.concurrency}": throughput,
        "cold_start": cold,
        "memory": {"gateway_idle_uss": idle_uss, "warm_worker_uss": worker_uss, "unit": "MB"},
        "errors": {"count": len(errors), "samples": errors[:10]},
        "ok": not errors,
    }


def machine() -> dict[str, object]:
    try:
        git = ["git", "rev-parse", "--short", "HEAD"]
        done = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
        commit: str | None = done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the gateway against references.")
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument("--out", type=Path, help="also write the JSON document to this file")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    info = machine()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(run(plan))
    text = json.dumps({"machine": info, "plan": asdict(plan), **results}, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if not results["ok"]:
        progress(f"FAILED with errors: {results['errors']}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
