"""Plain values that describe what a pool runs and what crosses it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What every worker of one endpoint runs.

    ``label`` names the endpoint in logs. ``environment`` is the container's Environment:
    it becomes the worker's environment on top of a minimal clean base (never the
    gateway's own variables). ``account`` owns the model: its workers run in its
    sandbox, as its uid, forked from its runtime zygote. ``network_isolation`` (the
    model's EnableNetworkIsolation) leaves them only a loopback network.
    """

    label: str
    model_dir: Path
    memory_mb: int
    environment: Mapping[str, str] = field(default_factory=dict)
    account: str = ""
    network_isolation: bool = False


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Bounds of one endpoint's pool. Validated at construction.

    ``min_workers`` are kept warm at all times: never reaped, restarted when they die
    (provisioned concurrency, or the instances of an instance-based variant).
    """

    max_workers: int
    idle_timeout_s: float
    invocation_timeout_s: float
    setup_timeout_s: float
    max_response_bytes: int
    min_workers: int = 0
    # How long an endpoint's model zygote outlives the endpoint's last invocation.
    zygote_idle_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {self.max_workers}")
        if not 0 <= self.min_workers <= self.max_workers:
            raise ValueError(
                f"min_workers must be in 0..max_workers ({self.max_workers}), "
                f"got {self.min_workers}"
            )
        for name in ("idle_timeout_s", "invocation_timeout_s", "setup_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be >= 1, got {self.max_response_bytes}")


@dataclass(frozen=True, slots=True)
class Invocation:
    """One request for the model, as the gateway received it."""

    request_id: str
    body: bytes
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    # W3C traceparent of the invocation's span, when traced: spans the model makes in
    # the worker join that trace.
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class InvocationResult:
    """The model's answer. ``status`` is what the model (the container) answered: 2xx is a
    success, anything else a model error whose ``body`` is the model's message."""

    status: int
    body: bytes
    content_type: str | None = None
    custom_attributes: str | None = None
    cold_start: bool = False
    # For a cold start: which warm tier served it ("model-zygote", "runtime-zygote",
    # "spawn") and how long until the worker was READY, in ms.
    tier: str | None = None
    init_ms: float | None = None
    # For a cold start: the new worker's pid on the host (model code sees its own pid
    # in its sandbox's namespace).
    worker_pid: int | None = None
    # How long the model took to answer (the worker call), in ms.
    model_ms: float = 0.0
    # For a cold start: (phase, ms) in order: "fork" or "spawn", "imports", "model_fn",
    # "ready" (the rest, until the READY handshake arrived).
    phases: tuple[tuple[str, float], ...] = ()
    # CPU seconds the worker spent on this invocation, and its peak resident memory.
    cpu_s: float | None = None
    max_rss_bytes: int | None = None
    # Spans the model made in the worker (plain data, see workers.child.tracing).
    spans: tuple[dict[str, object], ...] = ()
