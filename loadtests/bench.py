"""Benchmark: Coldbrew's gateway against bare references measured in the same run.

``python loadtests/bench.py [--quick] [--out FILE]`` starts a gateway (a subprocess with a
generated config of echo endpoints, in a temporary state folder) and the bare
aiohttp+uvloop echo server (``bare_echo.py``), drives both with one load generator, and
prints one JSON document on stdout: warm latency at concurrency 1, throughput at
concurrency 16, cold-start latency (against spawning ``python -c pass``) and memory.
Progress goes to stderr. Every answer must be 200 with the sent body; a run with errors
says so in the JSON (``ok``) and exits 1. Both servers are stopped (SIGTERM, then SIGKILL
after a deadline) however the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import uvloop

from gateway.sigv4 import Credential, sign

ROOT = Path(__file__).resolve().parent.parent
ECHO_MODEL = ROOT / "tests" / "models" / "echo"
BARE_ECHO = Path(__file__).resolve().with_name("bare_echo.py")
BARE_NAME = "aiohttp+uvloop bare echo server"
CREDENTIAL = Credential("test", "test", "")
REGION = "us-east-1"
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
WARM_ENDPOINT = "bench-warm"
# Signatures stay valid for 5 minutes; re-signing well before keeps the client cheap.
RESIGN_AFTER_S = 60.0
STARTUP_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0
READY_LINE = re.compile(rb"accepting invocations on (http://127\.0\.0\.1:\d+)")
MB = 1024.0


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
        ratio = self.coldbrew / self.reference if self.reference > 0 else None
        return {**asdict(self), "ratio": ratio}


@dataclass
class Errors:
    """Failed requests: a count and the first few descriptions."""

    count: int = 0
    samples: list[str] = field(default_factory=list)

    def add(self, description: str) -> None:
        self.count += 1
        if len(self.samples) < 10:
            self.samples.append(description)


@dataclass(frozen=True)
class Server:
    proc: asyncio.subprocess.Process
    url: str


class Signer:
    """SigV4 headers per distinct URL, signed once and reused for ``RESIGN_AFTER_S``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._signed: dict[str, tuple[float, dict[str, str]]] = {}

    def headers(self, url: str) -> dict[str, str]:
        now = self._clock()
        cached = self._signed.get(url)
        if cached is None or now - cached[0] > RESIGN_AFTER_S:
            plain = {"Content-Type": "application/json", "Accept": "application/json"}
            signed = sign(
                method="POST",
                url=url,
                headers=plain,
                body=BODY,
                credential=CREDENTIAL,
                region=REGION,
                now=now,
            )
            cached = self._signed[url] = (now, signed)
        return cached[1]


class LoadGenerator:
    """Invokes endpoints over one keep-alive session. Requests are signed for the gateway
    (``signed_for``) whichever server they go to, so both receive identical requests."""

    def __init__(
        self, session: aiohttp.ClientSession, signer: Signer, signed_for: str, errors: Errors
    ) -> None:
        self._session, self._signer, self._errors = session, signer, errors
        self._signed_for = signed_for

    async def invoke(self, server: str, endpoint: str) -> float | None:
        """Seconds one invocation took, or None (and an error recorded) if it failed."""
        path = f"/endpoints/{endpoint}/invocations"
        headers = self._signer.headers(self._signed_for + path)
        start = time.perf_counter()
        try:
            async with self._session.post(server + path, data=BODY, headers=headers) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            self._errors.add(f"{server}{path}: {error!r}")
            return None
        elapsed = time.perf_counter() - start
        if resp.status != 200 or body != BODY:
            self._errors.add(f"{server}{path}: {resp.status} {body[:200]!r}")
            return None
        return elapsed


