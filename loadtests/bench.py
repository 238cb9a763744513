"""Benchmark: the gateway against references measured in the same run, as one JSON document.

``python loadtests/bench.py [--quick] [--out FILE]`` runs, one after the other, gateways on
temporary state (and the bare echo server beside the first) and reports, each with its target
and whether it was met:

- ``cold_start_from_zero``: the first request to each of N echo endpoints (no worker, no
  model zygote: the runtime zygote forks the worker) beside ``python -c pass``;
- ``cold_start_model_zygote``: with workers reaped after 0.3 s idle while the endpoint's model
  zygote lives on, the next request after each reap, beside ``python -c pass``;
- ``cold_start_sklearn_demo``: the demo iris classifier cold-started from zero by a gateway
  whose runtime zygote learned its imports in an earlier run, beside a fresh interpreter
  importing numpy, scikit-learn and joblib;
- ``warm_latency_c1`` and ``throughput_c16``: against a bare aiohttp+uvloop echo server;
- ``burst``: 100 concurrent requests to a zero-scaled endpoint;
- ``memory``: USS of the idle gateway, of warm workers and of the zygotes;
- ``cpu_share``: CPU time of 1024 MB and 2048 MB workers spinning on one core together, and
  of the 1024 MB worker alone;
- ``telemetry_cost``: throughput at concurrency 16 and the cold-start p50 from zero of a
  gateway exporting traces and metrics over OTLP/HTTP to a local collector process,
  against the same gateway with no ``OTEL_*`` variable at all, both running at once and
  measured in alternation.

A missed target is reported, not fatal. Every answer must be right (200 with the expected
body, cold starts naming their tier); a run with errors says so (``ok``) and exits 1.
Progress and the servers' logs go to stderr; every server is stopped (SIGTERM, then SIGKILL)
however the run ends, and the bench talks to 127.0.0.1 only.
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
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from statistics import mean, median

import uvloop
from benchlib import (
    BODY,
    MODEL_ZYGOTE,
    ROOT,
    RUNTIME_READY,
    WORKER_LIMITS,
    ZYGOTE_DEADLINE_S,
    Collector,
    Comparison,
    Endpoint,
    LoadGenerator,
    Server,
    Target,
    children,
    client,
    cmdline,
    collecting,
    compare,
    first_invocations,
    gateway_argv,
    gateway_config,
    guarded,
    is_gone,
    model_zygote_ready,
    progress,
    run_once,
    serving,
    spawn_times,
    statistic,
    uss_mb,
    wait_until,
)
from soak import run_soak

from gateway.control.demo import INFERENCE_PY

HERE = Path(__file__).resolve().parent
ECHO_MODEL = ROOT / "tests" / "models" / "echo"
BEHAVE_MODEL = ROOT / "tests" / "models" / "behave"
ECHO_PID_MODEL = HERE / "models" / "echo_pid"
SPIN_MODEL = HERE / "models" / "spin"
BARE_ECHO = HERE / "bare_echo.py"
BARE_NAME = "aiohttp+uvloop bare echo server"
PYTHON = Path(sys.executable).name
SPAWN_NAME = f"{PYTHON} -c pass (spawn and wait)"
SKLEARN_IMPORT = "import numpy, sklearn.linear_model, joblib"
SKLEARN_NAME = f"{PYTHON} -c '{SKLEARN_IMPORT}' (spawn and wait)"
IRIS_ROW, IRIS_ANSWER = b"[[5.1, 3.5, 1.4, 0.2]]", b"[0]"
PID = re.compile(rb"\d+")
JSON_OBJECT = re.compile(rb"\{.*\}")

WARM, BEHAVE, SPIN = "bench-warm", "bench-behave", "bench-spin-{}"
COLD, IRIS = "bench-cold-{:02d}", "bench-iris-{:02d}"
TRACED_COLD = "bench-otel-cold-{:02d}"
ZYGOTE, BURST = "bench-zygote", "bench-burst"
SPIN_MEMORY = (1024, 2048)

# A worker's reaping after its idle timeout and training the demo model, with wide margins.
REAP_DEADLINE_S = 30.0
TRAIN_DEADLINE_S = 300.0
# A runtime zygote that learned the demo's imports pre-imports more than its own few.
LEARNED_IMPORTS_MIN = 5
# Sequential calls that settle a worker before its memory is measured.
SETTLE_CALLS = 20

TARGETS = {
    "cold_start_from_zero": Target(high=0.7),
    "cold_start_model_zygote": Target(high=0.5),
    "cold_start_sklearn_demo": Target(high=0.05),
    "warm_latency_c1": Target(high=2.5),
    "throughput_c16": Target(low=0.3),
    "warm_worker_uss": Target(high=10.0),
    "gateway_idle_uss": Target(high=150.0),
    "cpu_share_ratio": Target(low=1.6, high=2.4),
    "cpu_share_alone": Target(low=0.45, high=0.70),
}
BURST_P99_MS = 1000.0
# The share of throughput, and of cold-start p50, that exporting telemetry may cost.
TELEMETRY_LOST_MAX = 0.10
# Export often enough that the measured runs pay for it (SDK defaults: 5 s and 60 s).
TRACED_ENV = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
}
EXPORTING_TRACES = re.compile(r"exporting traces over OTLP")
# Where each judged figure sits in the report (dotted: nested).
JUDGED = (
    "cold_start_from_zero",
    "cold_start_model_zygote",
    "cold_start_sklearn_demo",
    "warm_latency_c1",
    "throughput_c16",
    "burst",
    "memory.gateway_idle_uss",
    "memory.warm_worker_uss",
    "cpu_share.together",
    "cpu_share.alone_1024",
    "telemetry_cost",
)


@dataclass(frozen=True)
class Plan:
    """How much load each measurement applies."""

    warm_up: int
    warm_requests: int
    throughput_s: float
    cold_endpoints: int
    zygote_samples: int
    sklearn_endpoints: int
    spin_s: float
    telemetry_rounds: int
    telemetry_cold_endpoints: int
    burst: int = 100
    concurrency: int = 16
    # The gateways' [sandbox] mode: "off" measures what the sandbox costs.
    sandbox: str = "auto"


FULL = Plan(
    warm_up=200,
    warm_requests=2000,
    throughput_s=5.0,
    cold_endpoints=20,
    zygote_samples=20,
    sklearn_endpoints=10,
    spin_s=3.0,
    telemetry_rounds=10,
    telemetry_cold_endpoints=40,
)
QUICK = Plan(
    warm_up=50,
    warm_requests=200,
    throughput_s=1.0,
    cold_endpoints=5,
    zygote_samples=5,
    sklearn_endpoints=3,
    spin_s=1.0,
    telemetry_rounds=2,
    telemetry_cold_endpoints=5,
)


def judged(name: str, figure: dict[str, object], value: object, what: str) -> dict[str, object]:
    """``figure`` with the target ``name`` stated and judged on ``value``."""
    return {**figure, **TARGETS[name].judge(value, what)}


def p50_ratio(figure: dict[str, object]) -> object:
    p50 = figure.get("p50")
    return p50.get("ratio") if isinstance(p50, dict) else None


async def rate(gen: LoadGenerator, server: str, plan: Plan) -> float:
    """Answers per second of the warm endpoint at ``plan.concurrency`` for
    ``plan.throughput_s``, its workers brought up first."""
    await bring_up(gen, server, plan)
    return await answers_per_s(gen, server, plan, plan.throughput_s)


async def bring_up(gen: LoadGenerator, server: str, plan: Plan) -> None:
    """Bursts of ``plan.concurrency`` requests: as many warm workers, before a clock
    starts."""
    for _ in range(3):
        await asyncio.gather(*(gen.invoke(server, WARM) for _ in range(plan.concurrency)))


async def answers_per_s(gen: LoadGenerator, server: str, plan: Plan, seconds: float) -> float:
    """Answers per second of the warm endpoint at ``plan.concurrency`` for ``seconds``."""

    async def one_client(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            done += await gen.invoke(server, WARM) is not None
        return done

    start = time.perf_counter()
    deadline = start + seconds
    counts = await asyncio.gather(*(one_client(deadline) for _ in range(plan.concurrency)))
    return sum(counts) / (time.perf_counter() - start)


# ------------------------------------------------------- gateway 1: defaults


@dataclass
class MainBench:
    """The gateway with default pool settings beside the bare echo server."""

    ours: Server
    bare: Server
    plan: Plan
    errors: list[str]

    async def warm_latency(self) -> dict[str, object]:
        """Sequential invocations of the warm endpoint and of the bare server, one each in
        turn (which goes first alternating), so that a drift of the machine weighs on
        both alike; ``plan.warm_up`` untimed ones first. A client each, on one kept-alive
        connection."""
        warm_up, timed = self.plan.warm_up, self.plan.warm_requests
        found: list[list[float]] = [[], []]
        async with (
            client(self.ours.url, self.errors, 1) as ours,
            client(self.bare.url, self.errors, 1) as bare,
        ):
            targets = ((ours, self.ours.url), (bare, self.bare.url))
            for turn in range(warm_up + timed):
                for index in (0, 1) if turn % 2 == 0 else (1, 0):
                    gen, url = targets[index]
                    answer = await gen.invoke(url, WARM)
                    if turn >= warm_up and answer is not None:
                        found[index].append(answer.seconds)
        figure = {**compare(found[0], found[1], "p50 p99", BARE_NAME), "requests": timed}
        return {
            "warm_latency_c1": judged("warm_latency_c1", figure, p50_ratio(figure), "p50 ratio")
        }

    async def throughput(self) -> dict[str, object]:
        concurrency = self.plan.concurrency
        async with client(self.ours.url, self.errors, concurrency) as gen:
            mine, theirs = [await rate(gen, s.url, self.plan) for s in (self.ours, self.bare)]
        comparison = Comparison(mine, theirs, BARE_NAME, "requests/s")
        figure = judged("throughput_c16", comparison.as_json(), comparison.ratio, "ratio")
        return {f"throughput_c{concurrency}": figure}

    async def cold_start_from_zero(self) -> dict[str, object]:
        """The first request to each of ``plan.cold_endpoints`` zero-scaled endpoints, beside
        starting an interpreter that does nothing."""
        count = self.plan.cold_endpoints
        names = [COLD.format(i) for i in range(count)]
        async with client(self.ours.url, self.errors, 1) as gen:
            mine, tiers = await first_invocations(gen, self.ours, names, BODY, BODY)
        spawns = await spawn_times([sys.executable, "-c", "pass"], count)
        figure = {**compare(mine, spawns, "p50 p90 max", SPAWN_NAME), "endpoints": count}
        figure["tiers"] = dict(tiers)
        return {
            "cold_start_from_zero": judged(
                "cold_start_from_zero", figure, p50_ratio(figure), "p50 ratio"
            )
        }

    async def memory(self, runtime_zygote: int) -> dict[str, object]:
        """USS of behave's first worker (forked by the runtime zygote), of a second one
        (forked by its model zygote while the first is busy), and of both zygotes."""
        async with client(self.ours.url, self.errors, 2) as gen:
            first = await gen.invoke(self.ours.url, BEHAVE, b"pid", expect=PID)
            if first is None:
                raise RuntimeError("behave did not answer its pid")
            # From its second invocation an endpoint has traffic, and a model zygote.
            await gen.invoke(self.ours.url, BEHAVE, b"pid", expect=first.body)
            ready = await self.ours.log.wait_for(
                model_zygote_ready(BEHAVE), within_s=ZYGOTE_DEADLINE_S
            )
            for _ in range(SETTLE_CALLS):
                await gen.invoke(self.ours.url, BEHAVE, b"pid", expect=first.body)
            # Two overlapping requests: the idle first worker takes one, a cold start the other.
            pair = await asyncio.gather(
                *(gen.invoke(self.ours.url, BEHAVE, b"sleeppid:0.3", expect=PID) for _ in "ab")
            )
        forked = [a for a in pair if a is not None and a.tier is not None]
        if not forked:
            raise RuntimeError("two overlapping requests to behave did not start a second worker")
        zygotes = {
            pid
            for pid in children(self.ours.pid)
            if "workers.child.zygote" in " ".join(cmdline(pid))
        }
        model_zygote = int(ready.group(1))
        if not {runtime_zygote, model_zygote} <= zygotes:
            self.errors.append(
                f"zygotes {runtime_zygote}, {model_zygote} not among {sorted(zygotes)}"
            )
        first_pid, forked_pid = first.worker_pid, forked[0].worker_pid
        if first_pid is None or forked_pid is None:
            raise RuntimeError("a cold start's answer did not name its worker")
        warm = uss_mb(forked_pid)
        return {
            "warm_worker_uss": {
                "mb": warm,
                "tier": forked[0].tier,
                **TARGETS["warm_worker_uss"].judge(warm, "MB"),
            },
            "first_worker_uss": {"mb": uss_mb(first_pid), "tier": first.tier},
            "runtime_zygote_uss": uss_mb(runtime_zygote),
            "model_zygote_uss": uss_mb(model_zygote),
        }

    async def cpu_share(self) -> dict[str, object]:
        """Spin on the 1024 and 2048 MB endpoints at once, both pinned to one core, then on
        the 1024 MB one alone."""
        cpu = min(os.sched_getaffinity(0))
        low, high = (SPIN.format(mb) for mb in SPIN_MEMORY)
        async with client(self.ours.url, self.errors, 2) as gen:

            async def spin_on(endpoint: str, seconds: float) -> dict[str, float]:
                body = json.dumps({"seconds": seconds, "cpu": cpu}).encode()
                answer = await gen.invoke(self.ours.url, endpoint, body, expect=JSON_OBJECT)
                if answer is None:
                    raise RuntimeError(f"{endpoint} did not answer its spin")
                return dict(json.loads(answer.body))

            await asyncio.gather(spin_on(low, 0.0), spin_on(high, 0.0))
            both = await asyncio.gather(
                spin_on(low, self.plan.spin_s), spin_on(high, self.plan.spin_s)
            )
            alone = await spin_on(low, self.plan.spin_s)
        ratio = round(both[1]["cpu_s"] / both[0]["cpu_s"], 3) if both[0]["cpu_s"] > 0 else None
        alone_ratio = round(alone["cpu_s"] / alone["wall_s"], 3)
        limits = self.ours.log.search(WORKER_LIMITS)
        return {
            "cpu_limits_mode": limits.group(1).strip() if limits else None,
            "pinned_cpu": cpu if all(answer["pinned"] for answer in both) else None,
            "together": {
                **{
                    f"cpu_s_{mb}": round(a["cpu_s"], 3)
                    for mb, a in zip(SPIN_MEMORY, both, strict=True)
                },
                "wall_s": round(max(a["wall_s"] for a in both), 3),
                "ratio": ratio,
                **TARGETS["cpu_share_ratio"].judge(ratio, "cpu_s 2048 / cpu_s 1024"),
            },
            "alone_1024": {
                "cpu_s": round(alone["cpu_s"], 3),
                "wall_s": round(alone["wall_s"], 3),
                "ratio": alone_ratio,
                **TARGETS["cpu_share_alone"].judge(alone_ratio, "cpu_s / wall_s"),
            },
        }


def main_endpoints(plan: Plan) -> list[Endpoint]:
    cold = [Endpoint(COLD.format(i), ECHO_MODEL) for i in range(plan.cold_endpoints)]
    spin = [Endpoint(SPIN.format(mb), SPIN_MODEL, 1, mb) for mb in SPIN_MEMORY]
    return [
        Endpoint(WARM, ECHO_MODEL, plan.concurrency),
        *cold,
        Endpoint(BEHAVE, BEHAVE_MODEL, 2),
        *spin,
    ]


async def main_gateway(plan: Plan, folder: Path, errors: list[str]) -> dict[str, object]:
    """Everything measured on a gateway with default pool settings."""
    config = gateway_config(
        folder / "main.toml", folder / "main-state", main_endpoints(plan), {}, plan.sandbox
    )
    progress("starting the gateway and the bare echo server")
    async with (
        serving(gateway_argv(config), "gateway") as ours,
        serving([sys.executable, str(BARE_ECHO)], "bare echo") as bare,
    ):
        runtime = await ours.log.wait_for(RUNTIME_READY, within_s=ZYGOTE_DEADLINE_S)
        idle = uss_mb(ours.pid)
        bench = MainBench(ours, bare, plan, errors)
        progress(f"warm latency at concurrency 1 ({plan.warm_requests} requests each)")
        results = await guarded("warm_latency_c1", errors, bench.warm_latency)
        progress(f"throughput at concurrency {plan.concurrency} ({plan.throughput_s:g} s each)")
        results |= await guarded("throughput", errors, bench.throughput)
        progress(f"cold starts from zero on {plan.cold_endpoints} endpoints")
        results |= await guarded("cold_start_from_zero", errors, bench.cold_start_from_zero)
        progress("memory of workers and zygotes")
        memory = await guarded("memory", errors, lambda: bench.memory(int(runtime.group(1))))
        progress(f"cpu shares ({plan.spin_s:g} s of spinning, twice)")
        results["cpu_share"] = await guarded("cpu_share", errors, bench.cpu_share)
    gateway_idle = {"mb": idle, **TARGETS["gateway_idle_uss"].judge(idle, "MB")}
    results["memory"] = {"unit": "MB", "gateway_idle_uss": gateway_idle, **memory}
    return results


# ------------------------------------------------ gateway 2: short keep-alive


@dataclass
class ShortIdleBench:
    """A gateway that reaps workers 0.3 s after their last request but keeps model zygotes."""

    ours: Server
    plan: Plan
    errors: list[str]
    burst_pids: set[int] = field(default_factory=set)

    async def model_zygote_starts(self) -> dict[str, object]:
        """After each reap of the endpoint's worker, the next request: a fork of its model
        zygote. Samples served by another tier are counted, not timed."""
        url, samples = self.ours.url, self.plan.zygote_samples
        latencies: list[float] = []
        others: Counter[str] = Counter()
        async with client(url, self.errors, 1) as gen:
            # Its first answer is a cold start, which names the worker's host pid.
            answer = await gen.invoke(url, ZYGOTE)
            # From its second invocation an endpoint has traffic, and a model zygote.
            await gen.invoke(url, ZYGOTE)
            await self.ours.log.wait_for(model_zygote_ready(ZYGOTE), within_s=ZYGOTE_DEADLINE_S)
            for _ in range(samples):
                if answer is None:
                    break  # the wrong answer is recorded; no worker to wait for
                pid = answer.worker_pid
                if pid is None:
                    raise RuntimeError(f"{ZYGOTE} answered without its worker's pid")
                await wait_until(
                    partial(is_gone, pid), within_s=REAP_DEADLINE_S, what=f"worker {pid} reaped"
                )
                answer = await gen.invoke(url, ZYGOTE)
                if answer is not None and answer.tier == MODEL_ZYGOTE:
                    latencies.append(answer.seconds)
                elif answer is not None:
                    others[answer.tier or "warm"] += 1
        spawns = await spawn_times([sys.executable, "-c", "pass"], samples)
        figure = {
            **compare(latencies, spawns, "p50 p90 max", SPAWN_NAME),
            "samples": len(latencies),
        }
        figure["other_tiers"] = dict(others)
        name = "cold_start_model_zygote"
        return {name: judged(name, figure, p50_ratio(figure) if latencies else None, "p50 ratio")}

    async def burst(self) -> dict[str, object]:
        """``plan.burst`` concurrent requests to a zero-scaled endpoint, on as many
        connections; the workers that answered are kept in ``burst_pids``."""
        url, count = self.ours.url, self.plan.burst
        async with client(url, self.errors, count) as gen:
            answers = await asyncio.gather(*(gen.post(url, BURST) for _ in range(count)))
        statuses = Counter(str(a.status) if a is not None else "no answer" for a in answers)
        got = [a for a in answers if a is not None]
        for answer in got:
            if answer.status == 200 and answer.body != BODY:
                self.errors.append(f"{BURST}: wrong answer {answer.body[:200]!r}")
        latencies = [a.seconds for a in got]
        p50, p99 = (round(statistic(latencies, s) * 1e3, 3) for s in ("p50", "p99"))
        self.burst_pids = {a.worker_pid for a in got if a.worker_pid is not None}
        figure = {
            "requests": count,
            "statuses": dict(statuses),
            "tiers": dict(Counter(a.tier or "warm" for a in got)),
            "workers": len(self.burst_pids),
            "p50_ms": p50,
            "p99_ms": p99,
            "target": f"all 200 and p99 < {BURST_P99_MS:g} ms",
            "met": statuses == {"200": count} and p99 < BURST_P99_MS,
        }
        return {"burst": figure}

    async def memory_after_burst(self) -> dict[str, object]:
        """The gateway's USS once every worker of the burst has been reaped."""
        pids = self.burst_pids
        await wait_until(
            lambda: all(map(is_gone, pids)), within_s=REAP_DEADLINE_S, what="the burst reaped"
        )
        return {"memory": {"gateway_after_burst_uss": uss_mb(self.ours.pid)}}


