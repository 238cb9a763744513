"""A seccomp-BPF filter for processes that run untrusted model code: a short denylist of
system calls that model code never needs and that reach past the process's own sandbox.

What it refuses, with EPERM (Python sees ``PermissionError``), and why:

- other processes: ``ptrace``, ``process_vm_readv``/``writev``, ``pidfd_getfd``,
  ``process_madvise``, ``kcmp``. Workers of different tenants may share a user id, and
  these would read, write or steer another worker's memory and file descriptors.
- mounts and namespaces: the mount calls old and new (``mount``, ``fsopen`` and the rest,
  ``pivot_root``, ``chroot``), ``unshare``, ``setns``, and ``clone`` with a namespace
  flag. A new user namespace hands out capabilities inside it, and with them the kernel
  code behind mounts and network namespaces that most escapes go through.
- kernel code: ``bpf``, ``kexec_*``, the module calls. Loading code into the kernel.
- keyrings: ``keyctl``, ``add_key``, ``request_key``. Keyrings are not namespaced: keys
  of the host or of another tenant could be found and used.
- personality changes, except the values ordinary programs set (Linux, 32-bit uname,
  UNAME26) and the query: others turn off address randomisation or map page zero for
  the next program executed, both classic aids to exploiting a kernel or setuid bug.
- exploit aids: ``userfaultfd`` (holds a kernel copy mid-way, to win races),
  ``perf_event_open`` (side channels, a long record of kernel bugs), and io_uring, whose
  kernel workers perform the operations queued to them without passing this filter.
- the host's administration: clocks (``settimeofday``, ``clock_settime``,
  ``clock_adjtime``, ``adjtimex``: reading through ``adjtimex`` is refused too, no Python
  code uses it), the kernel log (``syslog``: kernel addresses), accounting, swap,
  quotas, reboot, ``vhangup``, ``fanotify_init``, raw I/O ports (``iopl``, ``ioperm``),
  files opened by handle (``open_by_handle_at`` reaches files outside the mount
  namespace: the classic container escape) and obsolete calls (``uselib``, ``ustat``,
  ``sysfs``, ``_sysctl``, ``lookup_dcookie``, ``nfsservctl``, the old module calls).

Most of these need a capability the sandbox has already dropped; the filter is the second
wall, and the first for what needs none (``ptrace`` of a same-user process, keyrings, user
namespaces, io_uring, ``userfaultfd``). Everything else is allowed, ``kill`` and
``pidfd_open`` included (Python's subprocess and asyncio use them).

``clone3`` answers ENOSYS: its flags sit behind a pointer, which a seccomp filter cannot
read, and C libraries fall back to ``clone``, whose flags the filter checks. A system call
made with another architecture's convention (i386 via ``int 0x80``, x32 on x86_64) kills
the process: the tables here are x86_64's or aarch64's own, and no Python program switches
convention; only code written to get around the filter does.

This is our own BPF, not libseccomp: the filter is installed on the worker's fork path,
which should need no system library or binding, and a denylist this short reads best as
the few dozen instructions it is. The program is arranged so that, for every system call
but ``personality`` and ``clone``, the answer depends on the call's number alone; the
kernel (5.11 and later) then remembers the allowed numbers and skips the filter for them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

DENIED_SYSCALLS: Final[tuple[str, ...]] = (
    # Other processes' memory, file descriptors and kernel objects.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "process_madvise",
    "kcmp",
    # Mounts, root changes and namespaces.
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    # Code into the kernel.
    "bpf",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    # Keyrings.
    "keyctl",
    "add_key",
    "request_key",
    # Exploit aids, and io_uring which the filter cannot see through.
    "userfaultfd",
    "perf_event_open",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # The host's administration.
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "syslog",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "quotactl",
    "quotactl_fd",
    "vhangup",
    "fanotify_init",
    "open_by_handle_at",
    "name_to_handle_at",
    "iopl",
    "ioperm",
    # Obsolete.
    "lookup_dcookie",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
)

# Since Linux 5.1 a new system call gets one number on every architecture (alpha, mips
# and ia64 aside), so these are x86_64's and aarch64's alike.
_UNIFIED_NUMBERS: Final = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "open_tree_attr": 467,
}

# By machine (``os.uname().machine``), the numbers of the calls this module names: from
# the kernel's arch/x86/entry/syscalls/syscall_64.tbl and, for aarch64, the generic table
# (include/uapi/asm-generic/unistd.h). A call an architecture never had is absent.
SYSCALL_NUMBERS: Final[Mapping[str, Mapping[str, int]]] = MappingProxyType(
    {
        "x86_64": MappingProxyType(
            {
                "clone": 56,
                "ptrace": 101,
                "syslog": 103,
                "uselib": 134,
                "personality": 135,
                "ustat": 136,
                "sysfs": 139,
                "vhangup": 153,
                "pivot_root": 155,
                "_sysctl": 156,
                "adjtimex": 159,
                "chroot": 161,
                "acct": 163,
                "settimeofday": 164,
                "mount": 165,
                "umount2": 166,
                "swapon": 167,
                "swapoff": 168,
                "reboot": 169,
                "iopl": 172,
                "ioperm": 173,
                "create_module": 174,
                "init_module": 175,
                "delete_module": 176,
                "get_kernel_syms": 177,
                "query_module": 178,
                "quotactl": 179,
                "nfsservctl": 180,
                "lookup_dcookie": 212,
                "clock_settime": 227,
                "kexec_load": 246,
                "add_key": 248,
                "request_key": 249,
                "keyctl": 250,
                "unshare": 272,
                "perf_event_open": 298,
                "fanotify_init": 300,
                "name_to_handle_at": 303,
                "open_by_handle_at": 304,
                "clock_adjtime": 305,
                "setns": 308,
                "process_vm_readv": 310,
                "process_vm_writev": 311,
                "kcmp": 312,
                "finit_module": 313,
                "seccomp": 317,
                "kexec_file_load": 320,
                "bpf": 321,
                "userfaultfd": 323,
                **_UNIFIED_NUMBERS,
            }
        ),
        "aarch64": MappingProxyType(
            {
                "lookup_dcookie": 18,
                "umount2": 39,
                "mount": 40,
                "pivot_root": 41,
                "nfsservctl": 42,
                "chroot": 51,
                "vhangup": 58,
                "quotactl": 60,
                "acct": 89,
                "personality": 92,
                "unshare": 97,
                "kexec_load": 104,
                "init_module": 105,
                "delete_module": 106,
                "clock_settime": 112,
                "syslog": 116,
                "ptrace": 117,
                "reboot": 142,
                "settimeofday": 170,
                "adjtimex": 171,
                "add_key": 217,
                "request_key": 218,
                "keyctl": 219,
                "clone": 220,
                "swapon": 224,
                "swapoff": 225,
                "perf_event_open": 241,
                "fanotify_init": 262,
                "name_to_handle_at": 264,
                "open_by_handle_at": 265,
                "clock_adjtime": 266,
                "setns": 268,
                "process_vm_readv": 270,
                "process_vm_writev": 271,
                "kcmp": 272,
                "finit_module": 273,
                "seccomp": 277,
                "bpf": 280,
                "userfaultfd": 282,
                "kexec_file_load": 294,
                **_UNIFIED_NUMBERS,
            }
        ),
    }
)

# The value the kernel puts in seccomp_data.arch for each machine's native convention
# (include/uapi/linux/audit.h: machine number | 64-bit | little-endian).
_AUDIT_ARCH: Final = MappingProxyType({"x86_64": 0xC000003E, "aarch64": 0xC00000B7})

# x86_64 numbers with this bit set are x32 calls: same arch value, other convention.
_X32_SYSCALL_BIT: Final = 0x40000000
# seccomp_data.nr of -1 is not a call (a tracer skipping one shows it); let it through
# to the kernel, which answers ENOSYS, as libseccomp's filters do.
_NO_SYSCALL: Final = 0xFFFFFFFF

# personality(2) values allowed: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
# and 0xffffffff, which only queries. The same set container runtimes allow.
_ALLOWED_PERSONALITIES: Final = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# clone(2) flags that make a namespace: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
# NEWPID, NEWNET. CLONE_NEWTIME (0x80) is not among them: in clone()'s flags that bit
# belongs to the exit signal (only clone3 and unshare, both refused, can make a time
# namespace), so testing it would refuse nothing real.
_CLONE_NAMESPACE_FLAGS: Final = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]. The
# arguments the filter reads (personality's persona, clone's flags) are 32-bit values
# to the kernel, so the low word of args[0] decides: at offset 16 on little-endian
# machines, which both supported ones are.
_NR_OFFSET: Final = 0
_ARCH_OFFSET: Final = 4
_ARG0_LOW_OFFSET: Final = 16

# Classic BPF instruction codes (include/uapi/linux/filter.h).
_LD_W_ABS: Final = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K: Final = 0x05 | 0x10  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K: Final = 0x05 | 0x30  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K: Final = 0x05 | 0x40  # BPF_JMP | BPF_JSET | BPF_K
_RET_K: Final = 0x06  # BPF_RET | BPF_K

# Filter results (include/uapi/linux/seccomp.h).
_RET_KILL_PROCESS: Final = 0x80000000
_RET_ERRNO: Final = 0x00050000
_RET_ALLOW: Final = 0x7FFF0000

# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}, little-endian like the machines.
_INSTRUCTION: Final = struct.Struct("<HBBI")
# The kernel's limit on a filter's length (BPF_MAXINSNS).
MAX_INSTRUCTIONS: Final = 4096
# Conditional jumps are relative and forward only, at most this far.
_MAX_JUMP: Final = 255

_SECCOMP_SET_MODE_FILTER: Final = 1
_SECCOMP_FILTER_FLAG_TSYNC: Final = 1

# A line of the program before assembly: a label (str), or an instruction
# (code, k, label jumped to when true, label when false; None is the next instruction).
_Line = str | tuple[int, int, str | None, str | None]


def build_program(machine: str | None = None) -> bytes:
    """The filter for ``machine`` (default: this process's), as the bytes of an array of
    ``struct sock_filter``, ready for ``install_filter``. Pure: the same bytes each time.

    Raises OSError naming the machine when it is not x86_64 or aarch64 (or when this
    interpreter is 32-bit on a 64-bit kernel, which the filter would kill).
    """
    machine = _native_machine() if machine is None else machine
    numbers = _numbers(machine)
    deny = _RET_ERRNO | errno.EPERM
    lines: list[_Line] = [
        (_LD_W_ABS, _ARCH_OFFSET, None, None),
        (_JEQ_K, _AUDIT_ARCH[machine], None, "kill"),
        (_LD_W_ABS, _NR_OFFSET, None, None),
    ]
    if machine == "x86_64":
        lines += [
            (_JGE_K, _X32_SYSCALL_BIT, None, "numbers"),
            (_JEQ_K, _NO_SYSCALL, "numbers", "kill"),
        ]
    # Every denied number jumps to one shared return below: one instruction per call,
    # and the longest jump is the length of this list, far from the 255 limit.
    lines.append("numbers")
    lines += [(_JEQ_K, numbers[name], "deny", None) for name in _present(machine)]
    lines += [
        (_JEQ_K, numbers["personality"], "personality", None),
        (_JEQ_K, numbers["clone"], "clone", None),
        (_JEQ_K, numbers["clone3"], "enosys", None),
        (_RET_K, _RET_ALLOW, None, None),
        "deny",
        (_RET_K, deny, None, None),
        "enosys",
        (_RET_K, _RET_ERRNO | errno.ENOSYS, None, None),
        "kill",
        (_RET_K, _RET_KILL_PROCESS, None, None),
        # Only these two calls load an argument: the rest keep a per-number answer.
        "personality",
        (_LD_W_ABS, _ARG0_LOW_OFFSET, None, None),
        *[(_JEQ_K, value, "allow", None) for value in _ALLOWED_PERSONALITIES],
        (_RET_K, deny, None, None),
        "clone",
        (_LD_W_ABS, _ARG0_LOW_OFFSET, None, None),
        (_JSET_K, _CLONE_NAMESPACE_FLAGS, None, "allow"),
        (_RET_K, deny, None, None),
        "allow",
        (_RET_K, _RET_ALLOW, None, None),
    ]
    return _assemble(lines)


def install_filter(program: bytes | None = None) -> None:
    """Install ``program`` (default: ``build_program()``) as a seccomp filter on every
    thread of the calling process, for good: filters are inherited by children and
    threads and cannot be removed.

    The kernel accepts a filter only from a process with no_new_privs set
    (``prctl(PR_SET_NO_NEW_PRIVS, 1)``) or holding CAP_SYS_ADMIN; set it first. The filter
    is synchronised to all threads (SECCOMP_FILTER_FLAG_TSYNC): a thread started before,
    by an import or a library's pool, must not be left outside it; in a single-threaded
    process the flag costs nothing. One system call; the program's buffer lives until it
    returns (the kernel copies it).

    Raises ValueError if ``program`` is not a whole number of instructions within the
    kernel's limit, OSError (with the kernel's errno) if the kernel refuses the filter.
    """
    instructions = build_program() if program is None else program
    count, partial = divmod(len(instructions), _INSTRUCTION.size)
    if partial or not 0 < count <= MAX_INSTRUCTIONS:
        raise ValueError(f"not a filter program: {len(instructions)} bytes")
    number = _numbers(_native_machine())["seccomp"]
    buffer = ctypes.create_string_buffer(instructions, len(instructions))
    fprog = _SockFprog(count, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(
        ctypes.c_long(number),
        ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
        ctypes.c_long(_SECCOMP_FILTER_FLAG_TSYNC),
        ctypes.byref(fprog),
    )
    if result < 0:
        error = ctypes.get_errno()
        hint = " (set PR_SET_NO_NEW_PRIVS first)" if error == errno.EACCES else ""
        raise OSError(error, f"cannot install the seccomp filter: {os.strerror(error)}{hint}")
    if result > 0:
        # With TSYNC the kernel answers a thread id: that thread runs a filter this one
        # does not descend from, so the threads could not be given the same filter.
        raise OSError(
            errno.EBUSY, f"cannot install the seccomp filter: thread {result} has another"
        )


class _SockFprog(ctypes.Structure):
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def _native_machine() -> str:
    machine = os.uname().machine
    # A 32-bit interpreter on a 64-bit kernel makes its calls in the 32-bit convention,
    # which the filter for the kernel's machine would kill at once.
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        raise OSError(errno.ENOSYS, f"no seccomp filter for a 32-bit process on {machine!r}")
    return machine


def _numbers(machine: str) -> Mapping[str, int]:
    numbers = SYSCALL_NUMBERS.get(machine)
    if numbers is None:
        raise OSError(errno.ENOSYS, f"no seccomp filter for machine {machine!r}")
    return numbers


def _present(machine: str) -> list[str]:
    """The denied calls that exist on ``machine``."""
    return [name for name in DENIED_SYSCALLS if name in SYSCALL_NUMBERS[machine]]


def _assemble(lines: Sequence[_Line]) -> bytes:
    """Resolve the labels of ``lines`` into relative jumps and encode the instructions.
    Raises ValueError on a jump backwards or longer than BPF allows, or a program too long.
    """
    labels: dict[str, int] = {}
    instructions: list[tuple[int, int, str | None, str | None]] = []
    for line in lines:
        if isinstance(line, str):
            labels[line] = len(instructions)
        else:
            instructions.append(line)
    if len(instructions) > MAX_INSTRUCTIONS:
        raise ValueError(f"filter of {len(instructions)} instructions is too long")
    encoded = bytearray()
    for index, (code, k, when_true, when_false) in enumerate(instructions):
        jt = _jump(labels, index, when_true)
        jf = _jump(labels, index, when_false)
        encoded += _INSTRUCTION.pack(code, jt, jf, k)
    return bytes(encoded)


def _jump(labels: Mapping[str, int], index: int, target: str | None) -> int:
    if target is None:
        return 0
    offset = labels[target] - index - 1
    if not 0 <= offset <= _MAX_JUMP:
        raise ValueError(f"jump from instruction {index} to {target!r} spans {offset}")
    return offset