@contextlib.asynccontextmanager
async def load_generator(
    concurrency: int, signer: Signer, signed_for: str, errors: Errors
) -> AsyncIterator[LoadGenerator]:
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60.0)
    timeout = aiohttp.ClientTimeout(total=120.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield LoadGenerator(session, signer, signed_for, errors)


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0.0 for no values (the run then reports errors)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM ``proc`` by pid, SIGKILL it past ``STOP_DEADLINE_S``; wait until it exited."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_DEADLINE_S):
                await proc.wait()
        except TimeoutError:
            progress(f"pid {proc.pid} ignored SIGTERM; killing it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    await proc.wait()


async def first_match(stream: asyncio.StreamReader, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
    """The first line of ``stream`` matching ``pattern``, within ``STARTUP_DEADLINE_S``."""
    async with asyncio.timeout(STARTUP_DEADLINE_S):
        while line := await stream.readline():
            if match := pattern.search(line):
                return match
    raise RuntimeError(f"server exited before printing a line matching {pattern.pattern!r}")


async def forward(stream: asyncio.StreamReader, prefix: str) -> None:
    # The pipe must be drained or the server blocks once its buffer is full.
    while line := await stream.readline():
        sys.stderr.write(f"{prefix}| {line.decode(errors='replace')}")


@contextlib.asynccontextmanager
async def gateway(config: Path) -> AsyncIterator[Server]:
    """A gateway serving ``config``; its log goes to our stderr."""
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    log: asyncio.Task[None] | None = None
    try:
        assert proc.stderr is not None
        ready = await first_match(proc.stderr, READY_LINE)
        log = asyncio.create_task(forward(proc.stderr, "gateway"))
        yield Server(proc, ready.group(1).decode())
    finally:
        await stop(proc)
        if log is not None:
            await asyncio.wait({log}, timeout=2.0)
            log.cancel()


@contextlib.asynccontextmanager
async def bare_server() -> AsyncIterator[Server]:
    """The reference echo server on 127.0.0.1 at the port it prints."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(BARE_ECHO), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = await first_match(proc.stdout, re.compile(rb"^(\d+)$"))
        yield Server(proc, f"http://127.0.0.1:{port.group(1).decode()}")
    finally:
        await stop(proc)


def write_config(folder: Path, plan: Plan) -> Path:
    """A gateway config declaring the warm endpoint and ``plan.cold_endpoints`` cold ones."""
    names = [WARM_ENDPOINT, *(cold_name(i) for i in range(plan.cold_endpoints))]
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        "port = 0",
        f"state_dir = {json.dumps(str(folder / 'state'))}",
    ]
    for name in names:
        lines += ["[[endpoints]]", f'name = "{name}"', f"model_dir = {json.dumps(str(ECHO_MODEL))}"]
        lines.append(f"max_concurrency = {plan.concurrency}")
    path = folder / "coldbrew.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cold_name(index: int) -> str:
    return f"bench-cold-{index:02d}"


def uss_mb(pid: int) -> float:
    """Unique set size of ``pid`` in MB: its private pages, clean and dirty."""
    kb = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Private_Clean", "Private_Dirty"):
            kb += int(value.split()[0])
    return kb / MB


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.update(int(child) for child in path.read_text().split())
    return found


async def sequential(gen: LoadGenerator, server: str, plan: Plan) -> list[float]:
    for _ in range(plan.warm_up):
        await gen.invoke(server, WARM_ENDPOINT)
    latencies = [await gen.invoke(server, WARM_ENDPOINT) for _ in range(plan.warm_requests)]
    return [latency for latency in latencies if latency is not None]


async def measure_warm_latency(
    signer: Signer, errors: Errors, ours: Server, bare: Server, plan: Plan
) -> dict[str, object]:
    found: dict[str, list[float]] = {}
    for server in (ours, bare):
        async with load_generator(1, signer, ours.url, errors) as gen:
            found[server.url] = await sequential(gen, server.url, plan)
    figures: dict[str, object] = {
        f"p{q}": Comparison(
            percentile(found[ours.url], q) * 1000, percentile(found[bare.url], q) * 1000,
            BARE_NAME, "ms",
        ).as_json()
        for q in (50, 99)
    }
    return {**figures, "requests": plan.warm_requests}


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
    counts = await asyncio.gather(
        *(client(start + plan.throughput_s) for _ in range(plan.concurrency))
    )
    return sum(counts) / (time.perf_counter() - start)


async def measure_throughput(
    signer: Signer, errors: Errors, ours: Server, bare: Server, plan: Plan
) -> dict[str, object]:
    found: dict[str, float] = {}
    for server in (ours, bare):
        async with load_generator(plan.concurrency, signer, ours.url, errors) as gen:
            found[server.url] = await requests_per_second(gen, server.url, plan)
    return Comparison(found[ours.url], found[bare.url], BARE_NAME, "requests/s").as_json()


async def spawn_seconds() -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    return time.perf_counter() - start


async def measure_cold_start(
    signer: Signer, errors: Errors, ours: Server, plan: Plan
) -> dict[str, object]:
    async with load_generator(1, signer, ours.url, errors) as gen:
        firsts = [await gen.invoke(ours.url, cold_name(i)) for i in range(plan.cold_endpoints)]
    latencies = [latency for latency in firsts if latency is not None]
    spawns = [await spawn_seconds() for _ in range(plan.cold_endpoints)]
    reference = f"{Path(sys.executable).name} -c pass (spawn and wait)"
    figures: dict[str, object] = {
        name: Comparison(pick(latencies) * 1000, pick(spawns) * 1000, reference, "ms").as_json()
        for name, pick in (
            ("p50", lambda v: percentile(v, 50)),
            ("p90", lambda v: percentile(v, 90)),
            ("max", lambda v: max(v, default=0.0)),
        )
    }
    return {**figures, "endpoints": plan.cold_endpoints}


def worker_uss_mb(gateway_pid: int, before: set[int], errors: Errors) -> float | None:
    """USS of the worker the warm phase started: the gateway's one new child process."""
    workers = sorted(children(gateway_pid) - before)
    if len(workers) != 1:
        errors.add(f"expected one warm worker child of the gateway, found {workers}")
        return None
    return uss_mb(workers[0])


async def run(plan: Plan) -> dict[str, object]:
    errors, signer = Errors(), Signer()
    with tempfile.TemporaryDirectory(prefix="coldbrew-bench-") as folder:
        config = write_config(Path(folder), plan)
        progress("starting the gateway and the bare echo server")
        async with gateway(config) as ours, bare_server() as bare:
            idle_uss, before = uss_mb(ours.proc.pid), children(ours.proc.pid)
            progress(f"warm latency at concurrency 1 ({plan.warm_requests} requests each)")
            warm = await measure_warm_latency(signer, errors, ours, bare, plan)
            memory = {
                "gateway_idle_uss_mb": idle_uss,
                "warm_worker_uss_mb": worker_uss_mb(ours.proc.pid, before, errors),
                "unit": "MB",
            }
            progress(f"throughput at concurrency {plan.concurrency} ({plan.throughput_s:g} s each)")
            throughput = await measure_throughput(signer, errors, ours, bare, plan)
            progress(f"cold starts on {plan.cold_endpoints} endpoints")
            cold = await measure_cold_start(signer, errors, ours, plan)
    return {
        "warm_latency_c1": warm,
        f"throughput_c{plan.concurrency}": throughput,
        "cold_start": cold,
        "memory": memory,
        "errors": asdict(errors),
        "ok": errors.count == 0,
    }


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def machine() -> dict[str, object]:
    status = git("status", "--porcelain")
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": None if status is None else bool(status),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument("--out", type=Path, help="also write the JSON document to this file")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    info = machine()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(run(plan))
    document = {"machine": info, "plan": {**asdict(plan), "quick": args.quick}, **results}
    text = json.dumps(document, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if not results["ok"]:
        progress(f"{results['errors']}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
