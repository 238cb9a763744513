"""What crosses between the gateway and the processes it starts, message by message.

Frames (``workers.wire.framing``) carry a header object with its type in ``"t"``; each
type's shape is declared here, so a reader can go from a send to what it sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a worker process puts itself, as data the process applies to itself (with
    ``join_placement``) right after it starts or is forked, before any model code runs.

    ``cgroup_procs``: the ``cgroup.procs`` file of each of the worker's cgroups (empty
    without cgroups). ``cpu_affinity``: the CPUs to pin to when no cgroup caps CPU, else
    None. ``env``: the thread-count variables. ``fsize_limit``: RLIMIT_FSIZE in bytes.
    ``cgroup_v1``: the groups are cgroup v1 ones, which a single-threaded process joins
    through their ``tasks`` files instead (see ``join_cgroup``).
    """

    cgroup_procs: tuple[str, ...]
    cpu_affinity: tuple[int, ...] | None
    fsize_limit: int
    env: Mapping[str, str] = field(default_factory=dict)
    cgroup_v1: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form, for a frame header."""
        return {
            "cgroup_procs": list(self.cgroup_procs),
            "cpu_affinity": None if self.cpu_affinity is None else list(self.cpu_affinity),
            "env": dict(self.env),
            "fsize_limit": self.fsize_limit,
            "cgroup_v1": self.cgroup_v1,
        }

    @classmethod
    def from_json(cls, data: Any) -> Placement:
        """The inverse of ``to_json``. Raises ValueError for anything else."""
        if not isinstance(data, dict):
            raise ValueError(f"placement must be an object, got {type(data).__name__}")
        procs = data.get("cgroup_procs")
        affinity = data.get("cpu_affinity")
        env = data.get("env")
        fsize = data.get("fsize_limit")
        v1 = data.get("cgroup_v1", False)
        if not isinstance(procs, list) or not all(isinstance(p, str) for p in procs):
            raise ValueError("placement cgroup_procs must be a list of paths")
        if affinity is not None and (
            not isinstance(affinity, list)
            or not affinity
            or not all(isinstance(c, int) and c >= 0 for c in affinity)
        ):
            raise ValueError("placement cpu_affinity must be null or a list of CPU numbers")
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ValueError("placement env must map strings to strings")
        if not isinstance(fsize, int) or isinstance(fsize, bool) or fsize < 1:
            raise ValueError("placement fsize_limit must be a positive integer")
        if not isinstance(v1, bool):
            raise ValueError("placement cgroup_v1 must be true or false")
        return cls(
            cgroup_procs=tuple(procs),
            cpu_affinity=None if affinity is None else tuple(affinity),
            env=dict(env),
            fsize_limit=fsize,
            cgroup_v1=v1,
        )
