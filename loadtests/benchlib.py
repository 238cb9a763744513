"""The benchmark's machinery: servers run as child processes with their logs watched, a signed
HTTP load generator, a local OTLP/HTTP collector, processes inspected through /proc,
statistics and targets.

Nothing here imports the gateway: the bench talks to it over HTTP on 127.0.0.1 and reads its
log, as an operator would. Every process started here is stopped by pid (SIGTERM, then
SIGKILL) however the caller's block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parent.parent
JSON = "application/json"
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
CREDENTIALS = Credentials("test", "test")
COLD_START_HEADER = "X-Coldbrew-Cold-Start"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
# Signatures stay valid for 5 minutes; re-signing well before that keeps the client cheap.
RESIGN_AFTER_S = 60.0
STARTUP_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=120.0)
# The line both servers write once they serve.
READY = re.compile(r"accepting invocations on http://127\.0\.0\.1:(\d+)")
TIER = re.compile(r"tier=([\w-]+)")
HOST_PID = re.compile(r"\bworker=(\d+)")


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ statistics


def statistic(values: Sequence[float], stat: str) -> float:
    """``"max"`` or a nearest-rank percentile like ``"p99"``; 0.0 for no values."""
    ordered = sorted(values) or [0.0]
    q = 100.0 if stat == "max" else float(stat[1:])
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


@dataclass(frozen=True)
class Comparison:
    """One Coldbrew figure beside the same figure of a reference."""

    coldbrew: float
    reference: float
    reference_name: str
    unit: str

    @property
    def ratio(self) -> float | None:
        return round(self.coldbrew / self.reference, 3) if self.reference > 0 else None

    def as_json(self) -> dict[str, object]:
        rounded = {"coldbrew": round(self.coldbrew, 3), "reference": round(self.reference, 3)}
        return {**asdict(self), **rounded, "ratio": self.ratio}


def compare(
    mine: Sequence[float], theirs: Sequence[float], stats: str, name: str
) -> dict[str, object]:
    """Each of ``stats`` ("p50 max") of our latencies (s) beside the reference's, in ms."""
    found = {stat: (statistic(mine, stat), statistic(theirs, stat)) for stat in stats.split()}
    return {
        stat: Comparison(a * 1e3, b * 1e3, name, "ms").as_json() for stat, (a, b) in found.items()
    }


@dataclass(frozen=True)
class Target:
    """An inclusive bound (or range) a figure should meet, and how the report states it."""

    low: float | None = None
    high: float | None = None

    @property
    def text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g}..{self.high:g}"
        return f">= {self.low:g}" if self.low is not None else f"<= {self.high:g}"

    def met(self, value: object) -> bool:
        """False for a missing (non-numeric) value."""
        if not isinstance(value, int | float):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def judge(self, value: object, what: str) -> dict[str, object]:
        """The ``target`` and ``met`` entries of a figure whose ``what`` is ``value``."""
        return {"target": f"{what} {self.text}", "met": self.met(value)}


# ------------------------------------------------------------------- processes


def uss_mb(pid: int) -> float | None:
    """Unique set size of ``pid`` in MB (its private pages, clean and dirty); None if gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = 0
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("Private_Clean", "Private_Dirty"):
            kb += int(value.split()[0])
    return round(kb / 1024, 2)


def children(pid: int) -> set[int]:
    """Direct children of ``pid`` (adopted ones included)."""
    found: set[int] = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.update(int(child) for child in path.read_text().split())
    return found


def cmdline(pid: int) -> list[str]:
    """The arguments ``pid`` was started with; empty if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_gone(pid: int) -> bool:
    """True once ``pid`` has exited (no /proc entry, or a zombie awaiting its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_until(condition: Callable[[], bool], *, within_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; raise TimeoutError naming ``what`` past
    ``within_s`` seconds. A deadline on a condition, never a guessed sleep."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within_s:g} s waiting for {what}")
        await asyncio.sleep(0.005)


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


async def run_once(argv: Sequence[str], *, within_s: float) -> tuple[float, int, bytes]:
    """Run ``argv`` to its end: (seconds from start to exit, exit status, its stderr). The
    process is stopped if the wait is cancelled or exceeds ``within_s`` seconds (TimeoutError)."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(within_s):
            _, stderr = await proc.communicate()
        elapsed = time.perf_counter() - start
    finally:
        if proc.returncode is None:
            await stop(proc)
    return elapsed, proc.returncode or 0, stderr


