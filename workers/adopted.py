"""Processes the gateway adopted rather than started: workers and model zygotes forked by
a zygote are re-parented to the gateway (a child subreaper). This handle waits for and
reaps such a process through a pidfd, so no zombie is left and no pid is ever confused
with a reused one."""

from __future__ import annotations

import asyncio
import contextlib
import os


class AdoptedProcess:
    """A child process this gateway did not spawn itself but now parents.

    Same surface as ``asyncio.subprocess.Process`` for what workers use: ``pid``,
    ``returncode`` and ``wait()``. The pidfd is opened at construction (the process is
    our child, or a zombie of ours, so its pid cannot have been reused) and closed once
    the process is reaped.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(pid)
        self._exited = asyncio.Event()
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        try:
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
