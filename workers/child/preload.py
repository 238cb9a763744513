"""What a runtime zygote pre-imports, and how: only modules of the read-only
installation, each within a deadline.

The names come from what models imported (they are learned), so a model could name
anything: a module it planted somewhere on a path, a ``__main__`` that runs a program
when imported, a module that never finishes importing. A zygote imports a name only
when the installation (the interpreter's prefixes, or the ``workers`` package itself)
provides it, and gives each import ``IMPORT_DEADLINE_S`` before it counts as failed.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import signal
import sys
from typing import TYPE_CHECKING, Final

from workers.wire.kernel import thread_count
from workers.wire.sandbox import installation_paths

if TYPE_CHECKING:
    from types import FrameType

    from workers.wire.messages import Preloaded

# One import may take this long (scikit-learn's takes about a second here).
IMPORT_DEADLINE_S: Final = 30.0


class ImportTimedOut(Exception):
    """An import ran past its deadline."""


def installation_roots() -> tuple[str, ...]:
    """Where installed modules live (``installation_paths``), resolved."""
    return tuple(sorted({os.path.realpath(path) for path in installation_paths()}))


def installed(name: str, roots: tuple[str, ...]) -> bool:
    """True when ``name``'s top-level package comes from the installation (or is built
    in) and no part of it is ``__main__``. Finding a top-level module imports nothing."""
    if "__main__" in name.split("."):
        return False
    try:
        spec = importlib.util.find_spec(name.partition(".")[0])
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    locations = list(spec.submodule_search_locations or []) or [spec.origin or ""]
    return all(_within(os.path.realpath(location), roots) for location in locations if location)


def _within(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in roots)


def _on_deadline(_signum: int, _frame: FrameType | None) -> None:
    raise ImportTimedOut


def preload(
    modules: list[str],
    *,
    only_under: tuple[str, ...] | None = None,
    deadline_s: float = IMPORT_DEADLINE_S,
) -> Preloaded:
    """Import ``modules`` here so forked workers start with them; report what failed
    (raised, ran past ``deadline_s``, or, given ``only_under``, not provided from below
    those directories: see ``installation_roots``), and (``threaded``) the modules whose
    import started a thread: after that, forking here is unsafe, and the gateway
    replaces this zygote with one that skips them."""
    imported: list[str] = []
    failed: list[str] = []
    threaded: list[str] = []
    threads = thread_count()
    previous = signal.signal(signal.SIGALRM, _on_deadline)
    try:
        for name in modules:
            if name in sys.modules:
                continue
            if only_under is not None and not installed(name, only_under):
                failed.append(name)
                continue
            try:
                signal.setitimer(signal.ITIMER_REAL, deadline_s)
                try:
                    importlib.import_module(name)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except BaseException:  # a module that fails to import is skipped, never fatal
                failed.append(name)
            else:
                imported.append(name)
            now = thread_count()
            if now != threads:
                threaded.append(name)
                threads = now
    finally:
        signal.signal(signal.SIGALRM, previous)
    gc.collect()
    gc.freeze()
    return {"t": "preloaded", "imported": imported, "failed": failed, "threaded": threaded}