async def spawn_times(argv: Sequence[str], count: int) -> list[float]:
    """Seconds each of ``count`` sequential runs of ``argv`` took to start and exit. Raises
    RuntimeError if a run fails."""
    found: list[float] = []
    for _ in range(count):
        elapsed, status, stderr = await run_once(argv, within_s=STARTUP_DEADLINE_S)
        if status != 0:
            raise RuntimeError(f"{argv} exited {status}: {stderr[-500:]!r}")
        found.append(elapsed)
    return found


# --------------------------------------------------------------------- servers


class ProcessLog:
    """The lines a server writes, copied to our stderr and kept so that callers can wait
    for a line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._ended = False

    async def pump(self, stream: asyncio.StreamReader) -> None:
        """Read ``stream`` to its end (draining it keeps the server from blocking)."""
        try:
            while line := await stream.readline():
                text = line.decode(errors="replace")
                sys.stderr.write(f"{self.name}| {text}")
                async with self._changed:
                    self.lines.append(text)
                    self._changed.notify_all()
        finally:
            async with self._changed:
                self._ended = True
                self._changed.notify_all()

    def search(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """The first line written so far that matches ``pattern``."""
        return next(filter(None, map(pattern.search, self.lines)), None)

    async def wait_for(self, pattern: re.Pattern[str], *, within_s: float) -> re.Match[str]:
        """The first line matching ``pattern``, waiting for it if none has yet. Raises
        TimeoutError past ``within_s`` seconds, RuntimeError if the server's output ends."""
        try:
            async with asyncio.timeout(within_s), self._changed:
                while (match := self.search(pattern)) is None:
                    if self._ended:
                        raise RuntimeError(f"{self.name} ended before logging {pattern.pattern!r}")
                    await self._changed.wait()
        except TimeoutError:
            what = f"{self.name} to log {pattern.pattern!r}"
            raise TimeoutError(f"timed out after {within_s:g} s waiting for {what}") from None
        return match


@dataclass(frozen=True)
class Server:
    proc: asyncio.subprocess.Process
    url: str
    log: ProcessLog

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.asynccontextmanager
async def serving(
    argv: Sequence[str], name: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[Server]:
    """Run ``argv`` (in ``env``, default: ours) until it logs its ``READY`` line, and stop it
    on exit. Raises TimeoutError past ``STARTUP_DEADLINE_S``, RuntimeError if it exits
    before serving."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    progress(f"started {name}: server pid {proc.pid}")
    log = ProcessLog(name)
    output = asyncio.create_task(log.pump(proc.stdout))
    try:
        ready = await log.wait_for(READY, within_s=STARTUP_DEADLINE_S)
        yield Server(proc, f"http://127.0.0.1:{int(ready.group(1))}", log)
    finally:
        await stop(proc)
        # Its last lines are copied unless an orphaned descendant holds the pipe open.
        await asyncio.wait({output}, timeout=2.0)
        output.cancel()


@dataclass(frozen=True)
class Endpoint:
    """One ``[[endpoints]]`` entry of a gateway config."""

    name: str
    model_dir: Path
    max_concurrency: int = 16
    memory_size_mb: int = 2048


def gateway_config(
    path: Path,
    state_dir: Path,
    endpoints: Sequence[Endpoint],
    pool: dict[str, float],
    sandbox: str = "auto",
) -> Path:
    """Write a config for a gateway on 127.0.0.1 (any free port) with ``endpoints``, the
    ``[pool]`` settings ``pool`` and the ``[sandbox]`` mode ``sandbox``; return ``path``."""
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        "port = 0",
        f"state_dir = {json.dumps(str(state_dir))}",
        "[sandbox]",
        f"mode = {json.dumps(sandbox)}",
    ]
    if pool:
        lines.append("[pool]")
        lines += [f"{key} = {value}" for key, value in pool.items()]
    for endpoint in endpoints:
        lines += [
            "[[endpoints]]",
            f"name = {json.dumps(endpoint.name)}",
            f"model_dir = {json.dumps(str(endpoint.model_dir))}",
            f"max_concurrency = {endpoint.max_concurrency}",
            f"memory_size_mb = {endpoint.memory_size_mb}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def gateway_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "gateway", "serve", "--config", str(config)]


# ------------------------------------------------------------------- collector

COLLECTOR = ROOT / "loadtests" / "collector.py"


@dataclass(frozen=True)
class Received:
    """What one OTLP path received so far."""

    requests: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Collector:
    """A local OTLP/HTTP collector process (see ``collecting``)."""

    url: str

    async def received(self) -> dict[str, Received]:
        """What each OTLP path has received so far."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{self.url}/counts") as response,
        ):
            counts = await response.json()
        return {path: Received(**seen) for path, seen in counts.items()}

    async def as_json(self) -> dict[str, object]:
        """Totals over every path, and each path's own."""
        received = await self.received()
        return {
            "requests": sum(r.requests for r in received.values()),
            "bytes": sum(r.bytes for r in received.values()),
            "by_path": {path: asdict(r) for path, r in received.items()},
        }


