"""Row 1 of ``decisions.py``: starting a worker that can answer a request, our runtime
zygote (``workers/pool/zygote_link.py``: the zygote forks, this process adopts the
worker, as the pool does) beside a ``Process`` of the forkserver of ``multiprocessing``,
and of ``multiprocess`` when it is installed, answering over a Pipe.

Every side's worker loads the echo model with our ``ModelHandler`` and answers one
request; the servers preload the same modules (our worker modules and json, then numpy
and scikit-learn for the heavy preload). Each start is timed from asking for the worker
to its answer, the sides taking turns.

Module-level imports are all of the standard library, and light: the fork servers
preload this module (their children's target, ``answer_one_request``, is here), where it
must weigh no more than what our zygote preloads.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decisionlib import (
    BODY,
    JSON_TYPE,
    ROOT,
    interleaved_async,
    percentile,
    progress,
    ratio,
)

if TYPE_CHECKING:
    from types import ModuleType

    from workers.pool.zygote_link import ZygoteLink

HERE = Path(__file__).resolve().parent
ECHO_MODEL = ROOT / "tests" / "models" / "echo"
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
# Deadlines for a worker's start, its answer and its exit, far above what each takes.
SETUP_DEADLINE_S = 60.0
ANSWER_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0
HEAVY_PRELOAD = ("numpy", "sklearn.linear_model", "sklearn.ensemble")

WHAT_THEY_CANNOT_EXPRESS = {
    "forkserver": [
        "one fork server per process, with one preload set fixed when it starts: no model "
        "zygote per endpoint (a process that holds a loaded model and forks its workers), "
        "and no imports learned at run time added to a running server",
        "its children are the fork server's, not the gateway's: no pidfd wait and reap, no "
        "death signal tied to the gateway, no session of their own to kill as a group",
        "it pickles the target and its arguments for every start",
        "children share the server's stdout and stderr: no log channel per worker, so no "
        "output attributed to the request it served",
        "it forks whatever threads the server has: no refusal to fork a threaded server",
        "Python 3.11's forkserver never preloads __main__ and ignores the parent's sys.path: "
        "a program started by the path of its script runs the script again in every child "
        "(measured here without that cost, as a `python -m package` program is)",
    ],
    "multiprocess": [
        "the same fork server as multiprocessing, so the same limits; it serialises with "
        "dill (lambdas, closures), which nothing here needs",
    ],
}


def answer_one_request(conn: Any, model_dir: str) -> None:
    """A forkserver-started worker's whole life: load the model as our workers do, say ready,
    answer one request that comes over the pipe, exit."""
    from workers.child.handler import ModelHandler

    handler = ModelHandler.load(Path(model_dir))
    conn.send("ready")
    body, content_type, accept = conn.recv()
    conn.send_bytes(handler.invoke(body, content_type, accept).body)
    conn.close()


@contextlib.contextmanager
def _main_left_alone() -> Iterator[None]:
    """Start a forkserver process without telling it the main script's path.

    Told the path, the child runs the whole main script again before its target: Python
    3.11's forkserver never preloads ``__main__`` (it is not handed the path), so every
    child pays for it. A program run as ``python -m package`` (its ``__main__`` module)
    is spared that; hiding the path gives the forkservers that best case."""
    main = sys.modules["__main__"]
    path = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


def _wait_for(conn: Any, what: str) -> None:
    """Wait until ``conn`` has something to read; TimeoutError after the deadline."""
    if not conn.poll(ANSWER_DEADLINE_S):
        raise TimeoutError(f"no {what} within {ANSWER_DEADLINE_S} s")


class ForkserverStarter:
    """Workers started by a forkserver of ``multiprocessing`` or ``multiprocess``
    (``package``), with ``preload`` imported in the server beside this module."""

    def __init__(self, package: ModuleType, preload: Sequence[str]) -> None:
        self._package = package
        self._context = package.get_context("forkserver")
        self._context.set_forkserver_preload([answer_one_request.__module__, *preload])

    def start_one(self) -> float:
        """Start a worker, wait for its ready, have it answer; return the seconds that
        took (the first call includes starting the server). The worker has exited on
        return."""
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=answer_one_request, args=(child, str(ECHO_MODEL)), daemon=True
        )
        started = time.perf_counter()
        try:
            with _main_left_alone():
                process.start()
            child.close()
            _wait_for(parent, "ready")
            if parent.recv() != "ready":
                raise RuntimeError("the worker did not say ready")
            parent.send((BODY, JSON_TYPE, JSON_TYPE))
            _wait_for(parent, "answer")
            answer = parent.recv_bytes()
            elapsed = time.perf_counter() - started
        finally:
            parent.close()
            child.close()
            if process.pid is not None:
                process.join(STOP_DEADLINE_S)
                if process.exitcode is None:
                    process.kill()
                    process.join()
                process.close()
        if answer != BODY:
            raise RuntimeError(f"the worker answered {answer!r}")
        return elapsed

    def stop(self) -> None:
        """Stop the fork server and resource tracker this package started, by pid. They
        have no public stop; these are the methods CPython's own tests stop them with."""
        self._package.forkserver._forkserver._stop()
        self._package.resource_tracker._resource_tracker._stop()


