"""What crosses between the gateway and the processes it starts, message by message.

A frame (``workers.wire.framing``) carries a header object whose ``"t"`` names its type,
and a body of raw bytes. Each type's shape is declared here, one ``TypedDict`` per message
(``Literal`` for ``t``, ``NotRequired`` for the keys a sender may leave out), so a reader
can go from a send to what it sends. The types cost nothing at run time: senders annotate
their dict literals, and readers check ``t`` and then ``cast``; nothing is validated
beyond the frame itself.

A worker, over the socket pair it was started (or forked) with:

- worker -> gateway ``WorkerReady``, or ``Failed`` when loading the model raised (the
  worker then exits);
- then, one request at a time: gateway -> worker ``Invoke``, worker -> gateway ``Result``.

The gateway ends a worker by closing its end of the socket; the worker exits on EOF.

A zygote (see ``workers.child.zygote``), over its control socket, one request at a time:

- gateway -> runtime zygote, first: ``Start``; a model zygote is told what to load by the
  ``Fork`` that made it instead;
- zygote -> gateway, first: ``ZygoteReady``; or, from a model zygote, ``Failed`` or
  ``Unsuitable``, and then it exits;
- gateway -> zygote ``Fork``, with two file descriptors riding with its first byte: the
  new process's channel (its socket pair end) and its log (stdout and stderr); answer
  ``Forked`` or ``ForkError``. A worker forked this way then talks to the gateway over
  its channel as above;
- gateway -> runtime zygote ``Preload``; answer ``Preloaded``.

The gateway ends a zygote by closing its control socket; processes it forked live on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

# ------------------------------------------------------------------------- workers


class WorkerReady(TypedDict):
    """worker -> gateway, first: the model is loaded and the worker serves. No body.

    ``load_ms``: how long getting ready took (next to nothing in a worker forked with the
    model loaded); ``import_ms`` and ``model_fn_ms``: its parts spent importing the
    handler and in ``model_fn`` (0 in such a worker); ``imports``: the modules the
    handler imported, sorted.
    """

    t: Literal["ready"]
    pid: int
    load_ms: float
    import_ms: float
    model_fn_ms: float
    imports: list[str]


class Failed(TypedDict):
    """worker or model zygote -> gateway, instead of ready: loading the model raised.

    ``message``: the exception, as ``Type: text``. Body: the traceback text. The process
    exits after sending it.
    """

    t: Literal["failed"]
    message: str


class Invoke(TypedDict):
    """gateway -> worker: one request for the model. Body: the request payload.

    ``id``: the request id; ``traceparent``: the W3C traceparent of the invocation's span,
    only when the invocation is traced.
    """

    t: Literal["invoke"]
    id: str
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    traceparent: NotRequired[str]


class Result(TypedDict):
    """worker -> gateway: the answer to an ``Invoke``. Body: the response payload, or the
    error text when ``status`` is not 2xx (as the inference toolkit answers a handler
    exception).

    ``custom_attributes`` is left out of an error. The serve loop adds to every result
    ``cpu_s`` (the worker's CPU time for the call) and ``max_rss`` (its peak resident
    memory so far, in bytes), and ``spans`` (records of ``workers.wire.spans``) when the
    model made any under tracing.
    """

    t: Literal["result"]
    status: int
    content_type: str
    custom_attributes: NotRequired[str | None]
    cpu_s: NotRequired[float]
    max_rss: NotRequired[int]
    spans: NotRequired[list[dict[str, Any]]]


# ------------------------------------------------------------------------- zygotes


class Start(TypedDict):
    """gateway -> runtime zygote, first: the modules to pre-import (sent as a message,
    since thousands of names would not fit a command line), and, for sandboxed
    workers, a ``SandboxSpec.to_json()`` of its account whose shared part it lays out
    once (its model is a placeholder)."""

    t: Literal["start"]
    preload: list[str]
    sandbox: NotRequired[dict[str, Any] | None]


class ZygoteReady(TypedDict):
    """zygote -> gateway, first: the zygote is ready to fork.

    ``kind``: ``runtime`` (it pre-imported the frameworks) or ``model`` (it loaded one
    endpoint's model). ``load_ms``: how long that took; ``imports``: the modules it
    imported (a model zygote: those its handler imported, sorted). A runtime zygote also
    names the pre-imports that ``failed`` and those whose import started a thread
    (``threaded``, see ``Preloaded``).
    """

    t: Literal["ready"]
    pid: int
    kind: Literal["runtime", "model"]
    load_ms: float
    imports: list[str]
    failed: NotRequired[list[str]]
    threaded: NotRequired[list[str]]


class Unsuitable(TypedDict):
    """model zygote -> gateway, instead of ready: it cannot fork safely (threads run
    after the load, or the handler sets FORK_AFTER_LOAD = False); it then exits."""

    t: Literal["unsuitable"]
    reason: str


class ForkRequest(TypedDict):
    """What a ``Fork`` asks for, before it is sent (``ZygoteLink.fork`` adds its type).

    ``role``: the new process serves as a worker, or loads the model as a model zygote.
    ``env``: variables set in the new process; ``private_dir``: its HOME, TMPDIR and
    working directory; ``placement``: a ``Placement.to_json()`` it joins before any model
    code runs, or None; ``max_response_bytes``: a worker's payload limit; ``sandbox``: a
    ``workers.wire.sandbox.SandboxSpec.to_json()`` the new process enters before any
    model code runs (a sandboxed model zygote's workers share its sandbox instead).
    """

    role: Literal["worker", "model-zygote"]
    model_dir: str
    env: dict[str, str]
    private_dir: str
    placement: dict[str, Any] | None
    max_response_bytes: int
    sandbox: NotRequired[dict[str, Any] | None]


class Fork(ForkRequest):
    """gateway -> zygote: fork a worker or a model zygote. File descriptors [channel,
    log, cgroup files...] ride with it (the cgroup files the gateway opened for the new
    process to join its groups through). A runtime zygote's fork is a double fork, so the
    gateway adopts the new process; a sandboxed model zygote's workers are its own
    children in its pid namespace, and ``Forked`` counts their pid there."""

    t: Literal["fork"]


class Forked(TypedDict):
    """zygote -> gateway, the answer to a ``Fork``: the new process, adopted by the
    gateway by now."""

    t: Literal["forked"]
    pid: int


class ForkError(TypedDict):
    """zygote -> gateway, the answer to a ``Fork`` it could not do (a thread runs in it,
    the descriptors are missing, or the fork failed); ``message`` says which."""

    t: Literal["error"]
    message: str


class Preload(TypedDict):
    """gateway -> runtime zygote: import ``modules`` too (what a handler imported on its
    first load), so workers forked later start with them."""

    t: Literal["preload"]
    modules: list[str]


class Preloaded(TypedDict):
    """runtime zygote -> gateway, the answer to a ``Preload``: what it ``imported``, what
    ``failed`` to import, and the imports that started a thread (``threaded``: after
    those, forking there is unsafe and the gateway replaces it)."""

    t: Literal["preloaded"]
    imported: list[str]
    failed: list[str]
    threaded: list[str]


# Who sends what, by direction: on each, the ``t`` of every message is different.
GatewayToWorker = Invoke
WorkerToGateway = WorkerReady | Failed | Result
GatewayToZygote = Start | Fork | Preload
ZygoteToGateway = ZygoteReady | Failed | Unsuitable | Forked | ForkError | Preloaded
# Every message: what a frame's header may be.
Message = GatewayToWorker | WorkerToGateway | GatewayToZygote | ZygoteToGateway


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a worker process puts itself, as data the process applies to itself (with
    ``join_placement``) right after it starts or is forked, before any model code runs.

    ``cgroup_procs``: the ``cgroup.procs`` file of each of the worker's cgroups (empty
    without cgroups). ``cpu_affinity``: the CPUs to pin to when no cgroup caps CPU, else
    None. ``env``: the thread-count variables. ``fsize_limit``: RLIMIT_FSIZE in bytes.
    ``cgroup_v1``: the groups are cgroup v1 ones, which a single-threaded process joins
    through their ``tasks`` files instead (see ``join_cgroup``).
    """

    cgroup_procs: tuple[str, ...]
    cpu_affinity: tuple[int, ...] | None
    fsize_limit: int
    env: Mapping[str, str] = field(default_factory=dict)
    cgroup_v1: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form, for a frame header."""
        return {
            "cgroup_procs": list(self.cgroup_procs),
            "cpu_affinity": None if self.cpu_affinity is None else list(self.cpu_affinity),
            "env": dict(self.env),
            "fsize_limit": self.fsize_limit,
            "cgroup_v1": self.cgroup_v1,
        }

    @classmethod
    def from_json(cls, data: Any) -> Placement:
        """The inverse of ``to_json``. Raises ValueError for anything else."""
        if not isinstance(data, dict):
            raise ValueError(f"placement must be an object, got {type(data).__name__}")
        procs = data.get("cgroup_procs")
        affinity = data.get("cpu_affinity")
        env = data.get("env")
        fsize = data.get("fsize_limit")
        v1 = data.get("cgroup_v1", False)
        if not isinstance(procs, list) or not all(isinstance(p, str) for p in procs):
            raise ValueError("placement cgroup_procs must be a list of paths")
        if affinity is not None and (
            not isinstance(affinity, list)
            or not affinity
            or not all(isinstance(c, int) and c >= 0 for c in affinity)
        ):
            raise ValueError("placement cpu_affinity must be null or a list of CPU numbers")
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ValueError("placement env must map strings to strings")
        if not isinstance(fsize, int) or isinstance(fsize, bool) or fsize < 1:
            raise ValueError("placement fsize_limit must be a positive integer")
        if not isinstance(v1, bool):
            raise ValueError("placement cgroup_v1 must be true or false")
        return cls(
            cgroup_procs=tuple(procs),
            cpu_affinity=None if affinity is None else tuple(affinity),
            env=dict(env),
            fsize_limit=fsize,
            cgroup_v1=v1,
        )