@contextlib.asynccontextmanager
async def collecting() -> AsyncIterator[Collector]:
    """Run ``collector.py`` (its own process, off the load generator's loop) for the
    block."""
    async with serving([sys.executable, str(COLLECTOR)], "otlp collector") as server:
        yield Collector(server.url)


# ---------------------------------------------------------------------- client


def sign_request(url: str, body: bytes, content_type: str) -> dict[str, str]:
    """SigV4 headers for one bench request, signed by botocore as any AWS client would
    (the load generator talks HTTP only; it shares no code with the gateway)."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": content_type, "Accept": JSON},
    )
    SigV4Auth(CREDENTIALS, "sagemaker", "us-east-1").add_auth(request)
    return dict(request.headers.items())


@dataclass(frozen=True)
class Answer:
    """One HTTP answer to an invocation and how long it took."""

    status: int
    body: bytes
    seconds: float
    cold_start: str | None
    custom_attributes: str | None

    @property
    def tier(self) -> str | None:
        """The cold-start tier the gateway reports, or None for a warm invocation."""
        match = TIER.search(self.cold_start or "")
        return match.group(1) if match else None

    @property
    def worker_pid(self) -> int | None:
        """For a cold start, the new worker's pid on this host, as the gateway's
        cold-start header names it (``worker=PID``); None for a warm answer. (The pid a
        model reports itself is its sandbox namespace's.)"""
        match = HOST_PID.search(self.cold_start or "")
        return int(match.group(1)) if match else None


Expect = bytes | re.Pattern[bytes] | None


class LoadGenerator:
    """Invokes endpoints over one keep-alive session, recording failures in ``errors``. Each
    distinct request is signed for the gateway (``signed_for``) once per ``RESIGN_AFTER_S``,
    and the same headers go to either server."""

    def __init__(self, session: aiohttp.ClientSession, signed_for: str, errors: list[str]) -> None:
        self._session, self._signed_for, self.errors = session, signed_for, errors
        self._signed: dict[tuple[str, bytes, str], tuple[float, dict[str, str]]] = {}

    def _headers(self, path: str, body: bytes, content_type: str) -> dict[str, str]:
        key, now = (path, body, content_type), time.time()
        signed_at, headers = self._signed.get(key, (0.0, {}))
        if now - signed_at > RESIGN_AFTER_S:
            headers = sign_request(self._signed_for + path, body, content_type)
            self._signed[key] = (now, headers)
        return headers

    async def post(
        self, server: str, endpoint: str, body: bytes = BODY, content_type: str = JSON
    ) -> Answer | None:
        """One invocation, whatever its status; None (and an error recorded) when no HTTP
        answer came."""
        path = f"/endpoints/{endpoint}/invocations"
        headers = self._headers(path, body, content_type)
        start = time.perf_counter()
        try:
            async with self._session.post(server + path, data=body, headers=headers) as resp:
                answer = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            self.errors.append(f"{server}{path}: {error!r}")
            return None
        elapsed = time.perf_counter() - start
        cold, attributes = (
            resp.headers.get(h) for h in (COLD_START_HEADER, CUSTOM_ATTRIBUTES_HEADER)
        )
        return Answer(resp.status, answer, elapsed, cold, attributes)

    async def invoke(
        self,
        server: str,
        endpoint: str,
        body: bytes = BODY,
        *,
        content_type: str = JSON,
        expect: Expect = None,
    ) -> Answer | None:
        """One invocation that must answer 200 with ``expect`` (bytes, or a pattern the
        whole body matches; default: ``body`` echoed). Otherwise None, with an error
        recorded."""
        answer = await self.post(server, endpoint, body, content_type)
        if answer is None:
            return None
        wanted = body if expect is None else expect
        fits = (
            answer.body == wanted
            if isinstance(wanted, bytes)
            else wanted.fullmatch(answer.body) is not None
        )
        if answer.status != 200 or not fits:
            self.errors.append(f"{server} {endpoint}: {answer.status} {answer.body[:200]!r}")
            return None
        return answer


@contextlib.asynccontextmanager
async def client(signed_for: str, errors: list[str], limit: int) -> AsyncIterator[LoadGenerator]:
    """A load generator on one keep-alive session of at most ``limit`` connections."""
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector, timeout=CLIENT_TIMEOUT) as session:
        yield LoadGenerator(session, signed_for, errors)