class ZygoteStarter:
    """Workers forked by our runtime zygote and adopted by this process (a child
    subreaper), as the pool starts them; the zygote's working directory is ``root``."""

    def __init__(self, link: ZygoteLink, root: Path) -> None:
        self._link = link
        self._root = root
        # Seconds of each start's fork request (the zygote's answer with the new pid).
        self.fork_s: list[float] = []

    @classmethod
    async def start(cls, preload: Sequence[str], root: Path) -> ZygoteStarter:
        from workers.pool.zygote_link import start_runtime_zygote

        link = await start_runtime_zygote(
            preload=list(preload), inherited_env=os.environ, cwd=str(root), deadline_s=60.0
        )
        return cls(link, root)

    async def start_one(self) -> float:
        """Fork a worker, wait for READY, have it answer; return the seconds from the fork
        request to the answer. The worker has exited and its directory is gone on return."""
        from workers.pool.environment import worker_environment
        from workers.pool.process import WorkerProcess
        from workers.pool.spec import Invocation

        private_dir = Path(tempfile.mkdtemp(prefix="worker-", dir=self._root))
        started = time.perf_counter()
        request = {
            "role": "worker",
            "model_dir": str(ECHO_MODEL),
            "env": worker_environment(
                {}, inherited={}, private_dir=private_dir, model_dir=ECHO_MODEL
            ),
            "private_dir": str(private_dir),
            "placement": None,
            "max_response_bytes": MAX_RESPONSE_BYTES,
        }
        forked = await self._link.fork(request)
        self.fork_s.append(time.perf_counter() - started)
        worker = await WorkerProcess.adopt(
            forked, private_dir=private_dir, label="echo", tier="runtime-zygote"
        )
        try:
            await worker.wait_ready(SETUP_DEADLINE_S)
            result = await worker.call(
                Invocation("decisions", BODY, JSON_TYPE, JSON_TYPE),
                timeout_s=ANSWER_DEADLINE_S,
                max_response_bytes=MAX_RESPONSE_BYTES,
            )
            elapsed = time.perf_counter() - started
        finally:
            await worker.stop(STOP_DEADLINE_S)
            await worker.wait_exited()
        if result.body != BODY:
            raise RuntimeError(f"the worker answered {result.body!r}")
        return elapsed

    async def stop(self) -> None:
        """Close the zygote's control socket (it exits), kill it if it does not."""
        import asyncio

        self._link.close()
        try:
            async with asyncio.timeout(STOP_DEADLINE_S):
                await self._link.process.wait()
        except TimeoutError:
            self._link.kill()
            await self._link.process.wait()


def _forkserver_packages() -> dict[str, ModuleType | str]:
    """The packages whose forkserver starts workers: the module, or why it is skipped."""
    import multiprocessing.forkserver
    import multiprocessing.resource_tracker

    found: dict[str, ModuleType | str] = {"forkserver": multiprocessing}
    try:
        import multiprocess.forkserver
        import multiprocess.resource_tracker
    except ImportError:
        found["multiprocess"] = "multiprocess is not installed"
    else:
        found["multiprocess"] = multiprocess
    return found


