"""Our design decisions measured beside the ready-made alternatives we chose against, in
one run, as one JSON document on stdout.

``python loadtests/decisions.py [--quick]`` compares, row by row:

1. ``worker_start``: time to the first answer of a worker forked by our runtime zygote (and
   adopted by this process, as the pool does) beside a ``multiprocessing`` forkserver
   ``Process`` and a ``multiprocess`` one answering over a Pipe, each with the same
   modules preloaded; with a light preload and a heavy one (numpy, scikit-learn).
2. ``anyio_vs_asyncio``: the asyncio idioms the gateway uses beside anyio's, under uvloop.
3. ``otlp_encoding``: our OTLP span encoder beside the SDK's protobuf encoder.
4. ``prometheus_page``: our ``/metrics`` renderer beside the SDK's Prometheus reader with
   prometheus_client, and what a second metric reader costs each invocation.
5. ``sigv4_verify``: our verifier beside one built on botocore's signer.

The machine is noisy: the sides of a row run in alternation (each round starts with the
next side), and each figure is a median or percentile beside the other side's, with the
ratio ours/theirs. Read the ratios, not the absolute figures. A side whose package is not
installed (multiprocess, anyio, opentelemetry-exporter-prometheus) is reported as skipped.

Nothing goes over the network: the workers talk over socket pairs and pipes. Every process
started here (our zygote and its workers; the fork servers and resource trackers of
multiprocessing and multiprocess, and their children) is stopped by pid before the run
ends. Progress goes to stderr.

The rows live beside this script: ``decide_starts`` (1), ``decide_telemetry`` (3, 4);
``decisionlib`` holds the interleaving and the side-by-side figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

import uvloop
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from decide_starts import measure_worker_start
from decide_telemetry import measure_otlp, measure_prometheus
from decisionlib import (
    BODY,
    JSON_TYPE,
    USER_AGENT,
    interleaved,
    interleaved_async,
    per_call,
    progress,
    side_by_side,
)
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.edge.sigv4 import Credential, Verifier, parse_authorization


@dataclass(frozen=True)
class Plan:
    """How much each row measures: the full run, or ``--quick``'s handful."""

    starts: int
    rounds: int
    calls: int
    # Invocations whose spans make one OTLP batch.
    invocations: int
    heavy_preload: bool

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(starts=3, rounds=3, calls=50, invocations=10, heavy_preload=False)
        return cls(starts=30, rounds=15, calls=2000, invocations=100, heavy_preload=True)


# ------------------------------------------------------------- 2. anyio vs asyncio


async def _done() -> None:
    """An await that completes without suspending."""


class AsyncioBesideAnyio:
    """Each of the gateway's asyncio idioms and anyio's way to say the same, as blocks
    that return seconds per call (``calls`` calls, ``tasks`` tasks a group, ``thread_calls``
    calls on a thread). ``anyio`` is the module, imported by the caller."""

    def __init__(self, anyio: ModuleType, calls: int, tasks: int, thread_calls: int) -> None:
        self._anyio = anyio
        self._calls = calls
        self._tasks = tasks
        self._thread_calls = thread_calls

    async def _short_task(self) -> None:
        """A task that yields once and ends."""
        await asyncio.sleep(0)

    async def asyncio_timeout(self) -> float:
        started = time.perf_counter()
        for _ in range(self._calls):
            async with asyncio.timeout(10.0):
                await _done()
        return (time.perf_counter() - started) / self._calls

    async def anyio_fail_after(self) -> float:
        started = time.perf_counter()
        for _ in range(self._calls):
            with self._anyio.fail_after(10.0):
                await _done()
        return (time.perf_counter() - started) / self._calls

    async def asyncio_move_on(self) -> float:
        started = time.perf_counter()
        for _ in range(self._calls):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10.0):
                    await _done()
        return (time.perf_counter() - started) / self._calls

    async def anyio_move_on(self) -> float:
        started = time.perf_counter()
        for _ in range(self._calls):
            with self._anyio.move_on_after(10.0):
                await _done()
        return (time.perf_counter() - started) / self._calls

    async def asyncio_task_group(self) -> float:
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(self._tasks):
                group.create_task(self._short_task())
        return (time.perf_counter() - started) / self._tasks

    async def anyio_task_group(self) -> float:
        started = time.perf_counter()
        async with self._anyio.create_task_group() as group:
            for _ in range(self._tasks):
                group.start_soon(self._short_task)
        return (time.perf_counter() - started) / self._tasks

    async def asyncio_thread(self) -> float:
        started = time.perf_counter()
        for _ in range(self._thread_calls):
            await asyncio.to_thread(int)
        return (time.perf_counter() - started) / self._thread_calls

    async def anyio_thread(self) -> float:
        started = time.perf_counter()
        for _ in range(self._thread_calls):
            await self._anyio.to_thread.run_sync(int)
        return (time.perf_counter() - started) / self._thread_calls


