"""Worker processes: the pool of each endpoint and the processes it runs.

``workers.pool`` is the gateway's side (pools, spawning, zygote links, limits),
``workers.child`` what runs inside a worker or zygote (serve loop, handler, codecs), and
``workers.wire`` what the two share (framing, messages, errors, span records).

This package never imports ``gateway``, and the gateway uses only what is exported here
(a test holds it to that). The exports are resolved lazily: a worker process imports
``workers.child`` through this package, and must not pay for asyncio and the pool
machinery it never uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    # Redundant aliases mark these as re-exports for type checkers.
    from workers.pool.cgroups import EnforcerUnavailable as EnforcerUnavailable
    from workers.pool.cgroups import detect_enforcer as detect_enforcer
    from workers.pool.endpoint import PoolClosed as PoolClosed
    from workers.pool.endpoint import PoolStatistics as PoolStatistics
    from workers.pool.manager import PoolManager as PoolManager
    from workers.pool.placement import Placer as Placer
    from workers.pool.sandbox import Sandboxes as Sandboxes
    from workers.pool.sandbox import sandbox_unavailable as sandbox_unavailable
    from workers.pool.spec import Invocation as Invocation
    from workers.pool.spec import InvocationResult as InvocationResult
    from workers.pool.spec import PoolLimits as PoolLimits
    from workers.pool.spec import WorkerSpec as WorkerSpec
    from workers.wire.errors import ResponseTooLarge as ResponseTooLarge
    from workers.wire.errors import SetupFailed as SetupFailed
    from workers.wire.errors import SetupTimeout as SetupTimeout
    from workers.wire.errors import WorkerBroken as WorkerBroken
    from workers.wire.errors import WorkerError as WorkerError
    from workers.wire.errors import WorkerOutOfDisk as WorkerOutOfDisk
    from workers.wire.errors import WorkerOutOfMemory as WorkerOutOfMemory
    from workers.wire.errors import WorkerTimeout as WorkerTimeout
    from workers.wire.kernel import die_with_parent as die_with_parent
    from workers.wire.spans import LightSpan as LightSpan
    from workers.wire.spans import LightTracer as LightTracer
    from workers.wire.spans import Record as Record
    from workers.wire.spans import follow_parent as follow_parent
    from workers.wire.spans import json_safe as json_safe

# Each public name and the module that defines it.
EXPORTS: Final = {
    "EnforcerUnavailable": "workers.pool.cgroups",
    "detect_enforcer": "workers.pool.cgroups",
    "PoolClosed": "workers.pool.endpoint",
    "PoolStatistics": "workers.pool.endpoint",
    "PoolManager": "workers.pool.manager",
    "Placer": "workers.pool.placement",
    "Sandboxes": "workers.pool.sandbox",
    "sandbox_unavailable": "workers.pool.sandbox",
    "Invocation": "workers.pool.spec",
    "InvocationResult": "workers.pool.spec",
    "PoolLimits": "workers.pool.spec",
    "WorkerSpec": "workers.pool.spec",
    "ResponseTooLarge": "workers.wire.errors",
    "SetupFailed": "workers.wire.errors",
    "SetupTimeout": "workers.wire.errors",
    "WorkerBroken": "workers.wire.errors",
    "WorkerError": "workers.wire.errors",
    "WorkerOutOfDisk": "workers.wire.errors",
    "WorkerOutOfMemory": "workers.wire.errors",
    "WorkerTimeout": "workers.wire.errors",
    # A process the gateway starts (its span exporter) dies with it, as workers do.
    "die_with_parent": "workers.wire.kernel",
    # The gateway records its own spans in the same cheap form workers record theirs.
    "LightSpan": "workers.wire.spans",
    "LightTracer": "workers.wire.spans",
    "Record": "workers.wire.spans",
    "follow_parent": "workers.wire.spans",
    "json_safe": "workers.wire.spans",
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