async def short_idle_gateway(plan: Plan, folder: Path, errors: list[str]) -> dict[str, object]:
    endpoints = [Endpoint(ZYGOTE, ECHO_PID_MODEL, 1), Endpoint(BURST, ECHO_PID_MODEL, plan.burst)]
    pool = {"idle_timeout_s": 0.3, "zygote_idle_timeout_s": 600.0}
    config = gateway_config(
        folder / "short.toml", folder / "short-state", endpoints, pool, plan.sandbox
    )
    progress("starting a gateway with a 0.3 s worker keep-alive")
    async with serving(gateway_argv(config), "gateway-short") as ours:
        await ours.log.wait_for(RUNTIME_READY, within_s=ZYGOTE_DEADLINE_S)
        bench = ShortIdleBench(ours, plan, errors)
        progress(f"cold starts from a model zygote ({plan.zygote_samples} samples)")
        results = await guarded("cold_start_model_zygote", errors, bench.model_zygote_starts)
        progress(f"a burst of {plan.burst} concurrent requests")
        results |= await guarded("burst", errors, bench.burst)
        results |= await guarded("memory after the burst", errors, bench.memory_after_burst)
    return results


# ------------------------------------------- gateways 3 and 4: the sklearn demo


async def train_demo(model_dir: Path) -> None:
    """The demo's handler module and its model, trained by the demo's own command line."""
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.py").write_text(INFERENCE_PY)
    argv = [sys.executable, "-m", "gateway.control.demo", "--train", str(model_dir)]
    _, status, stderr = await run_once(argv, within_s=TRAIN_DEADLINE_S)
    if status != 0:
        raise RuntimeError(f"training the demo model failed ({status}): {stderr[-1000:]!r}")


