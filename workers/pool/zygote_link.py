"""The gateway's side of the zygotes: start them, ask them to fork, and notice when they
die. What runs inside a zygote is ``workers.child.zygote``; the messages between them
are declared in ``workers.wire.messages``.

A ``ZygoteLink`` is one zygote process and its control socket. Requests on it are
serialised (one at a time, each with a deadline); any failure of the link (a dead
zygote, a torn frame, a missed deadline) kills the zygote and raises ``ZygoteBroken``,
and the caller falls back to the next warm tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from workers.pool.environment import INHERITED_KEYS
from workers.pool.limits import BLAS_SPIN_ENV
from workers.pool.output import channel_reader, log_channel
from workers.pool.placement import open_cgroup_files
from workers.pool.processes import (
    AdoptedProcess,
    ProcessLike,
    describe_exit,
    watch_sandboxed_child,
)
from workers.wire.errors import SetupFailed, WorkerError
from workers.wire.framing import PRELUDE, ProtocolError, decode_header, decode_prelude, encode_frame
from workers.wire.messages import (
    Failed,
    Fork,
    Forked,
    ForkRequest,
    GatewayToZygote,
    Start,
    Unsuitable,
    ZygoteReady,
)

# Control requests are small and a zygote answers them at once (a fork takes a few ms).
REQUEST_DEADLINE_S: Final = 10.0
# How much of a failed zygote's output its error quotes.
LAST_WORDS_BYTES: Final = 4096
# Frameworks imported in a zygote must not start thread pools: a zygote forks, and a
# thread running at fork time would be lost in the child with its locks held.
SINGLE_THREADED_ENV: Final = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
    )
}


class ZygoteBroken(WorkerError):
    """A zygote died, broke the protocol or missed a deadline; it has been killed."""


class ZygoteUnsuitable(WorkerError):
    """A model zygote cannot serve as one (threads after the load, or the handler sets
    FORK_AFTER_LOAD = False); workers of its endpoint load the model themselves."""


@dataclass(frozen=True, slots=True)
class ForkedProcess:
    """A process a zygote forked for us: adopted, with its channel and its output."""

    process: AdoptedProcess
    channel: socket.socket
    output: asyncio.StreamReader


class ZygoteLink:
    """One zygote process and its control socket."""

    # What the zygote said when it became ready: set by start_runtime_zygote and
    # start_model_zygote before they return the link.
    ready: ZygoteReady

    def __init__(
        self,
        process: ProcessLike,
        control: socket.socket,
        output: asyncio.StreamReader,
        kind: str,
        *,
        sandboxed: bool = False,
    ) -> None:
        control.setblocking(False)
        self.process = process
        self.output = output
        self.kind = kind
        # A model zygote in a sandbox: its workers are its children, in its namespaces.
        self.sandboxed = sandboxed
        self._control = control
        self._lock = asyncio.Lock()
        self.broken = False

    @property
    def alive(self) -> bool:
        return not self.broken and self.process.returncode is None

    async def read_message(self, deadline_s: float) -> dict[str, Any]:
        """The zygote's next message (one of ``ZygoteToGateway``, unchecked beyond its
        frame); raises ZygoteBroken (and kills it) on failure."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(deadline_s):
                prelude = await self._recv(loop, PRELUDE.size)
                head_len, body_len = decode_prelude(prelude)
                header = decode_header(await self._recv(loop, head_len))
                await self._recv(loop, body_len)
        except (TimeoutError, OSError, ValueError, ProtocolError) as exc:
            # ValueError: the link was closed (shutdown) while this read waited.
            self.kill()
            reason = str(exc) or type(exc).__name__
            raise ZygoteBroken(f"{self.kind} zygote failed: {reason}") from exc
        except BaseException:
            self.kill()
            raise
        return header

    async def _recv(self, loop: asyncio.AbstractEventLoop, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = await loop.sock_recv(self._control, size - len(data))
            if not chunk:
                raise ProtocolError("zygote closed its control socket")
            data += chunk
        return data

    async def request(
        self,
        header: GatewayToZygote,
        fds: list[int] | None = None,
        *,
        deadline_s: float = REQUEST_DEADLINE_S,
    ) -> dict[str, Any]:
        """Send one request (with file descriptors) and return the answer, within
        ``deadline_s``; raises ZygoteBroken (and kills the zygote) on failure."""
        if not self.alive:
            raise ZygoteBroken(f"{self.kind} zygote is gone")
        frame = encode_frame(header)
        async with self._lock:
            try:
                # The descriptors ride with the first bytes. A fork request fits the
                # socket buffer; a long list of modules to pre-import may not, and the
                # rest follows as the zygote reads.
                sent = socket.send_fds(self._control, [frame], fds or [])
                if sent < len(frame):
                    async with asyncio.timeout(deadline_s):
                        loop = asyncio.get_running_loop()
                        await loop.sock_sendall(self._control, memoryview(frame)[sent:])
            except (OSError, ValueError, TimeoutError) as exc:
                self.kill()
                reason = str(exc) or type(exc).__name__
                raise ZygoteBroken(f"{self.kind} zygote failed: {reason}") from exc
            return await self.read_message(deadline_s)

    async def fork(self, request: ForkRequest) -> ForkedProcess:
        """Have the zygote fork a worker or a model zygote; return it, adopted (or, from
        a sandboxed model zygote, watched: it is that zygote's child)."""
        cgroup_fds = open_cgroup_files(request.get("placement"))
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_ours, log_theirs = log_channel()
        try:
            try:
                fds = [child_end.fileno(), log_theirs.fileno(), *cgroup_fds]
                message: Fork = {**request, "t": "fork"}
                answer = await self.request(message, fds)
            finally:
                child_end.close()
                log_theirs.close()
                for fd in cgroup_fds:
                    os.close(fd)
            if answer.get("t") != "forked":
                # A ForkError says why.
                raise ZygoteBroken(f"{self.kind} zygote refused to fork: {answer.get('message')}")
            pid = int(cast(Forked, answer)["pid"])
            if self.sandboxed:
                # The pid counts in the zygote's namespace, and the zygote runs model
                # code: only a child of its own is taken for the answer.
                try:
                    process = watch_sandboxed_child(self.process.pid, pid)
                except ProcessLookupError as exc:
                    self.kill()
                    raise ZygoteBroken(f"{self.kind} zygote failed: {exc}") from exc
            else:
                process = AdoptedProcess(pid)
            output = await channel_reader(log_ours)
        except BaseException:
            parent_end.close()
            # A no-op once the reader took it.
            log_ours.close()
            raise
        return ForkedProcess(process, parent_end, output)

    def kill(self) -> None:
        """SIGKILL the zygote now; never blocks. Processes it forked live on."""
        self.broken = True
        self._control.close()
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Ask the zygote to exit (it exits when its control socket closes)."""
        self.broken = True
        self._control.close()


def zygote_environment(inherited: Mapping[str, str]) -> dict[str, str]:
    """The runtime zygote's environment: the clean worker base, single-threaded, with
    BLAS threads that spin briefly (they start when a forked worker grows its pools)."""
    env = {key: inherited[key] for key in INHERITED_KEYS if key in inherited}
    env.update(SINGLE_THREADED_ENV, **BLAS_SPIN_ENV, PYTHONDONTWRITEBYTECODE="1")
    return env


async def start_runtime_zygote(
    *,
    preload: list[str],
    inherited_env: Mapping[str, str],
    cwd: str,
    deadline_s: float,
    sandbox: dict[str, Any] | None = None,
) -> ZygoteLink:
    """Start the runtime zygote and wait until it has imported ``preload`` (and laid out
    the shared part of ``sandbox``, its account's sandboxes, if given).

    Raises ZygoteBroken when it fails to start in time.
    """
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-u",
            # Not the working directory on sys.path: it is the workers' private root, and
            # a file a worker put there must not be what the zygote imports for a name
            # it learned (every worker forked afterwards would run it).
            "-P",
            "-m",
            "workers.child.zygote",
            "--fd",
            str(child_end.fileno()),
            "--gateway",
            str(os.getpid()),
            pass_fds=(child_end.fileno(),),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=zygote_environment(inherited_env),
            cwd=cwd,
            start_new_session=True,
        )
    except BaseException:
        parent_end.close()
        raise
    finally:
        child_end.close()
    assert process.stdout is not None
    link = ZygoteLink(process, parent_end, process.stdout, "runtime")
    start: Start = {"t": "start", "preload": preload, "sandbox": sandbox}
    answer = await link.request(start, deadline_s=deadline_s)
    if answer.get("t") != "ready":
        link.kill()
        raise ZygoteBroken(f"runtime zygote sent {answer.get('t')!r} instead of ready")
    link.ready = cast(ZygoteReady, answer)
    return link


async def start_model_zygote(
    runtime: ZygoteLink, request: ForkRequest, *, deadline_s: float
) -> ZygoteLink:
    """Fork a model zygote from the runtime zygote and wait until its model is loaded.

    ``request``: a worker's ``ForkRequest`` (its ``role`` is replaced here). Raises
    ZygoteBroken, ZygoteUnsuitable, or SetupFailed (the model raised while loading; its
    own message).
    """
    model_zygote: ForkRequest = {**request, "role": "model-zygote"}
    forked = await runtime.fork(model_zygote)
    sandboxed = request.get("sandbox") is not None
    link = ZygoteLink(forked.process, forked.channel, forked.output, "model", sandboxed=sandboxed)
    try:
        message = await link.read_message(deadline_s)
    except ZygoteBroken as error:
        raise ZygoteBroken(f"{error}{await last_words(link)}") from error
    if message.get("t") == "ready":
        link.ready = cast(ZygoteReady, message)
        return link
    link.kill()
    if message.get("t") == "unsuitable":
        raise ZygoteUnsuitable(str(cast(Unsuitable, message).get("reason")))
    if message.get("t") == "failed":
        raise SetupFailed(str(cast(Failed, message).get("message")))
    raise ZygoteBroken(f"model zygote sent {message.get('t')!r} instead of ready")


async def last_words(link: ZygoteLink, *, limit_s: float = 1.0) -> str:
    """How a killed or crashed zygote ended and the tail of what it wrote (a traceback),
    for the error that reports it; bounded in time and size."""
    output = b""
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(limit_s):
            while chunk := await link.output.read(LAST_WORDS_BYTES):
                output = (output + chunk)[-LAST_WORDS_BYTES:]
            await link.process.wait()
    ended = describe_exit(link.process.returncode)
    text = output.decode(errors="replace").strip()
    return f" (it {ended}{'; it wrote: ' + text if text else ''})"
