"""The seccomp filter, against the real kernel: a child process sets no_new_privs,
installs the filter and reports what its system calls answered; a control child makes the
same calls without the filter, so each refusal is shown to come from the filter."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workers.child.seccomp import (
    DENIED_SYSCALLS,
    MAX_INSTRUCTIONS,
    SYSCALL_NUMBERS,
    build_program,
    install_filter,
)

ROOT = Path(__file__).resolve().parents[2]
MACHINE = os.uname().machine

# Run as `python -c PROBES filter|control`. Every probed call is made in a forked child,
# so that a call the control lets through (a new user namespace, a tracer) changes
# nothing in the process making the others.
PROBES = r"""
import ctypes, json, os, subprocess, sys, threading
from workers.child import seccomp

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = seccomp.SYSCALL_NUMBERS[os.uname().machine]
if sys.argv[1] == "filter":
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    seccomp.install_filter()


class Iovec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


def read_own_memory():
    source = ctypes.create_string_buffer(b"secret")
    target = ctypes.create_string_buffer(6)
    local = Iovec(ctypes.cast(target, ctypes.c_void_p), 6)
    remote = Iovec(ctypes.cast(source, ctypes.c_void_p), 6)
    pid = os.getpid()
    return ("process_vm_readv", pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)


CALLS = {
    "ptrace": lambda: ("ptrace", 0, 0, 0, 0),  # PTRACE_TRACEME
    "keyctl": lambda: ("keyctl", 0, -2, 0),  # KEYCTL_GET_KEYRING_ID, process keyring
    "unshare": lambda: ("unshare", 0x10000000),  # CLONE_NEWUSER
    "clone_newuser": lambda: ("clone", 0x10000000 | 17, 0, 0, 0, 0),  # with SIGCHLD
    "clone3": lambda: ("clone3", 0, 0),
    "process_vm_readv": read_own_memory,
    "mount": lambda: ("mount", b"none", b"/nonexistent-probe", b"tmpfs", 0, 0),
    "io_uring_setup": lambda: ("io_uring_setup", 1, 0),
    "personality_query": lambda: ("personality", 0xFFFFFFFF),
    "personality_no_randomize": lambda: ("personality", 0x0040000),
}


def call(make):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        me = os.getpid()
        name, *args = make()
        args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
        result = libc.syscall(ctypes.c_long(NR[name]), *args)
        error = ctypes.get_errno()
        if os.getpid() != me:  # a clone the kernel made: not ours to report
            os._exit(0)
        if name == "clone" and result > 0:
            os.waitpid(result, 0)
        os.write(write, json.dumps([result, error if result == -1 else 0]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        reported = json.loads(answer.read())
    os.waitpid(pid, 0)
    return reported


def fork_status():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def thread_ran():
    ran = []
    thread = threading.Thread(target=ran.append, args=(True,))
    thread.start()
    thread.join()
    return ran == [True]


def pidfd_works():
    os.close(os.pidfd_open(os.getpid()))
    os.kill(os.getpid(), 0)
    return True


print(json.dumps({
    "calls": {name: call(make) for name, make in CALLS.items()},
    "fork": fork_status(),
    "thread": thread_ran(),
    "true": subprocess.run(["/bin/true"]).returncode,
    "pidfd": pidfd_works(),
}))
"""

REFUSED = (
    "ptrace",
    "keyctl",
    "unshare",
    "clone_newuser",
    "process_vm_readv",
    "mount",
    "io_uring_setup",
    "personality_no_randomize",
)

needs_supported_machine = pytest.mark.skipif(
    MACHINE not in SYSCALL_NUMBERS, reason=f"no filter for {MACHINE}"
)


def run_probes(mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBES, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.fixture(scope="module")
def filtered() -> dict[str, Any]:
    return run_probes("filter")


@pytest.fixture(scope="module")
def control() -> dict[str, Any]:
    return run_probes("control")


@needs_supported_machine
@pytest.mark.parametrize("probe", REFUSED)
def test_the_filter_refuses_with_eperm(
    probe: str, filtered: dict[str, Any], control: dict[str, Any]
) -> None:
    assert filtered["calls"][probe] == [-1, errno.EPERM]
    # Without the filter the same call is answered otherwise, so the refusal is ours.
    assert control["calls"][probe] != [-1, errno.EPERM], "refused without the filter"


@needs_supported_machine
def test_ptrace_traceme_succeeds_without_the_filter(control: dict[str, Any]) -> None:
    assert control["calls"]["ptrace"] == [0, 0]


@needs_supported_machine
def test_clone3_answers_enosys_so_the_c_library_falls_back_to_clone(
    filtered: dict[str, Any], control: dict[str, Any]
) -> None:
    assert filtered["calls"]["clone3"] == [-1, errno.ENOSYS]
    assert control["calls"]["clone3"] != [-1, errno.ENOSYS]


@needs_supported_machine
def test_processes_threads_and_programs_still_start(filtered: dict[str, Any]) -> None:
    assert filtered["fork"] == 7
    assert filtered["thread"] is True
    assert filtered["true"] == 0
    assert filtered["pidfd"] is True


@needs_supported_machine
def test_personality_can_still_be_queried(
    filtered: dict[str, Any], control: dict[str, Any]
) -> None:
    assert filtered["calls"]["personality_query"] == control["calls"]["personality_query"]
    assert filtered["calls"]["personality_query"][0] >= 0


X32_GETPID = r"""
import ctypes, sys
from workers.child import seccomp

libc = ctypes.CDLL(None, use_errno=True)
if sys.argv[1] == "filter":
    libc.prctl(38, 1, 0, 0, 0)
    seccomp.install_filter()
libc.syscall(ctypes.c_long(0x40000000 | 39))  # getpid in the x32 convention
"""


@pytest.mark.skipif(MACHINE != "x86_64", reason="x32 is an x86_64 convention")
@pytest.mark.parametrize(("mode", "returncode"), [("filter", -signal.SIGSYS), ("control", 0)])
def test_an_x32_call_kills_the_process(mode: str, returncode: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", X32_GETPID, mode],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == returncode, done.stderr


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_programs_are_whole_instructions_within_the_kernel_limit(machine: str) -> None:
    program = build_program(machine)
    assert len(program) % 8 == 0
    assert 0 < len(program) // 8 < MAX_INSTRUCTIONS
    assert build_program(machine) == program


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_each_table_gives_distinct_numbers(machine: str) -> None:
    numbers = SYSCALL_NUMBERS[machine]
    assert len(set(numbers.values())) == len(numbers)
    assert {"personality", "clone", "clone3", "seccomp"} <= numbers.keys()


def test_every_denied_call_is_known_to_some_machine() -> None:
    known = {name for numbers in SYSCALL_NUMBERS.values() for name in numbers}
    assert set(DENIED_SYSCALLS) <= known
    assert len(set(DENIED_SYSCALLS)) == len(DENIED_SYSCALLS)
    assert "kill" not in DENIED_SYSCALLS
    assert "pidfd_open" not in DENIED_SYSCALLS


def test_an_unsupported_machine_is_named() -> None:
    with pytest.raises(OSError, match="sparc"):
        build_program("sparc")


@pytest.mark.parametrize("program", [b"", b"\x06\x00\x00\x00\x00\x00\xff", b"\0" * 8 * 4097])
def test_install_refuses_what_is_not_a_program(program: bytes) -> None:
    # Refused before any system call: this process stays unfiltered.
    with pytest.raises(ValueError, match="not a filter program"):
        install_filter(program)
