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


def join_placement(
    placement: Placement, cgroup_fds: list[int] | None = None, *, environment: bool = True
) -> None:
    """Apply ``placement`` to the calling process: enter its cgroups, pin its CPUs, set the
    thread-count variables and RLIMIT_FSIZE.

    ``cgroup_fds``: the files the gateway opened for this process to join its cgroups
    through (each group's ``tasks`` file in a cgroup v1 hierarchy, its ``cgroup.procs``
    in v2), closed here. The kernel checks a write to them against whoever opened them,
    so a process joins the groups the gateway chose even after it dropped root, and no
    others. None: the process (still root) opens the placement's files itself.
    ``environment=False`` leaves the thread-count variables alone (a model zygote must
    stay single-threaded; its workers get them). Call it
    in the worker process before it starts threads or loads model code: affinity is
    inherited only by threads started later, and thread pools read the variables when
    their library loads. Python ignores SIGXFSZ, so a write past the
    file-size limit fails with OSError (EFBIG) instead of killing the worker. Raises
    OSError naming what failed.
    """
    if cgroup_fds is None:
        # Decided once: joining the first group starts no thread.
        by_thread = placement.cgroup_v1 and thread_count() == 1
        for procs in placement.cgroup_procs:
            join_cgroup_file(procs, by_thread=by_thread)
    else:
        try:
            if placement.cgroup_v1 and cgroup_fds and thread_count() != 1:
                raise OSError("cannot join cgroup v1 groups by thread: threads run")
            for fd in cgroup_fds:
                join_cgroup(fd)
        finally:
            for fd in cgroup_fds:
                os.close(fd)
    if placement.cpu_affinity is not None:
        try:
            os.sched_setaffinity(0, placement.cpu_affinity)
        except OSError as exc:
            cpus = list(placement.cpu_affinity)
            raise OSError(exc.errno, f"cannot pin to CPUs {cpus}: {exc.strerror}") from exc
    if environment:
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


def join_cgroup_file(procs: str, *, by_thread: bool) -> None:
    """Move the calling process into the cgroup whose ``cgroup.procs`` file is ``procs``;
    ``by_thread`` (for a single-threaded process in a cgroup v1 hierarchy only) moves its
    one thread through the group's ``tasks`` file instead (see ``join_cgroup``). Raises
    OSError naming the group."""
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


def join_cgroup(fd: int) -> None:
    """Move the calling process into the cgroup whose ``tasks`` (v1) or ``cgroup.procs``
    (v2) file is open as ``fd``, by writing ``0`` (the caller itself).

    In v1 that moves the calling thread only, which for a single-threaded process is the
    same membership: and moving a whole process, or any other task, takes the kernel's
    global thread-group lock, whose write side waits for an RCU grace period: 5-18 ms
    on the 2-core machines measured (Linux 6.18), on every cold start after a quiet
    spell. A thread that moves itself skips that lock: ~0.15-0.3 ms. (cgroup v2 moves
    single threads only inside threaded subtrees, so there the whole process moves.)
    Raises OSError naming the group.
    """
    try:
        os.write(fd, b"0")
    except OSError as exc:
        try:
            group: object = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            group = f"(descriptor {fd})"
        raise OSError(exc.errno, f"cannot join cgroup {group}: {exc.strerror}") from exc
