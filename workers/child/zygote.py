"""Zygotes: processes that already hold what a worker needs, and fork workers on request.

Two kinds run, both single-threaded:

- the *runtime zygote* (``python -m workers.child.zygote --fd N --gateway PID``): one per
  gateway, started fresh; it pre-imports the frameworks (the configured list, plus what
  endpoints' handlers imported on their first load; sent as its first message, since
  thousands of names would not fit a command-line argument) and forks workers that then
  load their model, or forks model zygotes;
- a *model zygote*: forked from the runtime zygote for one endpoint, it loads that
  endpoint's model once, freezes the garbage collector, and forks workers that start
  with the model already in memory.

Every fork is a double fork: the intermediate process exits at once, so the new process
is adopted by the gateway (a child subreaper) and outlives the zygote that made it. The
new process then sets its parent-death signal against the gateway, so no worker or zygote
outlives the gateway either.

The control messages (``Start``, ``ZygoteReady``, ``Fork`` and the rest) are declared, in
the order a zygote's life uses them, in ``workers.wire.messages``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from workers.child.preload import installation_roots, preload
from workers.wire.framing import (
    CLOSED_INSIDE_A_FRAME,
    PRELUDE,
    ProtocolError,
    decode_header,
    decode_prelude,
    recv_exactly,
    send_frame,
)
from workers.wire.kernel import (
    MODEL_ZYGOTE_NAME,
    RUNTIME_ZYGOTE_NAME,
    WORKER_NAME,
    ParentWatch,
    die_with_parent,
    set_process_name,
    thread_count,
)
from workers.wire.sandbox import MODEL_DIR, SandboxSpec

if TYPE_CHECKING:
    from workers.child.handler import ModelHandler
    from workers.wire.messages import (
        Fork,
        Forked,
        ForkError,
        Preload,
        Preloaded,
        Start,
        Unsuitable,
        ZygoteReady,
    )

# File descriptors one frame may carry: a fork's channel and log, and a cgroup file per
# hierarchy (cpu, memory, pids: at most a handful).
MAX_FDS = 16
# How long a forked process waits to be adopted by the gateway before giving up.
ADOPTION_DEADLINE_S = 2.0
# Imported before anything else, so every worker starts with them already in memory.
BASE_IMPORTS = (
    "workers.child.handler",
    "workers.child.codecs",
    "workers.child.serve",
    "workers.child.limits",
    "json",
)


class ForkRefused(Exception):
    """This zygote cannot fork safely now (a thread is running)."""


def await_adoption(gateway_pid: int, parent: Callable[[], int] = os.getppid) -> None:
    """In a double-forked process: wait until the gateway has adopted it (``parent``
    says the parent's pid as the gateway counts it), then die with the gateway. Exits if
    the gateway is gone."""
    deadline = time.monotonic() + ADOPTION_DEADLINE_S
    # The intermediate process exits right after forking us; adoption follows at once.
    while parent() != gateway_pid:
        if time.monotonic() > deadline:
            os._exit(71)
        time.sleep(0.0002)
    die_with_parent(gateway_pid, parent)


def recv_frame_with_fds(sock: socket.socket) -> tuple[dict[str, Any], bytes, list[int]] | None:
    """Read one frame and the file descriptors sent with it (SCM_RIGHTS ride with the
    first byte of the frame). None on a clean EOF.

    Raises ProtocolError on a torn or invalid frame and OSError on socket errors.
    """
    start, fds, flags, _addr = socket.recv_fds(sock, PRELUDE.size, MAX_FDS)
    if flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise ProtocolError(f"more than {MAX_FDS} file descriptors came with a frame")
    if not start:
        return None
    prelude = start + _recv_rest(sock, PRELUDE.size - len(start))
    head_len, body_len = decode_prelude(prelude)
    head = _recv_rest(sock, head_len)
    body = _recv_rest(sock, body_len)
    return decode_header(head), body, list(fds)


def _recv_rest(sock: socket.socket, size: int) -> bytes:
    """``size`` more bytes of a frame already begun: any EOF before them is a torn frame."""
    data = recv_exactly(sock, size, CLOSED_INSIDE_A_FRAME)
    if data is None:
        raise ProtocolError(CLOSED_INSIDE_A_FRAME)
    return data


def scan_thread_pools() -> Any:
    """A controller of the BLAS/OpenMP thread pools loaded here, scanned once in the
    zygote so a forked worker resizes its pools in about a millisecond instead of paying
    for the scan; None when no such library is loaded."""
    if "numpy" not in sys.modules:
        return None
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


class Zygote:
    """The serve loop of a zygote. ``handler`` is set in a model zygote; ``sandboxed``
    when it runs in a sandbox (as pid 1 of its namespace): it then forks once, its
    workers are its children in its sandbox, and it outlives them."""

    def __init__(
        self,
        control: socket.socket,
        gateway_pid: int,
        handler: ModelHandler | None = None,
        *,
        sandboxed: bool = False,
        prepared_root: str | None = None,
    ) -> None:
        self.control = control
        self.gateway_pid = gateway_pid
        self.handler = handler
        self.sandboxed = sandboxed
        # Where this (runtime) zygote laid out the shared part of its sandboxes' root.
        self.prepared_root = prepared_root
        # A sandboxed zygote's workers still running (it outlives them).
        self.workers: set[int] = set()
        self.thread_pools = scan_thread_pools()

    def serve(self) -> int:
        if self.sandboxed:
            # Pid 1 reaps its namespace: exited workers and what they left behind.
            signal.signal(signal.SIGCHLD, lambda _signum, _frame: self.reap_children())
        while True:
            frame = recv_frame_with_fds(self.control)
            if frame is None:
                if self.sandboxed:
                    # Its exit would kill its workers: they finish first (what else
                    # its namespace holds ends with it).
                    self.outlive_workers()
                return 0
            header, _body, fds = frame
            try:
                reply = self.handle(header, fds)
            finally:
                for fd in fds:
                    os.close(fd)
            send_frame(self.control, reply)

    def handle(self, header: dict[str, Any], fds: list[int]) -> Preloaded | Forked | ForkError:
        """The answer to one request (``Preload`` or ``Fork``); raises ProtocolError for
        any other message."""
        kind = header["t"]
        if kind == "preload":
            modules = cast("Preload", header).get("modules") or []
            outcome = preload(modules, only_under=installation_roots())
            self.thread_pools = scan_thread_pools()
            return outcome
        if kind != "fork":
            raise ProtocolError(f"unexpected message {kind!r}")
        error: ForkError
        if len(fds) < 2:
            error = {"t": "error", "message": f"fork needs 2 file descriptors, got {len(fds)}"}
            return error
        try:
            pid = self.fork(cast("Fork", header), fds)
        except (ForkRefused, OSError, ValueError) as exc:  # ValueError: a bad sandbox
            error = {"t": "error", "message": str(exc)}
            return error
        forked: Forked = {"t": "forked", "pid": pid}
        return forked

    def fork(self, request: Fork, fds: list[int]) -> int:
        """Double-fork a worker or a model zygote (in a sandbox of its own when the
        request has one); return its pid. In a sandboxed zygote, fork a worker once and
        return its pid in this sandbox's namespace."""
        if thread_count() != 1:
            raise ForkRefused(f"zygote has {thread_count()} threads; forking is unsafe")
        if self.sandboxed:
            return self._fork_in_sandbox(request, fds)
        sandbox = request.get("sandbox")
        spec = SandboxSpec.from_json(sandbox) if sandbox is not None else None
        report_r, report_w = os.pipe()
        intermediate = os.fork()
        if intermediate == 0:
            code = 1
            try:
                os.close(report_r)
                if spec is not None:
                    from workers.child.sandbox import unshare_for

                    unshare_for(spec)
                grandchild = os.fork()
                if grandchild == 0:
                    os.close(report_w)
                    run_forked(lambda: self._become(request, fds, spec))
                os.write(report_w, struct.pack(">i", grandchild))
                code = 0
            finally:
                os._exit(code)
        os.close(report_w)
        try:
            data = os.read(report_r, 4)
        finally:
            os.close(report_r)
            os.waitpid(intermediate, 0)
        if len(data) != 4:
            raise OSError("the fork did not report a pid")
        (pid,) = struct.unpack(">i", data)
        return int(pid)

    def reap_children(self) -> None:
        """Collect every exited child (workers, and orphans this pid 1 adopted), without
        waiting for one that still runs."""
        try:
            while (pid := os.waitpid(-1, os.WNOHANG)[0]) > 0:
                self.workers.discard(pid)
        except ChildProcessError:
            pass

    def outlive_workers(self) -> None:
        """Wait until every worker this zygote forked has exited."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for pid in list(self.workers):
            with contextlib.suppress(ChildProcessError):  # reaped already
                os.waitpid(pid, 0)
        self.workers.clear()

    def _fork_in_sandbox(self, request: Fork, fds: list[int]) -> int:
        """Fork one worker of this sandboxed model zygote: it shares the zygote's
        sandbox, and only joins the cgroups the gateway made for it."""
        pid = os.fork()
        if pid != 0:
            self.workers.add(pid)
            return pid
        run_forked(lambda: self._serve_in_sandbox(request, fds))

    def _serve_in_sandbox(self, request: Fork, fds: list[int]) -> int:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        # The zygote is pid 1 here: when it dies the kernel ends this namespace.
        die_with_parent(1)
        channel = self._take_descriptors(fds)
        prepare_process(request, fds[2:], self.thread_pools, sandboxed=True)
        set_process_name(WORKER_NAME)
        return run_worker(channel, request, self.handler, sandboxed=True)

    def _become(self, request: Fork, fds: list[int], spec: SandboxSpec | None) -> int:
        """In the new process: set it up as a worker or a model zygote (in the sandbox
        ``spec``, if any) and run it; its exit status."""
        os.setsid()
        if spec is None:
            await_adoption(self.gateway_pid)
        else:
            # Pid 1 of a namespace of its own: getppid says 0 there.
            parent = ParentWatch()
            await_adoption(self.gateway_pid, parent)
        channel = self._take_descriptors(fds, keep=() if spec is None else (parent.fd,))
        prepare_process(request, fds[2:], self.thread_pools, sandboxed=spec is not None)
        if spec is not None:
            from workers.child.sandbox import enter

            prepared = spec.root == self.prepared_root
            enter(spec, gateway_pid=self.gateway_pid, parent=parent, prepared=prepared)
        model_zygote = request["role"] == "model-zygote"
        set_process_name(MODEL_ZYGOTE_NAME if model_zygote else WORKER_NAME)
        if model_zygote:
            return run_model_zygote(channel, request, self.gateway_pid, spec is not None)
        return run_worker(channel, request, self.handler, sandboxed=spec is not None)

    def _take_descriptors(self, fds: list[int], keep: tuple[int, ...] = ()) -> socket.socket:
        """In a new process: its output to its log, every descriptor closed but its
        channel (returned), its cgroup files (``fds[2:]``) and ``keep``."""
        channel_fd, log_fd = fds[:2]
        redirect_output(log_fd)
        self.control.close()
        close_all_but({channel_fd, *fds[2:], *keep})
        return socket.socket(fileno=channel_fd)


def run_forked(body: Callable[[], int]) -> NoReturn:
    """In a forked process: run ``body`` and exit with its status (1 and the traceback
    on the log when it raises), never returning into the zygote's loop."""
    code = 1
    try:
        code = body()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def close_all_but(keep: set[int]) -> None:
    """Close every descriptor from 3 up but those in ``keep``."""
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1024)


