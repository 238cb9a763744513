"""Soak: mixed serverless traffic against one gateway for a given duration.

``python loadtests/bench.py --soak SECONDS`` runs three shapes of traffic at once against a
gateway on temporary state whose workers are reaped after ``IDLE_TIMEOUT_S``:

- steady: ``STEADY_CLIENTS`` clients invoking an echo endpoint back to back, with a short
  pause between calls;
- spurts: every ``SPURT_PAUSE_S`` (longer than the keep-alive, so the workers are gone), a
  spurt of ``SPURT_SIZE`` concurrent calls to another echo endpoint: cold starts;
- over quota: every ``CROWD_PAUSE_S``, ``CROWD_SIZE`` concurrent calls that each take
  ``CROWD_MODEL_S`` to an endpoint with MaxConcurrency ``CROWD_MAX_CONCURRENCY``: throttles.

It reports requests, answers by kind (200, throttled, every other error by status and
code, no answer at all), cold starts by tier, p50/p99 latency of the answered calls, and
the gateway's USS and open file descriptors at the start and the end, both taken at rest
(no worker left, nothing in flight) after the same warm-up so the two are comparable, plus
samples taken under load. The run is ``ok`` when no request was lost, none got a 5xx or an
unexpected error, every answer was right, every endpoint's concurrency in use is back to 0,
and neither memory nor file descriptors grew past the stated slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from benchlib import (
    BODY,
    ROOT,
    Answer,
    Endpoint,
    LoadGenerator,
    Server,
    children,
    client,
    gateway_argv,
    gateway_config,
    progress,
    serving,
    statistic,
    uss_mb,
    wait_until,
)

ECHO_MODEL = ROOT / "tests" / "models" / "echo"
BEHAVE_MODEL = ROOT / "tests" / "models" / "behave"
STEADY, SPURT, CROWD = "soak-steady", "soak-spurt", "soak-crowd"

IDLE_TIMEOUT_S = 1.0
STEADY_CLIENTS, STEADY_PAUSE_S = 4, 0.005
SPURT_SIZE, SPURT_PAUSE_S = 12, 2.5
CROWD_SIZE, CROWD_PAUSE_S, CROWD_MAX_CONCURRENCY, CROWD_MODEL_S = 6, 1.0, 2, 0.2
CROWD_BODY, CROWD_ANSWER = f"sleep:{CROWD_MODEL_S}".encode(), b"slept"
SAMPLE_EVERY_S = 10.0
# Long enough for one of each shape of traffic, so the start is measured with every
# endpoint, model zygote and pooled connection the run will use already in place.
WARM_UP_S = SPURT_PAUSE_S * 2 + 1.0
REST_DEADLINE_S = 60.0
# Memory may move by allocator noise; a leak of one object per request would pass this by far.
MEMORY_SLACK_MB = 4.0
FD_SLACK = 0
WORKER_NAME = "cb-worker"
# TCP states in /proc/net/tcp in which the server still holds the connection's
# descriptor: ESTABLISHED and CLOSE_WAIT.
HOLDING_FD = frozenset({"01", "08"})
CONCURRENCY = re.compile(r"^coldbrew_concurrency\{[^}]*\} (\S+)$", re.MULTILINE)


@dataclass
class Tally:
    """Every answer of the run, by kind."""

    requests: int = 0
    ok: int = 0
    throttled: int = 0
    lost: int = 0
    server_errors: int = 0
    wrong_answers: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    cold_starts: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)

    def record(self, answer: Answer | None, expect: bytes) -> None:
        self.requests += 1
        if answer is None:
            self.lost += 1
            return
        if answer.status == 200:
            self.ok += 1
            self.latencies_s.append(answer.seconds)
            if answer.tier is not None:
                self.cold_starts[answer.tier] += 1
            if answer.body != expect:
                self.wrong_answers += 1
            return
        code = error_code(answer.body)
        # SageMaker throttles with 400 ThrottlingException, which boto3 retries.
        if code == "ThrottlingException":
            self.throttled += 1
            return
        self.server_errors += answer.status >= 500
        self.errors[f"{answer.status} {code}"] += 1

    def as_json(self) -> dict[str, object]:
        latencies = self.latencies_s
        return {
            "requests": self.requests,
            "succeeded": self.ok,
            "throttled": self.throttled,
            "lost": self.lost,
            "server_errors": self.server_errors,
            "wrong_answers": self.wrong_answers,
            "errors_by_kind": dict(self.errors),
            "cold_starts": dict(self.cold_starts),
            "p50_ms": round(statistic(latencies, "p50") * 1e3, 3) if latencies else None,
            "p99_ms": round(statistic(latencies, "p99") * 1e3, 3) if latencies else None,
        }


def error_code(body: bytes) -> str:
    """The SageMaker error code in an error body, or ``unknown``."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "unknown"
    code = document.get("__type") if isinstance(document, dict) else None
    return str(code).rpartition("#")[2] if code else "unknown"


