"""Who a sandboxed process is: its account's unprivileged uid and gid, no supplementary
groups, no capability in any set (bounding, ambient and inheritable included), root's
special treatment switched off for good (securebits, locked), and ``no_new_privs``, so
no setuid binary or file capability can give any of it back.

Runs as root, on the fork path, after the process's root is built; raises OSError naming
the step that failed. Cheap standard modules only.
"""

from __future__ import annotations

import ctypes
import os
from typing import Final

from workers.wire.kernel import prctl

PR_CAPBSET_DROP: Final = 24
PR_SET_SECUREBITS: Final = 28
PR_SET_NO_NEW_PRIVS: Final = 38
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
PR_SET_DUMPABLE: Final = 4
# SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP's lock, SECBIT_KEEP_CAPS's lock and
# SECBIT_NO_CAP_AMBIENT_RAISE, each with its lock: uid 0 never means capabilities again,
# and nothing can keep or raise them across a uid change.
SECUREBITS: Final = 0x01 | 0x02 | 0x08 | 0x20 | 0x40 | 0x80
# The highest capability number any kernel defines; dropping past the kernel's last one
# answers EINVAL, which ends the loop.
MAX_CAPABILITY: Final = 63
_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def become(uid: int, gid: int) -> None:
    """Turn the calling root process into ``uid``/``gid`` with no privilege left."""
    if uid <= 0 or gid <= 0:
        raise OSError(f"refusing to run model code as uid {uid}, gid {gid}")
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in range(MAX_CAPABILITY + 1):
        try:
            prctl(PR_CAPBSET_DROP, capability, libc=libc)
        except OSError:
            break
    prctl(PR_SET_SECUREBITS, SECUREBITS, libc=libc)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    # Without SECBIT_KEEP_CAPS, leaving uid 0 empties the permitted and effective sets.
    os.setresuid(uid, uid, uid)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, libc=libc)
    _clear_capabilities(libc)
    prctl(PR_SET_NO_NEW_PRIVS, 1, libc=libc)
    # Changing uid made the process non-dumpable, and its /proc entries root's: it could
    # not even list its own file descriptors. Nothing outside its namespaces can see it.
    prctl(PR_SET_DUMPABLE, 1, libc=libc)


def _clear_capabilities(libc: ctypes.CDLL) -> None:
    """capset(2) every set to empty (the inheritable set survives a uid change)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"capset: {os.strerror(errno)}")
