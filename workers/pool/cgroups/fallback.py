"""The enforcer without cgroups: CPU affinity and thread counts only."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from workers.pool.limits import ResourcePlan
from workers.wire.messages import Placement


class FallbackEnforcer:
    """No cgroups: each worker is pinned to ``plan.threads`` CPUs of ``cpus``, handed out
    round-robin so workers spread, and gets the thread-count variables. Memory and disk
    are the caller's to watch (``rss_bytes``, ``directory_bytes``)."""

    mode = "fallback"

    def __init__(self, cpus: Sequence[int]) -> None:
        if not cpus:
            raise ValueError("FallbackEnforcer needs at least one CPU")
        self.cpus = tuple(sorted(set(cpus)))
        self._next = 0
        self._lock = threading.Lock()

    def describe(self) -> str:
        return (
            f"no cgroups: CPU affinity round-robin over CPUs {list(self.cpus)} and "
            "thread-count variables; memory and disk by watchdog"
        )

    def prepare(self, name: str, plan: ResourcePlan) -> Placement:
        count = min(plan.threads, len(self.cpus))
        with self._lock:
            start = self._next
            self._next = (start + count) % len(self.cpus)
        chosen = sorted(self.cpus[(start + i) % len(self.cpus)] for i in range(count))
        return Placement(
            cgroup_procs=(),
            cpu_affinity=tuple(chosen),
            env=plan.thread_environment(),
            fsize_limit=plan.disk_bytes,
        )

    def release(self, name: str) -> None:
        """Nothing to remove."""

    def out_of_memory(self, name: str) -> bool:
        """Always False: only the caller's watchdog knows it killed for memory."""
        return False

    def close(self) -> None:
        """Nothing to remove."""
