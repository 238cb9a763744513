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
from pathlib import Path

import aiohttp
import uvloop
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parent.parent
ECHO_MODEL = ROOT / "tests" / "models" / "echo"
BARE_ECHO = Path(__file__).resolve().with_name("bare_echo.py")
BARE_NAME = "aiohttp+uvloop bare echo server"
SPAWN_NAME = f"{Path(sys.executable).name} -c pass (spawn and wait)"
WARM_ENDPOINT = "bench-warm"
COLD_ENDPOINT = "bench-cold-{:02d}"
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
CREDENTIALS = Credentials("test", "test")


def sign_request(url: str) -> dict[str, str]:
    """SigV4 headers for one bench request, signed by botocore as any AWS client would
    (the load generator talks HTTP only; it shares no code with the gateway)."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=BODY,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    SigV4Auth(CREDENTIALS, "sagemaker", "us-east-1").add_auth(request)
    return dict(request.headers.items())


# Signatures stay valid for 5 minutes; re-signing well before that keeps the client cheap.
RESIGN_AFTER_S = 60.0
STARTUP_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=120.0)
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

    async def invoke(self, server: str, endpoint: str) -> float | None:
        """Seconds one invocation took, or None (and an error recorded) if it failed."""
        path, now = f"/endpoints/{endpoint}/invocations", time.time()
        signed_at, headers = self._signed.get(path, (0.0, {}))
        if now - signed_at > RESIGN_AFTER_S:
            headers = sign_request(self._signed_for + path)
            self._signed[path] = (now, headers)
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


async def copy_lines(
    stream: asyncio.StreamReader, name: str, until: re.Pattern[bytes] | None = None
) -> re.Match[bytes] | None:
    """Copy lines of ``stream`` to our stderr until one matches ``until`` (returned, not
    copied) or the stream ends (None)."""
    while line := await stream.readline():
        if until is not None and (match := until.search(line)):
            return match
        sys.stderr.write(f"{name}| {line.decode(errors='replace')}")
    return None


@contextlib.asynccontextmanager
async def serving(argv: list[str], name: str) -> AsyncIterator[Server]:
    """Run ``argv`` until it prints its ``READY`` line, and stop it on exit. Raises
    TimeoutError past ``STARTUP_DEADLINE_S``, RuntimeError if it exits before serving."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    progress(f"started {name}: server pid {proc.pid}")
    output: asyncio.Task[object] | None = None
    try:
        async with asyncio.timeout(STARTUP_DEADLINE_S):
            ready = await copy_lines(proc.stdout, name, READY)
        if ready is None:
            raise RuntimeError(f"{name} exited before serving")
        # Draining the pipe keeps the server from blocking once its buffer is full.
        output = asyncio.create_task(copy_lines(proc.stdout, name))
        yield Server(proc, f"http://127.0.0.1:{int(ready.group(1))}")
    finally:
        await stop(proc)
        if output is not None:
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


async def rate(gen: LoadGenerator, server: str, plan: Plan) -> float:
    """Answers per second at ``plan.concurrency`` for ``plan.throughput_s``."""

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


@dataclass
class Bench:
    """The measurements of one run: both servers, the plan, and every error seen."""

    ours: Server
    bare: Server
    plan: Plan
    errors: list[str]

    @contextlib.asynccontextmanager
    async def client(self, concurrency: int) -> AsyncIterator[LoadGenerator]:
        """One keep-alive client session, used for both servers alike."""
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=CLIENT_TIMEOUT) as session:
            yield LoadGenerator(session, self.ours.url, self.errors)

    async def warm_latency(self) -> dict[str, object]:
        """Sequential invocations of the warm endpoint, after ``plan.warm_up`` untimed ones."""
        warm_up, timed = self.plan.warm_up, self.plan.warm_requests
        found: list[list[float]] = []
        async with self.client(1) as gen:
            for url in (self.ours.url, self.bare.url):
                runs = [await gen.invoke(url, WARM_ENDPOINT) for _ in range(warm_up + timed)]
                found.append([latency for latency in runs[warm_up:] if latency is not None])
        mine, theirs = found
        return {**compare(mine, theirs, "p50 p99", BARE_NAME), "requests": timed}

    async def throughput(self) -> dict[str, object]:
        async with self.client(self.plan.concurrency) as gen:
            mine, theirs = [await rate(gen, s.url, self.plan) for s in (self.ours, self.bare)]
        return Comparison(mine, theirs, BARE_NAME, "requests/s").as_json()

    async def cold_start(self) -> dict[str, object]:
        """The first request to each of ``plan.cold_endpoints`` zero-scaled endpoints, beside
        starting an interpreter that does nothing."""
        count, url = self.plan.cold_endpoints, self.ours.url
        async with self.client(1) as gen:
            firsts = [await gen.invoke(url, COLD_ENDPOINT.format(i)) for i in range(count)]
        spawns: list[float] = []
        for _ in range(count):
            start = time.perf_counter()
            await (await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")).wait()
            spawns.append(time.perf_counter() - start)
        mine = [latency for latency in firsts if latency is not None]
        return {**compare(mine, spawns, "p50 p90 max", SPAWN_NAME), "endpoints": count}

    def worker_uss(self, before: set[int]) -> float | None:
        """USS of the worker the warm phase started: the gateway's one new child process."""
        workers = sorted(children(self.ours.proc.pid) - before)
        if len(workers) != 1:
            self.errors.append(f"expected one new worker child of the gateway, found {workers}")
            return None
        return uss_mb(workers[0])


async def run(plan: Plan) -> dict[str, object]:
    # SIGTERM cancels the run, so the servers are still stopped on the way out.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    with tempfile.TemporaryDirectory(prefix="coldbrew-bench-") as folder:
        config = write_config(Path(folder), plan)
        progress("starting the gateway and the bare echo server")
        gateway_argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
        async with (
            serving(gateway_argv, "gateway") as ours,
            serving([sys.executable, str(BARE_ECHO)], "bare echo") as bare,
        ):
            bench = Bench(ours, bare, plan, errors=[])
            idle_uss, before = uss_mb(ours.proc.pid), children(ours.proc.pid)
            progress(f"warm latency at concurrency 1 ({plan.warm_requests} requests each)")
            warm = await bench.warm_latency()
            worker_uss = bench.worker_uss(before)
            progress(f"throughput at concurrency {plan.concurrency} ({plan.throughput_s:g} s each)")
            throughput = await bench.throughput()
            progress(f"cold starts on {plan.cold_endpoints} endpoints")
            cold = await bench.cold_start()
    return {
        "warm_latency_c1": warm,
        f"throughput_c{plan.concurrency}": throughput,
        "cold_start": cold,
        "memory": {"gateway_idle_uss": idle_uss, "warm_worker_uss": worker_uss, "unit": "MB"},
        "errors": {"count": len(bench.errors), "samples": bench.errors[:10]},
        "ok": not bench.errors,
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
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