@dataclass(frozen=True)
class Resources:
    """The gateway's own footprint at one moment."""

    at_s: float
    uss_mb: float | None
    open_fds: dict[str, int]
    workers: int


def open_fds(pid: int) -> dict[str, int]:
    """``pid``'s open file descriptors by kind: file, pipe, anon_inode, and sockets by
    family and TCP state (a unix socket, a listener, a connection)."""
    sockets = socket_kinds()
    kinds: Counter[str] = Counter()
    folder = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in folder.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                kind = target.partition(":")[0] if ":" in target else "file"
                if kind == "socket":
                    kind = sockets.get(target.removeprefix("socket:[").rstrip("]"), "socket")
                kinds[kind] += 1
    return dict(kinds)


def socket_kinds() -> dict[str, str]:
    """Socket inode -> what it is, from /proc/net (this process's network namespace)."""
    kinds: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 7:
                kinds[fields[6]] = "unix socket"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                state = "listen" if fields[3] == "0A" else f"state {fields[3]}"
                kinds[fields[9]] = f"tcp socket ({state})"
    return kinds


def connections_to(port: int) -> int:
    """TCP connections whose local end is ``port`` on this host and that still hold a
    descriptor there: established, or closed by the peer and not yet by the server."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                count += int(local.rpartition(":")[2], 16) == port and state in HOLDING_FD
    return count


def worker_count(pid: int) -> int:
    count = 0
    for child in children(pid):
        with contextlib.suppress(OSError):
            count += Path(f"/proc/{child}/comm").read_text().strip() == WORKER_NAME
    return count


async def in_use(url: str) -> float:
    """Invocations in flight over every endpoint, as the gateway's /metrics page says."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{url}/metrics") as response,
    ):
        page = await response.text()
    return sum(float(value) for value in CONCURRENCY.findall(page))


class Soak:
    """Drives the three shapes of traffic, a phase at a time, each phase on its own client
    connections (closed when it ends, so the gateway is measured at rest without them)."""

    gen: LoadGenerator
    tally: Tally

    def __init__(self, ours: Server, workers_dir: Path) -> None:
        self.ours = ours
        # Where the gateway keeps its workers' private directories.
        self.workers_dir = workers_dir
        self.samples: list[Resources] = []
        self.started = time.perf_counter()
        self.client_errors: list[str] = []

    async def phase(self, seconds: float, tally: Tally) -> None:
        """Mixed load for ``seconds``, every answer recorded in ``tally``."""
        limit = STEADY_CLIENTS + SPURT_SIZE + CROWD_SIZE
        async with client(self.ours.url, self.client_errors, limit) as gen:
            self.gen, self.tally = gen, tally
            await self.run(seconds)

    async def call(self, endpoint: str, body: bytes, expect: bytes) -> None:
        self.tally.record(await self.gen.post(self.ours.url, endpoint, body), expect)

    async def steady(self, stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            await self.call(STEADY, BODY, BODY)
            await asyncio.sleep(STEADY_PAUSE_S)

    async def together(self, size: int, endpoint: str, body: bytes, expect: bytes) -> None:
        await asyncio.gather(*(self.call(endpoint, body, expect) for _ in range(size)))

    async def every(
        self, pause_s: float, stop_at: float, work: Callable[[], Awaitable[None]]
    ) -> None:
        while time.perf_counter() + pause_s < stop_at:
            await asyncio.sleep(pause_s)
            await work()

    def sample(self) -> Resources:
        pid = self.ours.pid
        at = round(time.perf_counter() - self.started, 1)
        return Resources(at, uss_mb(pid), open_fds(pid), worker_count(pid))

    async def sampling(self, stop_at: float) -> None:
        while time.perf_counter() + SAMPLE_EVERY_S < stop_at:
            await asyncio.sleep(SAMPLE_EVERY_S)
            self.samples.append(self.sample())

    async def run(self, seconds: float) -> None:
        stop_at = time.perf_counter() + seconds
        spurt = (SPURT_SIZE, SPURT, BODY, BODY)
        crowd = (CROWD_SIZE, CROWD, CROWD_BODY, CROWD_ANSWER)
        async with asyncio.TaskGroup() as group:
            for _ in range(STEADY_CLIENTS):
                group.create_task(self.steady(stop_at))
            group.create_task(self.every(SPURT_PAUSE_S, stop_at, lambda: self.together(*spurt)))
            group.create_task(self.every(CROWD_PAUSE_S, stop_at, lambda: self.together(*crowd)))
            group.create_task(self.sampling(stop_at))

    async def at_rest(self) -> Resources:
        """The gateway's footprint once no worker is left (nor its private directory,
        which the gateway removes on a thread of its own), no client is connected and
        nothing is in flight."""
        pid, url = self.ours.pid, self.ours.url
        port = int(url.rpartition(":")[2])
        deadline = time.monotonic() + REST_DEADLINE_S
        while (flying := await in_use(url)) != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"concurrency in use stayed at {flying:g}")
            await asyncio.sleep(0.05)
        await wait_until(
            lambda: worker_count(pid) == 0, within_s=REST_DEADLINE_S, what="every worker reaped"
        )
        await wait_until(
            lambda: not any(self.workers_dir.glob("worker-*")),
            within_s=REST_DEADLINE_S,
            what="every worker's private directory removed",
        )
        # Last, as the /metrics requests above are connections too.
        await wait_until(
            lambda: connections_to(port) == 0, within_s=REST_DEADLINE_S, what="clients gone"
        )
        return self.sample()


