"""Handle to one worker process: start (a fresh interpreter, or adopt one a zygote
forked), READY handshake, calls, stop.

Resources: a worker owns its process (in a session of its own, so its process group can be
killed whole), one end of a socket pair, the read end of its log pipe and a private
directory. ``stop``/``kill`` plus ``wait_exited`` release all of them; the private
directory is removed once the process has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import orjson

from workers.pool.environment import worker_environment
from workers.pool.processes import ProcessLike, describe_exit
from workers.pool.spec import Invocation, InvocationResult, WorkerSpec
from workers.pool.zygote_link import ForkedProcess
from workers.wire.errors import (
    ResponseTooLarge,
    SetupFailed,
    SetupTimeout,
    WorkerBroken,
    WorkerTimeout,
)
from workers.wire.framing import PRELUDE, ProtocolError, decode_header, decode_prelude, encode_frame
from workers.wire.messages import Failed, Invoke, Result, WorkerReady

# How long a stopped worker may take to exit on its own before it is killed.
STOP_GRACE_S = 5.0


class WorkerProcess:
    """One worker process, serving one request at a time.

    Not safe for concurrent calls: the pool hands a worker to one request at a time.
    Any failure during a call kills the worker; a killed worker is never reused.
    """

    def __init__(
        self,
        proc: ProcessLike,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        output: asyncio.StreamReader,
        private_dir: Path,
        label: str,
        tier: str,
    ) -> None:
        self._proc = proc
        self._reader = reader
        self._writer = writer
        self._output = output
        self._private_dir = private_dir
        self.label = label
        self.tier = tier
        self.pid = proc.pid
        self.broken = False
        self.load_ms: float | None = None
        self.init_ms: float | None = None
        self.launch_ms = 0.0
        self.import_ms = 0.0
        self.model_fn_ms = 0.0
        self.imports: list[str] = []
        self.idle_since = 0.0
        # The request the worker serves (or served last): what its output belongs to.
        self.current_request: str | None = None
        # Set by the pool once the worker has exited and its placement was inspected.
        self.out_of_memory = False
        self.out_of_disk = False
        self.settled = asyncio.Event()

    @property
    def private_dir(self) -> Path:
        return self._private_dir

    @property
    def private_name(self) -> str:
        """The worker's unique name: its private directory's."""
        return self._private_dir.name

    @classmethod
    async def adopt(
        cls, forked: ForkedProcess, *, private_dir: Path, label: str, tier: str
    ) -> WorkerProcess:
        """Wrap a worker a zygote forked (and the gateway adopted)."""
        try:
            reader, writer = await asyncio.open_unix_connection(sock=forked.channel)
        except BaseException:
            forked.channel.close()
            forked.process.kill()
            raise
        return cls(forked.process, reader, writer, forked.output, private_dir, label, tier)

    @classmethod
    async def spawn(
        cls,
        spec: WorkerSpec,
        *,
        max_response_bytes: int,
        private_dir: Path,
        inherited_env: Mapping[str, str],
        placement: Mapping[str, object] | None = None,
    ) -> WorkerProcess:
        """Start a fresh interpreter as a worker; it begins loading the model at once.

        ``private_dir`` (the caller's) becomes its HOME, TMPDIR and working directory;
        ``placement`` (JSON of a ``workers.wire.messages.Placement``) is joined by the worker
        itself before any model code runs. Call ``wait_ready`` next. Raises OSError when
        the process cannot be started (and then leaves no process behind).
        """
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            env = worker_environment(
                spec.environment,
                inherited=inherited_env,
                private_dir=private_dir,
                model_dir=spec.model_dir,
            )
            extra = ["--placement", orjson.dumps(placement).decode()] if placement else []
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-u",
                # As the zygotes: the working directory (its private one) is not put on
                # sys.path, so a worker imports alike whichever tier started it.
                "-P",
                "-m",
                "workers.child.serve",
                "--fd",
                str(child_sock.fileno()),
                "--parent",
                str(os.getpid()),
                "--model-dir",
                str(spec.model_dir),
                "--max-response-bytes",
                str(max_response_bytes),
                *extra,
                pass_fds=(child_sock.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=private_dir,
                # Own session: a terminal's Ctrl-C reaches only the gateway, which drains
                # first, and the whole process group can be killed at once.
                start_new_session=True,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent_sock)
        assert proc.stdout is not None
        return cls(proc, reader, writer, proc.stdout, private_dir, spec.label, "spawn")

    @property
    def log_stream(self) -> asyncio.StreamReader:
        """The worker's combined stdout and stderr."""
        return self._output

    @property
    def alive(self) -> bool:
        return not self.broken and self._proc.returncode is None

    async def _read_frame(self) -> tuple[dict[str, Any], int]:
        head_len, body_len = decode_prelude(await self._reader.readexactly(PRELUDE.size))
        header = decode_header(await self._reader.readexactly(head_len))
        return header, body_len

    async def wait_ready(self, timeout_s: float) -> float:
        """Wait for the READY handshake; return the model load time in ms.

        Raises SetupFailed (the handler raised or the process exited) or SetupTimeout; in
        both cases the worker has been killed.
        """
        try:
            async with asyncio.timeout(timeout_s):
                header, body_len = await self._read_frame()
                detail = (await self._reader.readexactly(body_len)).decode("utf-8", "replace")
        except TimeoutError:
            self.kill()
            raise SetupTimeout(timeout_s) from None
        except ProtocolError as exc:
            # Killed for what it sent: say that, not how the kill ended it.
            self.kill()
            raise SetupFailed(f"worker broke the protocol while loading the model: {exc}") from exc
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.kill()
            returncode = await self._returncode_soon()
            message = f"worker {describe_exit(returncode)} while loading the model"
            raise SetupFailed(message) from exc
        except BaseException:
            self.kill()
            raise
        if header["t"] == "failed":
            self.kill()
            failed = cast(Failed, header)
            raise SetupFailed(str(failed.get("message", "model load failed")), detail)
        if header["t"] != "ready":
            self.kill()
            raise SetupFailed(f"worker sent {header['t']!r} instead of ready")
        ready = cast(WorkerReady, header)
        self.load_ms = float(ready.get("load_ms", 0.0))
        self.import_ms = float(ready.get("import_ms", 0.0))
        self.model_fn_ms = float(ready.get("model_fn_ms", 0.0))
        self.imports = [str(name) for name in ready.get("imports") or []]
        return self.load_ms

    async def call(
        self, invocation: Invocation, *, timeout_s: float, max_response_bytes: int
    ) -> InvocationResult:
        """Send one invocation and wait for the model's answer (``model_ms``: how long that
        took).

        Raises WorkerTimeout, WorkerBroken or ResponseTooLarge; after any of them, or a
        cancellation, the worker has been killed, because its state is unknown.
        """
        self.current_request = invocation.request_id
        header: Invoke = {
            "t": "invoke",
            "id": invocation.request_id,
            "content_type": invocation.content_type,
            "accept": invocation.accept,
            "custom_attributes": invocation.custom_attributes,
        }
        if invocation.traceparent is not None:
            header["traceparent"] = invocation.traceparent
        called = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                self._writer.write(encode_frame(header, invocation.body))
                await self._writer.drain()
                reply, body_len = await self._read_frame()
                if body_len > max_response_bytes:
                    raise ResponseTooLarge(body_len, max_response_bytes)
                body = await self._reader.readexactly(body_len)
        except TimeoutError:
            self.kill()
            raise WorkerTimeout(timeout_s) from None
        except (OSError, asyncio.IncompleteReadError, ProtocolError) as exc:
            self.kill()
            returncode = await self._returncode_soon()
            raise WorkerBroken(
                f"worker {describe_exit(returncode)} while handling the request", returncode
            ) from exc
        except BaseException:
            self.kill()
            raise
        if reply["t"] != "result" or not isinstance(reply.get("status"), int):
            self.kill()
            raise WorkerBroken(f"worker sent {reply['t']!r} instead of a result")
        result = cast(Result, reply)
        # Read as objects and checked: a worker runs model code, and may break the protocol.
        cpu_s: object = result.get("cpu_s")
        max_rss: object = result.get("max_rss")
        spans: object = result.get("spans")
        return InvocationResult(
            status=result["status"],
            body=body,
            model_ms=(time.perf_counter() - called) * 1000.0,
            content_type=result.get("content_type"),
            custom_attributes=result.get("custom_attributes"),
            cpu_s=float(cpu_s) if isinstance(cpu_s, int | float) else None,
            max_rss_bytes=int(max_rss) if isinstance(max_rss, int) else None,
            spans=tuple(span for span in spans if isinstance(span, dict))
            if isinstance(spans, list)
            else (),
        )

    async def _returncode_soon(self) -> int | None:
        """The exit status of a worker that is dying anyway, if it comes within a moment."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                return await self._proc.wait()
        return self._proc.returncode

    def kill(self) -> None:
        """SIGKILL the worker's whole process group now. Idempotent; never blocks."""
        self.broken = True
        self._writer.close()
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    async def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """Ask the worker to exit (close its socket), kill it after ``grace_s``, and wait
        for the process to exit. Returns the exit status."""
        self.broken = True
        self._writer.close()
        try:
            async with asyncio.timeout(grace_s):
                return await self._proc.wait()
        except TimeoutError:
            self.kill()
        return await self._proc.wait()

    async def wait_exited(self) -> int:
        """Wait for the process to exit, then release what it leaves: processes of its own
        still in its group, and its private directory. Call once, from the owner."""
        returncode = await self._proc.wait()
        # Whatever the model left in its group (subprocesses of its own) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        await asyncio.to_thread(shutil.rmtree, self._private_dir, True)
        return returncode
