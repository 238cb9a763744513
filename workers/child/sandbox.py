"""The sandbox a process that runs model code enters, step by step, on the fork path.

The order matters, and is bubblewrap's:

1. ``unshare_for`` (in the process that forks it): new mount, pid and ipc namespaces,
   and a network namespace when the model is network-isolated. The next process forked
   is pid 1 of the new pid namespace: when it ends, every process it started ends too.
2. ``enter`` (in that process, still root, after it joined its cgroups): loopback up in
   a new network namespace; the root of its own (``workers.child.mounts``); the
   account's uid with no privilege (``workers.child.identity``); the parent-death
   signal again (a uid change clears it); the seccomp filter last
   (``workers.child.seccomp``), since setting up needs calls it refuses.

Everything here is our own code running before any model code; raises OSError naming
the step that failed (the process then exits without serving).
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from typing import Final

from workers.child.identity import become
from workers.child.mounts import build_root, prepare_root
from workers.child.seccomp import install_filter
from workers.wire.kernel import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    ParentWatch,
    die_with_parent,
    unshare,
)
from workers.wire.sandbox import PRIVATE_DIR, SandboxSpec

SIOCGIFFLAGS: Final = 0x8913
SIOCSIFFLAGS: Final = 0x8914
IFF_UP: Final = 0x1


def unshare_for(spec: SandboxSpec) -> None:
    """In the process about to fork the sandboxed one: the namespaces it gets."""
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
    if not spec.network:
        flags |= CLONE_NEWNET
    unshare(flags)


def enter(
    spec: SandboxSpec, *, gateway_pid: int, parent: ParentWatch, prepared: bool = False
) -> None:
    """Finish the sandbox in the calling process (pid 1 of its namespace, root, adopted
    by the gateway: ``parent`` tells by whom). ``prepared``: its zygote laid out the
    shared part of the root already (``workers.child.mounts.prepare_root``). Closes
    ``parent``."""
    if not spec.network:
        loopback_up()
    build_root(spec, prepared=prepared)
    become(spec.uid, spec.gid)
    try:
        die_with_parent(gateway_pid, parent)
    finally:
        parent.close()
    os.environ["HOME"] = os.environ["TMPDIR"] = PRIVATE_DIR
    os.chdir(PRIVATE_DIR)
    install_filter()


def loopback_up() -> None:
    """Bring up ``lo`` in a new network namespace (it starts down): SageMaker's network
    isolation still lets a container talk to itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def prepare(spec: SandboxSpec) -> None:
    """In a runtime zygote, once: a mount namespace of its own holding the part of the
    root every sandbox of its account shares (see ``workers.child.mounts.prepare_root``),
    which each fork then copies instead of building."""
    unshare(CLONE_NEWNS)
    prepare_root(spec)
