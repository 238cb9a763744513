"""What a sandboxed process is given, as data the gateway sends with a fork (or a fresh
worker's command line) and the new process applies to itself before any model code runs
(``workers.child.sandbox``).

The process runs as ``uid``/``gid`` (its account's), in new pid, mount and ipc
namespaces (and a network namespace with loopback only unless ``network``), on a root
of its own: ``read_only`` host paths bound read-only at the same paths (the system and
the Python installation), ``hidden`` paths inside them covered, the model read-only at
``MODEL_DIR`` and a private writable ``/tmp`` of ``tmp_bytes``. ``root`` is an empty
host directory the new root is mounted on (in the process's own mount namespace, so one
directory serves every sandbox).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

# Where SageMaker puts the model, and where sandboxed model code finds it.
MODEL_DIR: Final = "/opt/ml/model"
# The private writable area: HOME, TMPDIR and the working directory.
PRIVATE_DIR: Final = "/tmp"


def installation_paths() -> tuple[str, ...]:
    """The Python installation workers import from, as given and resolved: the
    interpreter's prefixes (a virtual environment's and its base's) and the ``workers``
    package itself, not the source tree around it (which may hold the gateway's config
    and state). Sandboxes see it read-only; runtime zygotes pre-import only from it."""
    workers_package = Path(__file__).resolve().parents[1]
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    resolved = {str(Path(prefix).resolve()) for prefix in prefixes}
    return tuple(sorted(prefixes | resolved | {str(workers_package)}))


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """One sandbox (see the module docstring). Validated by ``from_json``."""

    uid: int
    gid: int
    root: str
    model_dir: str
    read_only: tuple[str, ...]
    hidden: tuple[str, ...]
    tmp_bytes: int
    network: bool = True

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form, for a frame header or a command line."""
        return {
            "uid": self.uid,
            "gid": self.gid,
            "root": self.root,
            "model_dir": self.model_dir,
            "read_only": list(self.read_only),
            "hidden": list(self.hidden),
            "tmp_bytes": self.tmp_bytes,
            "network": self.network,
        }

    @classmethod
    def from_json(cls, data: Any) -> SandboxSpec:
        """The inverse of ``to_json``. Raises ValueError naming the field at fault."""
        if not isinstance(data, dict):
            raise ValueError(f"sandbox must be an object, got {type(data).__name__}")
        for name in ("uid", "gid", "tmp_bytes"):
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"sandbox {name} must be a positive integer")
        for name in ("root", "model_dir"):
            if not _absolute(data.get(name)):
                raise ValueError(f"sandbox {name} must be an absolute path")
        for name in ("read_only", "hidden"):
            paths = data.get(name)
            if not isinstance(paths, list) or not all(_absolute(path) for path in paths):
                raise ValueError(f"sandbox {name} must be a list of absolute paths")
        if not isinstance(data.get("network"), bool):
            raise ValueError("sandbox network must be true or false")
        return cls(
            uid=data["uid"],
            gid=data["gid"],
            root=data["root"],
            model_dir=data["model_dir"],
            read_only=tuple(data["read_only"]),
            hidden=tuple(data["hidden"]),
            tmp_bytes=data["tmp_bytes"],
            network=data["network"],
        )


def _absolute(path: object) -> bool:
    return isinstance(path, str) and path.startswith("/") and "\0" not in path
