"""A sandboxed process's view of the files: a root of its own, built in its own mount
namespace right after the fork, then entered with pivot_root.

The root is a small tmpfs holding only what the spec names: the system and Python
installation bound read-only at their own paths (with the gateway's secrets among them
covered), a handful of device nodes, the model read-only at ``/opt/ml/model``, a
``/proc`` of the process's own pid namespace and a private ``/tmp`` capped in size. The
host's root is detached afterwards, so nothing else of the machine (the gateway's state
directory, config, sockets, other accounts' models) has a path from inside.

Runs as root, before the process drops its privileges; every step raises OSError naming
what failed. Cheap standard modules only (this runs on a cold start's fork path).
"""

from __future__ import annotations

import ctypes
import os
from typing import Final

from workers.wire.kernel import SYS_MOUNT_SETATTR
from workers.wire.sandbox import MODEL_DIR, PRIVATE_DIR, SandboxSpec

MS_RDONLY: Final = 0x1
MS_NOSUID: Final = 0x2
MS_NODEV: Final = 0x4
MS_NOEXEC: Final = 0x8
MS_BIND: Final = 0x1000
MS_REC: Final = 0x4000
MS_PRIVATE: Final = 0x40000
MNT_DETACH: Final = 0x2
# mount_setattr(2) makes a whole tree read-only in one call.
AT_EMPTY_PATH: Final = 0x1000
AT_RECURSIVE: Final = 0x8000
MOUNT_ATTR_RDONLY: Final = 0x1
MOUNT_ATTR_NOSUID: Final = 0x2
SYS_PIVOT_ROOT: Final = {"x86_64": 155, "aarch64": 41}

# Character devices a program may expect: (major, minor). /dev/tty only answers ENXIO
# without a terminal, but its absence confuses some libraries.
DEVICES: Final = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}
DEVICE_LINKS: Final = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    # POSIX shared memory and semaphores live in the private area, under its cap.
    "shm": PRIVATE_DIR,
}
# The root tmpfs holds directories, links and device nodes only.
ROOT_OPTIONS: Final = "mode=0755,size=1m,nr_inodes=4096"


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(
    libc: ctypes.CDLL,
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    options: str | None = None,
) -> None:
    """mount(2); raises OSError naming the target."""
    _check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            options.encode() if options else None,
        ),
        f"mount {target}",
    )


def build_root(spec: SandboxSpec, *, prepared: bool = False) -> None:
    """Build the sandbox's root on ``spec.root`` and enter it (pivot_root), in the calling
    process's mount namespace, which must be its own. ``prepared``: the namespace it was
    copied from already holds the parts every sandbox of the account shares
    (``prepare_root``), so only the model and the per-process mounts are left to do.
    Afterwards ``/`` is read-only and nosuid, ``/proc`` is this pid namespace's and
    ``/tmp`` the private area (mode 1777, ``spec.tmp_bytes`` for all its files
    together: the kernel refuses a write past it; an installation path below ``/tmp``
    is bound again on top of it, read-only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not prepared:
        prepare_root(spec, libc)
    root = spec.root
    mount(libc, spec.model_dir, root + MODEL_DIR, None, MS_BIND | MS_REC)
    _make_read_only(libc, root)
    options = f"size={spec.tmp_bytes},mode=1777"
    mount(libc, "tmpfs", root + PRIVATE_DIR, "tmpfs", MS_NOSUID | MS_NODEV, options)
    # An installation under /tmp (a checkout there, say) would be hidden by the private
    # area: it is bound again on top, read-only.
    for path in sorted(spec.read_only, key=len):
        if path.startswith(PRIVATE_DIR + "/"):
            _bind_same_path(libc, root, path)
            if os.path.lexists(root + path) and not os.path.islink(root + path):
                _make_read_only(libc, root + path)
    _pivot(libc, root)
    mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def prepare_root(spec: SandboxSpec, libc: ctypes.CDLL | None = None) -> None:
    """In the calling process's own mount namespace: make every mount private (nothing
    mounted here propagates back to the host's namespace) and lay out on ``spec.root``
    what every sandbox made from here shares: the read-only binds, the covers over
    secrets, the device nodes, the mount points. A runtime zygote does this once at
    start, so each fork only copies it (``build_root(prepared=True)``)."""
    if libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
    mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    root = spec.root
    mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID, ROOT_OPTIONS)
    for path in sorted(spec.read_only, key=len):
        _bind_same_path(libc, root, path)
    for path in spec.hidden:
        _cover(libc, root + path)
    _make_devices(root + "/dev")
    for directory in (MODEL_DIR, "/proc", PRIVATE_DIR):
        os.makedirs(root + directory, exist_ok=True)


def _bind_same_path(libc: ctypes.CDLL, root: str, path: str) -> None:
    """Make host ``path`` appear at the same path under ``root``: a link stays a link
    (``/bin`` -> ``usr/bin`` on merged systems); a missing path is skipped."""
    target = root + path
    if os.path.islink(path):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    elif os.path.exists(path):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass
    else:
        return
    mount(libc, path, target, None, MS_BIND | MS_REC)


def _cover(libc: ctypes.CDLL, target: str) -> None:
    """Hide ``target`` (inside a bound tree) behind an empty directory or an empty file."""
    if os.path.isdir(target):
        mount(libc, "tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
    elif os.path.lexists(target):
        mount(libc, "/dev/null", target, None, MS_BIND)


def _make_devices(dev: str) -> None:
    os.makedirs(dev)
    for name, (major, minor) in DEVICES.items():
        os.mknod(f"{dev}/{name}", 0o20666, os.makedev(major, minor))
        # mknod honours the umask; the nodes must be usable by the account's uid.
        os.chmod(f"{dev}/{name}", 0o666)
    for name, target in DEVICE_LINKS.items():
        os.symlink(target, f"{dev}/{name}")


def _make_read_only(libc: ctypes.CDLL, root: str) -> None:
    """Every mount at and under ``root`` read-only and nosuid, in one call."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    fd = os.open(root, os.O_PATH)
    try:
        result = libc.syscall(
            SYS_MOUNT_SETATTR,
            fd,
            b"",
            AT_EMPTY_PATH | AT_RECURSIVE,
            ctypes.byref(attr),
            ctypes.sizeof(attr),
        )
        _check(result, f"mount_setattr {root} read-only")
    finally:
        os.close(fd)


def _pivot(libc: ctypes.CDLL, root: str) -> None:
    """Make ``root`` the root and detach the old one. pivot_root(".", ".") stacks the old
    root on the new one, so it needs no directory to put it in."""
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(f"pivot_root: unsupported machine {os.uname().machine}")
    _check(libc.syscall(number, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")
