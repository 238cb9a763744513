"""The failures a worker can have, as the pool reports them to its caller.

Every way a worker process can fail maps onto one of these; the gateway maps them onto the
wire once, in its error table.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base class of every worker failure."""


class WorkerBroken(WorkerError):
    """The worker died, or broke the protocol, while serving a request.

    The worker has been discarded (killed if it was still running); ``returncode`` is its
    exit status when known (negative: killed by that signal).
    """

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.returncode = returncode


class WorkerTimeout(WorkerError):
    """The worker did not answer within the invocation deadline; it has been killed."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"worker did not answer within {timeout_s:g} s")
        self.timeout_s = timeout_s


class SetupFailed(WorkerError):
    """Loading the model failed: the handler raised, or the process exited before READY.

    ``message`` quotes the model's own error where there was one; ``detail`` holds the
    traceback text for the log.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class SetupTimeout(WorkerError):
    """The worker did not become READY within the setup deadline; it has been killed."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"worker was not ready within {timeout_s:g} s")
        self.timeout_s = timeout_s


class ResponseTooLarge(WorkerError):
    """The model's response is over the payload limit; the worker has been discarded."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"response of {size} bytes is over the {limit} byte limit")
        self.size = size
        self.limit = limit


class WorkerOutOfMemory(WorkerBroken):
    """The worker used more memory than its MemorySizeInMB and was stopped."""

    def __init__(self, memory_mb: int) -> None:
        super().__init__(
            f"the worker ran out of its MemorySizeInMB ({memory_mb} MB) and was stopped"
        )
        self.memory_mb = memory_mb


class WorkerOutOfDisk(WorkerBroken):
    """The worker wrote more than its ephemeral disk allows and was stopped."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(
            f"the worker wrote more than its {limit_bytes // 10**9} GB of ephemeral disk "
            "and was stopped"
        )
        self.limit_bytes = limit_bytes
