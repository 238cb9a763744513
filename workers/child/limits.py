"""The worker's side of its resource limits: a freshly started or forked process joins
the placement the gateway prepared for it (``workers.wire.messages.Placement``), before
any model code runs. Creating the groups and planning what goes in them is the gateway's
side, in ``workers.pool.limits`` and ``workers.pool.cgroups``.

Imported inside worker processes: cheap standard modules only.
"""

from __future__ import annotations

import os
import resource

from workers.wire.kernel import thread_count
from workers.wire.messages import Placement


def join_placement(placement: Placement) -> None:
    """Apply ``placement`` to the calling process: enter its cgroups, pin its CPUs, set the
    thread-count variables and RLIMIT_FSIZE.

    Call it in the worker process before it starts threads or loads model code: affinity
    is inherited only by threads started later, and thread pools read the variables when
    their library loads. Python ignores SIGXFSZ, so a write past the file-size limit fails
    with OSError (EFBIG) instead of killing the worker. Raises OSError naming what failed.
    """
    # Decided once: joining the first group starts no thread.
    by_thread = placement.cgroup_v1 and thread_count() == 1
    for procs in placement.cgroup_procs:
        join_cgroup(procs, by_thread=by_thread)
    if placement.cpu_affinity is not None:
        try:
            os.sched_setaffinity(0, placement.cpu_affinity)
        except OSError as exc:
            cpus = list(placement.cpu_affinity)
            raise OSError(exc.errno, f"cannot pin to CPUs {cpus}: {exc.strerror}") from exc
    os.environ.update(placement.env)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # An unprivileged process cannot raise its hard limit; a lower one inherited stays.
    limit = (
        placement.fsize_limit
        if hard == resource.RLIM_INFINITY
        else min(hard, placement.fsize_limit)
    )
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot limit file size to {limit} bytes: {exc}") from exc


def join_cgroup(procs: str, *, by_thread: bool) -> None:
    """Move the calling process into the cgroup whose ``cgroup.procs`` file is ``procs``;
    ``by_thread`` (for a single-threaded process in a cgroup v1 hierarchy only) moves its
    one thread through the group's ``tasks`` file instead.

    Moving a whole process takes the kernel's global thread-group lock, whose write side
    waits for an RCU grace period: 5-15 ms on the 2-core machines measured (Linux 6.18),
    on every cold start. Recent kernels skip that lock when a thread moves only itself
    (writing ``0`` to ``tasks``): ~0.15 ms there, and the same membership when the process
    has no other thread; a kernel without that shortcut takes the lock as before. (cgroup
    v2 moves single threads only inside threaded subtrees.) Raises OSError naming the
    group.
    """
    path, value = procs, str(os.getpid()).encode()
    if by_thread:
        path, value = os.path.join(os.path.dirname(procs), "tasks"), b"0"
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot join cgroup {procs}: {exc.strerror}") from exc