async def sklearn_demo(plan: Plan, folder: Path, errors: list[str]) -> dict[str, object]:
    """Phase A teaches a gateway's runtime zygote the demo's imports (one first load);
    phase B, a new gateway on the same state, cold-starts the other endpoints from zero."""
    model_dir, state = folder / "iris", folder / "iris-state"
    progress("training the demo model")
    await train_demo(model_dir)
    names = [IRIS.format(i) for i in range(plan.sklearn_endpoints + 1)]
    endpoints = [Endpoint(name, model_dir, 1) for name in names]
    config = gateway_config(folder / "iris.toml", state, endpoints, {}, plan.sandbox)
    progress("phase A: the demo's first load teaches the runtime zygote its imports")
    async with serving(gateway_argv(config), "gateway-iris-a") as ours:
        await ours.log.wait_for(RUNTIME_READY, within_s=ZYGOTE_DEADLINE_S)
        async with client(ours.url, errors, 1) as gen:
            first = await gen.invoke(ours.url, names[0], IRIS_ROW, expect=IRIS_ANSWER)
    # Learned per account: the demo's is the only one.
    learned = json.loads(next(state.glob("learned-imports*.json")).read_text())
    progress(f"phase B: cold starts of {plan.sklearn_endpoints} demo endpoints")
    async with serving(gateway_argv(config), "gateway-iris-b") as ours:
        runtime = await ours.log.wait_for(RUNTIME_READY, within_s=ZYGOTE_DEADLINE_S)
        pre_imported = int(runtime.group(3))
        if pre_imported < LEARNED_IMPORTS_MIN:
            errors.append(f"the runtime zygote pre-imported {pre_imported} modules after learning")
        async with client(ours.url, errors, 1) as gen:
            mine, tiers = await first_invocations(gen, ours, names[1:], IRIS_ROW, IRIS_ANSWER)
    imports = await spawn_times([sys.executable, "-c", SKLEARN_IMPORT], plan.sklearn_endpoints)
    figure = {
        **compare(mine, imports, "p50 p90 max", SKLEARN_NAME),
        "endpoints": plan.sklearn_endpoints,
        "tiers": dict(tiers),
        "learned_imports": len(learned),
        "runtime_zygote_pre_imported": pre_imported,
        "runtime_zygote_ready_ms": float(runtime.group(2)),
        "first_load_ms": round(first.seconds * 1e3, 3) if first is not None else None,
    }
    name = "cold_start_sklearn_demo"
    return {name: judged(name, figure, p50_ratio(figure), "p50 ratio")}