async def guarded(
    name: str, errors: list[str], work: Callable[[], Awaitable[dict[str, object]]]
) -> dict[str, object]:
    """Run one part of the bench; a failure is recorded in ``errors`` (the run goes on with
    the other parts) and the part's figures are then missing (an empty dict)."""
    try:
        return await work()
    except Exception as error:
        errors.append(f"{name}: {error!r}")
        progress(f"{name} failed: {error!r}")
        return {}


# ------------------------------------------------- what the gateway logs and says

RUNTIME_ZYGOTE, MODEL_ZYGOTE = "runtime-zygote", "model-zygote"
RUNTIME_READY = re.compile(r"runtime zygote (\d+) ready in ([\d.]+) ms, pre-imported (\d+) modules")
WORKER_LIMITS = re.compile(r"worker limits: (.*)")
# A runtime zygote start (pre-importing scikit-learn takes seconds) or a model's load.
ZYGOTE_DEADLINE_S = 120.0


def model_zygote_ready(endpoint: str) -> re.Pattern[str]:
    """The line the gateway logs once ``endpoint``'s model zygote serves (group 1: pid)."""
    return re.compile(rf"/{re.escape(endpoint)}: model zygote (\d+) ready")


def model_zygote_settled(endpoint: str) -> re.Pattern[str]:
    """Any line ending the start of ``endpoint``'s model zygote: ready, refused or failed."""
    return re.compile(
        rf"/{re.escape(endpoint)}: (model zygote \d+ ready|no model zygote|model zygote failed)"
    )


async def first_invocations(
    gen: LoadGenerator, server: Server, names: list[str], body: bytes, expect: bytes
) -> tuple[list[float], Counter[str]]:
    """Latencies (s) of the first request to each endpoint of ``names``, in turn, and the
    cold-start tiers reported. Each must be a cold start by the runtime zygote (else an
    error is recorded). A single invocation gives an endpoint no model zygote, so nothing
    starts in the background to compete with the next cold start."""
    latencies: list[float] = []
    tiers: Counter[str] = Counter()
    for name in names:
        answer = await gen.invoke(server.url, name, body, expect=expect)
        if answer is None:
            continue
        latencies.append(answer.seconds)
        tiers[answer.tier or "none"] += 1
        if answer.tier != RUNTIME_ZYGOTE:
            gen.errors.append(f"{name}: first request's {COLD_START_HEADER}: {answer.cold_start}")
    return latencies, tiers