def redirect_output(log_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


def prepare_process(
    request: Fork, cgroup_fds: list[int], thread_pools: Any = None, *, sandboxed: bool = False
) -> None:
    """Environment, directory and resource placement of a freshly forked process: it
    joins the cgroups whose files the gateway opened for it (``cgroup_fds``, closed
    here). A sandboxed process gets its directory from the sandbox instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.update(request.get("env") or {})
    placement = request.get("placement")
    # A model zygote stays single-threaded (it forks): its workers get the threads.
    workers_threads = request["role"] == "worker"
    if placement is not None:
        from workers.child.limits import join_placement
        from workers.wire.messages import Placement

        join_placement(Placement.from_json(placement), cgroup_fds, environment=workers_threads)
    private_dir = request.get("private_dir")
    if private_dir and not sandboxed:
        os.environ["HOME"] = os.environ["TMPDIR"] = private_dir
        os.chdir(private_dir)
    # Frameworks imported in the zygote were told to start no threads; a worker gets the
    # threads its vCPUs allow (nothing to do when that is one).
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    if workers_threads and thread_pools is not None and threads.isdigit() and int(threads) > 1:
        thread_pools.limit(limits=int(threads))


def run_worker(
    channel: socket.socket, request: Fork, handler: ModelHandler | None, *, sandboxed: bool
) -> int:
    from workers.child.serve import run, serve

    model_dir = Path(MODEL_DIR if sandboxed else request["model_dir"])
    limit = int(request["max_response_bytes"])
    return run(channel, lambda: serve(channel, model_dir, limit, handler))


def run_model_zygote(
    channel: socket.socket, request: Fork, gateway_pid: int, sandboxed: bool
) -> int:
    """Load the endpoint's model once, then fork workers that share it."""
    from workers.child.serve import load_model

    started = time.perf_counter()
    handler = load_model(channel, Path(MODEL_DIR if sandboxed else request["model_dir"]))
    if handler is None:
        return 3
    unsuitable: Unsuitable
    if not handler.fork_after_load:
        unsuitable = {"t": "unsuitable", "reason": "the handler sets FORK_AFTER_LOAD = False"}
        send_frame(channel, unsuitable)
        return 0
    if thread_count() != 1:
        reason = f"{thread_count()} threads run after the model loaded"
        unsuitable = {"t": "unsuitable", "reason": reason}
        send_frame(channel, unsuitable)
        return 0
    gc.collect()
    # Objects that exist now are never collected in forked workers, so their pages stay
    # shared instead of being copied by the collector's writes.
    gc.freeze()
    load_ms = (time.perf_counter() - started) * 1000.0
    ready: ZygoteReady = {
        "t": "ready",
        "pid": os.getpid(),
        "kind": "model",
        "load_ms": load_ms,
        "imports": sorted(handler.imported_modules),
    }
    send_frame(channel, ready)
    return Zygote(channel, gateway_pid, handler, sandboxed=sandboxed).serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workers.child.zygote")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--gateway", type=int, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    die_with_parent(args.gateway)
    set_process_name(RUNTIME_ZYGOTE_NAME)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=args.fd)
    try:
        start = recv_frame_with_fds(control)
        if start is None:
            return 0  # the gateway went away before it said what to pre-import
        header, _body, fds = start
        for fd in fds:
            os.close(fd)
        if header["t"] != "start":
            raise ProtocolError(f"expected start, got {header['t']!r}")
        modules = cast("Start", header).get("preload") or []
        sandbox = cast("Start", header).get("sandbox")
        prepared_root = None
        if sandbox is not None:
            from workers.child.sandbox import prepare

            spec = SandboxSpec.from_json(sandbox)
            prepare(spec)
            prepared_root = spec.root
        started = time.perf_counter()
        outcome = preload([*BASE_IMPORTS, *map(str, modules)], only_under=installation_roots())
        ready: ZygoteReady = {
            "t": "ready",
            "pid": os.getpid(),
            "kind": "runtime",
            "load_ms": (time.perf_counter() - started) * 1000.0,
            "imports": outcome["imported"],
            "failed": outcome["failed"],
            "threaded": outcome["threaded"],
        }
        send_frame(control, ready)
        return Zygote(control, args.gateway, prepared_root=prepared_root).serve()
    except (OSError, ProtocolError) as exc:
        sys.stderr.write(f"zygote: connection to gateway lost: {exc}\n")
        return 4


if __name__ == "__main__":
    sys.exit(main())