def _start_figures(samples: Sequence[float], first_s: float) -> dict[str, object]:
    return {
        "p50_ms": round(percentile(samples, 50) * 1e3, 2),
        "p90_ms": round(percentile(samples, 90) * 1e3, 2),
        "first_start_ms": round(first_s * 1e3, 1),
        "starts": len(samples),
    }


async def compare_starts(preload: Sequence[str], starts: int, root: Path) -> dict[str, object]:
    """Time to the first answer of workers started by our runtime zygote and by each
    forkserver, ``starts`` each, interleaved, all with ``preload`` imported in the server
    (ours imports our worker modules and json on its own; the forkservers get them in
    their preload too). ``first_start_ms`` is a single start of a server and its first
    worker, not interleaved."""
    from workers.child.zygote import BASE_IMPORTS

    sides: dict[str, Callable[[], Awaitable[float]]] = {}
    first: dict[str, float] = {}
    skipped: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        started = time.perf_counter()
        ours = await ZygoteStarter.start(preload, root)
        stack.push_async_callback(ours.stop)
        await ours.start_one()
        first["ours"] = time.perf_counter() - started
        sides["ours"] = ours.start_one
        for name, package in _forkserver_packages().items():
            if isinstance(package, str):
                skipped[name] = package
                continue
            starter = ForkserverStarter(package, [*BASE_IMPORTS, *preload])
            stack.callback(starter.stop)
            first[name] = starter.start_one()
            sides[name] = _as_coroutine(starter.start_one)
        samples = await interleaved_async(sides, starts, warm_up=False)
    row: dict[str, object] = {"preload": list(preload)}
    for name in sides:
        row[name] = _start_figures(samples[name], first[name])
    # Where our time goes: the fork request is the zygote's double fork (it waits for the
    # intermediate process to exit); the rest is the worker's start, READY and the call.
    fork_s = ours.fork_s[1:]
    row["ours_fork_request_p50_ms"] = round(percentile(fork_s, 50) * 1e3, 2)
    for name, reason in skipped.items():
        row[name] = {"skipped": reason}
    for stat in (50, 90):
        row[f"ratio_p{stat}"] = {
            f"ours/{name}": ratio(
                percentile(samples["ours"], stat), percentile(samples[name], stat)
            )
            for name in sides
            if name != "ours"
        }
    return row


def _as_coroutine(fn: Callable[[], float]) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        return fn()

    return run


async def measure_worker_start(starts: int, heavy_preload: bool) -> dict[str, object]:
    """Row 1: our zygote beside the forkservers of multiprocessing and multiprocess, with
    a light preload, then a heavy one."""
    from workers.pool.zygote_link import SINGLE_THREADED_ENV
    from workers.wire.kernel import become_subreaper

    # Workers our zygote forks are re-parented to this process, as to the gateway.
    become_subreaper()
    # The fork servers inherit our environment: numpy must start no thread pool in
    # them either (our zygote is told the same).
    os.environ.update(SINGLE_THREADED_ENV)
    # And they preload the children's target module only if they find it: Python 3.11's
    # forkserver ignores the parent's sys.path (and swallows the ImportError).
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = f"{HERE}{os.pathsep}{path}" if path else str(HERE)
    row: dict[str, object] = {
        "compares": "time from asking for a worker to its first answer (echo model, loaded "
        "by the worker), our runtime zygote vs a forkserver Process answering over a Pipe",
        "what_they_cannot_express": WHAT_THEY_CANNOT_EXPRESS,
    }
    with tempfile.TemporaryDirectory(prefix="decisions-") as root:
        progress(f"worker starts, light preload ({starts} each)")
        row["light_preload"] = await compare_starts([], starts, Path(root))
        if heavy_preload:
            progress(f"worker starts, heavy preload ({starts} each)")
            row["heavy_preload"] = await compare_starts(HEAVY_PRELOAD, starts, Path(root))
        else:
            row["heavy_preload"] = {"skipped": "--quick"}
    return row