async def measure_anyio(rounds: int, calls: int) -> dict[str, object]:
    """Row 2: what the gateway does with asyncio beside anyio's way, on the running
    (uvloop) loop: a deadline around an await that is already done (``asyncio.timeout``
    vs ``anyio.fail_after``), the same where the deadline passing is not an error
    (suppressed TimeoutError vs ``anyio.move_on_after``), spawning short tasks in a task
    group (``asyncio.TaskGroup`` vs anyio's), and a call on a worker thread
    (``asyncio.to_thread`` vs ``anyio.to_thread.run_sync``). anyio would be a layer over
    the same loop: the question is what the layer costs."""
    try:
        import anyio
        import anyio.to_thread
    except ImportError:
        return {"skipped": "anyio is not installed"}
    sides = AsyncioBesideAnyio(anyio, calls, 100, max(20, calls // 10))
    pairs = {
        "deadline_around_a_done_await": (
            sides.asyncio_timeout,
            sides.anyio_fail_after,
            "anyio.fail_after",
        ),
        "deadline_not_an_error": (
            sides.asyncio_move_on,
            sides.anyio_move_on,
            "anyio.move_on_after",
        ),
        "task_group_spawn_per_task": (
            sides.asyncio_task_group,
            sides.anyio_task_group,
            "anyio task group",
        ),
        "call_on_a_thread": (sides.asyncio_thread, sides.anyio_thread, "anyio.to_thread.run_sync"),
    }
    row: dict[str, object] = {
        "compares": "µs per call, asyncio (ours) vs anyio over it, under uvloop",
        "loop": type(asyncio.get_running_loop()).__module__,
    }
    for name, (ours, theirs, theirs_name) in pairs.items():
        progress(f"anyio vs asyncio: {name}")
        found = await interleaved_async({"ours": ours, "theirs": theirs}, rounds)
        row[name] = side_by_side(found["ours"], found["theirs"], theirs_name, "µs", 1e6)
    return row


# ------------------------------------------------------------- 5. SigV4 verification


def measure_sigv4(rounds: int, calls: int) -> dict[str, object]:
    """Row 5: verifying a typical InvokeEndpoint request signed by botocore, our
    ``Verifier`` (with its signing-key cache) beside a verifier built on botocore: the
    signed headers rebuilt into an AWSRequest, the expected signature computed by
    ``SigV4Auth``, compared in constant time. Both parse the Authorization header with
    our parser; ours also checks the date, its freshness and the payload header."""
    host, path, region = "127.0.0.1:8080", "/endpoints/demo/invocations", "us-east-1"
    keys = {"test": Credential("test", "test", "123456789012")}
    signed = AWSRequest(
        method="POST",
        url=f"http://{host}{path}",
        data=BODY,
        headers={"Content-Type": JSON_TYPE, "Accept": JSON_TYPE, "User-Agent": USER_AGENT},
    )
    SigV4Auth(Credentials("test", "test"), "sagemaker", region).add_auth(signed)
    # As aiohttp hands the headers to the gateway.
    received = CIMultiDict(signed.headers.items())
    received["Host"] = host
    received["Content-Length"] = str(len(BODY))
    headers = CIMultiDictProxy(received)
    now = time.time()
    verifier = Verifier(keys.get)

    def ours() -> None:
        parsed = parse_authorization(headers.get("Authorization"))
        verifier.verify(
            method="POST",
            raw_path=path,
            query_string="",
            headers=headers,
            body=BODY,
            parsed=parsed,
            now=now,
        )

    def with_botocore() -> None:
        parsed = parse_authorization(headers.get("Authorization"))
        credential = keys.get(parsed.access_key_id)
        if credential is None:
            raise RuntimeError("unknown key")
        request = AWSRequest(
            method="POST",
            url=f"http://{headers['Host']}{path}",
            data=BODY,
            headers={name: headers[name] for name in parsed.signed_headers},
        )
        request.context["timestamp"] = headers["X-Amz-Date"]
        auth = SigV4Auth(
            Credentials(credential.access_key_id, credential.secret_access_key),
            parsed.service,
            parsed.region,
        )
        expected = auth.signature(
            auth.string_to_sign(request, auth.canonical_request(request)), request
        )
        if not hmac.compare_digest(expected, parsed.signature):
            raise RuntimeError("botocore computed another signature")

    progress("SigV4 verification")
    calls = max(calls // 2, 50)
    found = interleaved(
        {"ours": lambda: per_call(ours, calls), "theirs": lambda: per_call(with_botocore, calls)},
        rounds,
    )
    return {
        "compares": "µs to verify one signed InvokeEndpoint request, ours vs botocore's signer",
        "signed_headers": parse_authorization(headers["Authorization"]).signed_headers,
        "verify": side_by_side(found["ours"], found["theirs"], "botocore SigV4Auth", "µs", 1e6),
    }


# ------------------------------------------------------------------------- the run


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


async def measure_all(plan: Plan) -> dict[str, object]:
    """Every row, in order; the in-process rows run on the loop between awaits."""
    return {
        "worker_start": await measure_worker_start(plan.starts, plan.heavy_preload),
        "anyio_vs_asyncio": await measure_anyio(plan.rounds, plan.calls),
        "otlp_encoding": measure_otlp(plan.rounds, plan.invocations),
        "prometheus_page": measure_prometheus(plan.rounds, plan.calls),
        "sigv4_verify": measure_sigv4(plan.rounds, plan.calls),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a handful of iterations per row")
    args = parser.parse_args(argv)
    plan = Plan.of(args.quick)
    started = time.perf_counter()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        rows = runner.run(measure_all(plan))
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "versions": {
            name: _version(name)
            for name in (
                "multiprocess",
                "anyio",
                "opentelemetry-sdk",
                "opentelemetry-exporter-prometheus",
                "prometheus-client",
            )
        },
        "rows": rows,
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