# ------------------------------------------- gateways 5 to 7: the cost of telemetry


def gateway_env(collector: Collector | None) -> dict[str, str]:
    """Our environment without any ``OTEL_*`` variable (the gateway then makes no spans),
    plus, given ``collector``, the variables that export traces and metrics to it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    if collector is not None:
        env |= {**TRACED_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    return env


@contextlib.asynccontextmanager
async def telemetry_gateway(
    plan: Plan, folder: Path, name: str, collector: Collector | None, errors: list[str]
) -> AsyncIterator[Server]:
    """A gateway named ``name`` on fresh state with the warm endpoint and
    ``plan.telemetry_cold_endpoints`` echo endpoints never called, exporting to
    ``collector`` (None: no telemetry variable at all). Records an error if its log
    disagrees on whether traces are exported."""
    endpoints = [
        Endpoint(WARM, ECHO_MODEL, plan.concurrency),
        *(
            Endpoint(TRACED_COLD.format(i), ECHO_MODEL)
            for i in range(plan.telemetry_cold_endpoints)
        ),
    ]
    config = gateway_config(
        folder / f"{name}.toml", folder / f"{name}-state", endpoints, {}, plan.sandbox
    )
    async with serving(gateway_argv(config), name, gateway_env(collector)) as ours:
        await ours.log.wait_for(RUNTIME_READY, within_s=ZYGOTE_DEADLINE_S)
        exporting = ours.log.search(EXPORTING_TRACES) is not None
        if exporting != (collector is not None):
            errors.append(f"{name}: logged exporting traces: {exporting}, against its environment")
        yield ours


async def telemetry_cost(plan: Plan, folder: Path, errors: list[str]) -> dict[str, object]:
    """Two gateways alike but for the environment, running at once: one with no
    ``OTEL_*`` variable, one exporting traces and metrics to a local collector. The load
    alternates between them, so that a drift of the machine (a neighbour's load, a
    frequency change) weighs on both alike: the first request to each cold endpoint,
    one gateway then the other; then ``plan.telemetry_rounds`` throughput windows each,
    in the order off, traced, traced, off, off, traced, ... An idle gateway costs the
    other nothing: its workers wait on their sockets. The throughput lost is judged on
    the median of the rounds' traced/off ratios."""
    window_s = plan.throughput_s / 4
    cold_s: dict[str, list[float]] = {"off": [], "traced": []}
    rates: dict[str, list[float]] = {"off": [], "traced": []}
    async with collecting() as collector:
        async with (
            telemetry_gateway(plan, folder, "gateway-otel-off", None, errors) as off,
            telemetry_gateway(plan, folder, "gateway-otel-traced", collector, errors) as traced,
            # A client each: requests are signed for their host.
            client(off.url, errors, plan.concurrency) as off_gen,
            client(traced.url, errors, plan.concurrency) as traced_gen,
        ):
            servers = {"off": (off_gen, off), "traced": (traced_gen, traced)}
            for turn in range(plan.telemetry_cold_endpoints):
                for kind in alternating(turn):
                    gen, server = servers[kind]
                    cold = [TRACED_COLD.format(turn)]
                    latencies, _ = await first_invocations(gen, server, cold, BODY, BODY)
                    cold_s[kind] += latencies
            for gen, server in servers.values():
                await bring_up(gen, server.url, plan)
            for turn in range(plan.telemetry_rounds):
                for kind in alternating(turn):
                    gen, server = servers[kind]
                    rates[kind].append(await answers_per_s(gen, server.url, plan, window_s))
            # Checked before the stop: the final flush alone would not have cost the runs.
            if (await collector.received())["/v1/traces"].requests == 0:
                errors.append("telemetry_cost: no spans reached the collector while measured")
        # Counted after the traced gateway's stop, which flushes what it still held.
        received = await collector.as_json()
    off_rate, traced_rate = mean(rates["off"]), mean(rates["traced"])
    off_p50, traced_p50 = (statistic(cold_s[kind], "p50") for kind in ("off", "traced"))
    # Judged on the median over the rounds of traced/off (each round's two windows are
    # next to each other in time): a window a neighbour's load hit moves it little.
    ratios = [
        traced / off for traced, off in zip(rates["traced"], rates["off"], strict=True) if off > 0
    ]
    rate_lost = round(1 - median(ratios), 4) if ratios else None
    p50_lost = round(traced_p50 / off_p50 - 1, 4) if off_p50 > 0 else None
    figure = {
        "throughput": {
            "traced": round(traced_rate, 3),
            "off": round(off_rate, 3),
            "windows": {kind: [round(value, 3) for value in rates[kind]] for kind in rates},
            "round_ratios": [round(ratio, 4) for ratio in ratios],
            "window_s": window_s,
            "unit": "requests/s",
            "concurrency": plan.concurrency,
            "lost": rate_lost,
        },
        "cold_start_p50_ms": {
            "traced": round(traced_p50 * 1e3, 3),
            "off": round(off_p50 * 1e3, 3),
            "endpoints": plan.telemetry_cold_endpoints,
            "lost": p50_lost,
        },
        "collector": received,
        "target": f"lost < {TELEMETRY_LOST_MAX:.0%} for both",
        "met": all(
            isinstance(lost, float) and lost < TELEMETRY_LOST_MAX for lost in (rate_lost, p50_lost)
        ),
    }
    return {"telemetry_cost": figure}


