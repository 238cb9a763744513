"""Handles of the processes the pool runs, and how their exits read.

Workers started fresh are ``asyncio`` subprocesses; workers and model zygotes forked by
a zygote are adopted instead: re-parented to the gateway (a child subreaper), and waited
for and reaped through a pidfd (``AdoptedProcess``), so no zombie is left and no pid is
ever confused with a reused one. ``ProcessLike`` is what the pool needs of either."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Protocol


class ProcessLike(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


def describe_exit(returncode: int | None) -> str:
    """Human wording of an exit status, for error messages and logs."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


class AdoptedProcess:
    """A child process this gateway did not spawn itself but now parents.

    Same surface as ``asyncio.subprocess.Process`` for what workers use: ``pid``,
    ``returncode`` and ``wait()``. The pidfd is opened at construction (the process is
    our child, or a zombie of ours, so its pid cannot have been reused) and closed once
    the process is reaped. ``child=False``: a process another one reaps (a sandboxed
    model zygote's worker); its exit is seen, its status is not (it reads as 255).
    """

    def __init__(self, pid: int, *, child: bool = True) -> None:
        self.pid = pid
        self._child = child
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(pid)
        self._exited = asyncio.Event()
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        try:
            if not self._child:
                raise ChildProcessError(self.pid)
            status = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED)
        except ChildProcessError:
            # Reaped elsewhere; the status is lost, so report a plain failure.
            self.returncode = 255
        else:
            assert status is not None
            code = status.si_status
            self.returncode = -code if status.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else code
        finally:
            os.close(self._pidfd)
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the process (its process group is the caller's business)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)


def watch_sandboxed_child(zygote_pid: int, local_pid: int) -> AdoptedProcess:
    """The worker a sandboxed model zygote (``zygote_pid``) says it forked as
    ``local_pid`` (its pid in the zygote's namespace), found among the zygote's own
    children: a zygote runs model code, so its word alone names no process. Raises
    ProcessLookupError when no child of the zygote has that pid."""
    pid = _child_by_namespace_pid(zygote_pid, local_pid)
    process = AdoptedProcess(pid, child=False)
    # Checked again with the pidfd open: the pid it holds cannot be reused now.
    if _child_by_namespace_pid(zygote_pid, local_pid) != pid:
        process.kill()
        raise ProcessLookupError(f"model zygote {zygote_pid} has no child {local_pid}")
    return process


def _child_by_namespace_pid(parent: int, local_pid: int) -> int:
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            # "NSpid:\t<pid here>\t...\t<pid in its own namespace>"
            if line.startswith("NSpid:") and line.split()[-1] == str(local_pid):
                return int(child)
    raise ProcessLookupError(f"model zygote {parent} has no child {local_pid}")