def grew(start: Resources, end: Resources) -> dict[str, object]:
    uss = (end.uss_mb or 0.0) - (start.uss_mb or 0.0)
    fds = sum(end.open_fds.values()) - sum(start.open_fds.values())
    return {
        "uss_mb": round(uss, 2),
        "open_fds": fds,
        "target": f"USS +{MEMORY_SLACK_MB:g} MB at most, open fds +{FD_SLACK} at most",
        "met": uss <= MEMORY_SLACK_MB and fds <= FD_SLACK,
    }


async def soak(seconds: float, folder: Path) -> dict[str, object]:
    """Run the soak for ``seconds`` on a gateway with state under ``folder``; return its
    report (``ok`` says whether every promise held)."""
    endpoints = [
        Endpoint(STEADY, ECHO_MODEL, 8),
        Endpoint(SPURT, ECHO_MODEL, SPURT_SIZE),
        Endpoint(CROWD, BEHAVE_MODEL, CROWD_MAX_CONCURRENCY),
    ]
    pool = {"idle_timeout_s": IDLE_TIMEOUT_S}
    config = gateway_config(folder / "soak.toml", folder / "soak-state", endpoints, pool)
    async with serving(gateway_argv(config), "gateway-soak") as ours:
        run, tally = Soak(ours, folder / "soak-state" / "workers"), Tally()
        progress(f"soak: warming up for {WARM_UP_S:g} s")
        await run.phase(WARM_UP_S, Tally())
        start = await run.at_rest()
        progress(f"soak: mixed load for {seconds:g} s")
        began = time.perf_counter()
        await run.phase(seconds, tally)
        elapsed = time.perf_counter() - began
        try:
            end: Resources | None = await run.at_rest()
        except (aiohttp.ClientError, TimeoutError) as error:
            # The gateway died or never settled: reported, not a crash of the soak.
            run.client_errors.insert(0, f"at rest after the load: {error!r}")
            end = None
        exit_status = ours.proc.returncode
    growth = grew(start, end) if end is not None else {"met": False}
    clean = not (tally.lost or tally.server_errors or tally.errors or tally.wrong_answers)
    return {
        "soak": {
            "seconds": round(elapsed, 1),
            **tally.as_json(),
            "requests_per_s": round(tally.requests / elapsed, 1),
            "gateway": {
                "exit_status_during_run": exit_status,
                "start": vars(start),
                "end": vars(end) if end is not None else None,
                "under_load": [vars(s) for s in run.samples],
                "growth": growth,
            },
            "client_errors": run.client_errors[:10],
            "ok": clean and bool(growth["met"]) and tally.ok > 0 and exit_status is None,
        }
    }


async def run_soak(seconds: float) -> dict[str, object]:
    """The soak on temporary state; SIGTERM cancels it, and its gateway is still stopped."""
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    with tempfile.TemporaryDirectory(prefix="coldbrew-soak-") as name:
        return await soak(seconds, Path(name))