def alternating(turn: int) -> tuple[str, str]:
    """Which gateway goes first in this turn: off, traced, then traced, off, and so on."""
    return ("off", "traced") if turn % 2 == 0 else ("traced", "off")


# ------------------------------------------------------------------------ run


async def run(plan: Plan) -> dict[str, object]:
    # SIGTERM cancels the run, so the servers are still stopped on the way out.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="coldbrew-bench-") as name:
        folder = Path(name)
        results = await guarded("main gateway", errors, lambda: main_gateway(plan, folder, errors))
        short = await guarded(
            "short keep-alive gateway", errors, lambda: short_idle_gateway(plan, folder, errors)
        )
        results |= await guarded("sklearn demo", errors, lambda: sklearn_demo(plan, folder, errors))
        progress("the cost of telemetry: gateways off and traced, measured in alternation")
        results |= await guarded(
            "telemetry cost", errors, lambda: telemetry_cost(plan, folder, errors)
        )
    # The memory figures come from two gateways.
    memory = {**as_dict(results.get("memory")), **as_dict(short.pop("memory", None))}
    results |= {**short, "memory": memory}
    return {
        **results,
        "targets": targets_met(results),
        "errors": {"count": len(errors), "samples": errors[:10]},
        "ok": not errors,
    }


def as_dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def targets_met(results: dict[str, object]) -> dict[str, bool]:
    """Every target's verdict in one place (a missing figure did not meet its target)."""
    verdicts: dict[str, bool] = {}
    for name in JUDGED:
        figure: object = results
        for key in name.split("."):
            figure = figure.get(key) if isinstance(figure, dict) else None
        verdicts[name] = isinstance(figure, dict) and figure.get("met") is True
    return verdicts


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
    parser.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="instead of the figures, soak a gateway with mixed load for SECONDS (see soak.py)",
    )
    parser.add_argument(
        "--sandbox",
        choices=("auto", "on", "off"),
        default="auto",
        help="the gateways' [sandbox] mode (default auto: on where it can be built)",
    )
    args = parser.parse_args(argv)
    plan = replace(QUICK if args.quick else FULL, sandbox=args.sandbox)
    info = machine()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            results = runner.run(run(plan) if args.soak is None else run_soak(args.soak))
        except asyncio.CancelledError:
            progress("stopped by SIGTERM; every server it started has been stopped")
            return 1
    settings = {"plan": asdict(plan)} if args.soak is None else {}
    text = json.dumps({"machine": info, **settings, **results}, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if results.get("ok", as_dict(results.get("soak")).get("ok")) else 1


if __name__ == "__main__":
    sys.exit(main())
