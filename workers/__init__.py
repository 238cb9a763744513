"""Worker processes: the per-endpoint pool, spawning, the framed protocol and the code
that runs inside a worker.

This package never imports ``gateway``. The gateway uses only what is exported here.
The exports are resolved lazily: a worker process imports ``workers.child`` through this
package, and must not pay for asyncio and the pool machinery it never uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Redundant aliases mark these as re-exports for type checkers.
    from workers.cgroups import EnforcerUnavailable as EnforcerUnavailable
    from workers.cgroups import detect_enforcer as detect_enforcer
    from workers.errors import ResponseTooLarge as ResponseTooLarge
    from workers.errors import SetupFailed as SetupFailed
    from workers.errors import SetupTimeout as SetupTimeout
    from workers.errors import WorkerBroken as WorkerBroken
    from workers.errors import WorkerError as WorkerError
    from workers.errors import WorkerOutOfDisk as WorkerOutOfDisk
    from workers.errors import WorkerOutOfMemory as WorkerOutOfMemory
    from workers.errors import WorkerTimeout as WorkerTimeout
    from workers.manager import PoolManager as PoolManager
    from workers.placement import Placer as Placer
    from workers.pool import EndpointPool as EndpointPool
    from workers.pool import PoolClosed as PoolClosed
    from workers.pool import PoolStatistics as PoolStatistics
    from workers.spec import Invocation as Invocation
    from workers.spec import InvocationResult as InvocationResult
    from workers.spec import PoolLimits as PoolLimits
    from workers.spec import WorkerSpec as WorkerSpec

_EXPORTS = {
    "ResponseTooLarge": "workers.errors",
    "SetupFailed": "workers.errors",
    "SetupTimeout": "workers.errors",
    "WorkerBroken": "workers.errors",
    "WorkerError": "workers.errors",
    "WorkerTimeout": "workers.errors",
    "WorkerOutOfDisk": "workers.errors",
    "WorkerOutOfMemory": "workers.errors",
    "EnforcerUnavailable": "workers.cgroups",
    "detect_enforcer": "workers.cgroups",
    "Placer": "workers.placement",
    "PoolManager": "workers.manager",
    "EndpointPool": "workers.pool",
    "PoolClosed": "workers.pool",
    "PoolStatistics": "workers.pool",
    "Invocation": "workers.spec",
    "InvocationResult": "workers.spec",
    "PoolLimits": "workers.spec",
    "WorkerSpec": "workers.spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
