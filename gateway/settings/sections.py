"""The sections of the gateway's settings, each a frozen dataclass of declared fields.

Each setting is declared once, as a field carrying its default, its help text and its
value check (``meta``/``setting``); each section validates on construction. The checks
particular to one setting (SageMaker's limits on names, accounts, regions and environment
variables) are declared here with it; the rules across sections live with ``Settings``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from gateway.logs import LOG_FORMATS, LOG_LEVELS
from gateway.sagemaker.names import CONTROL_NAME_PATTERN, MAX_NAME_LENGTH
from gateway.sagemaker.variants import MEMORY_SIZES_MB
from gateway.settings.checks import between, matching, not_empty, one_of, positive
from gateway.settings.fields import SettingsError, meta, setting, validate

_VARIABLE_NAME = matching(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _environment(value: Mapping[str, str]) -> str | None:
    # SageMaker's limits on ContainerDefinition.Environment.
    if len(value) > 100:
        return f"must have at most 100 variables, got {len(value)}"
    for name, text in value.items():
        if (problem := _VARIABLE_NAME(name)) is not None:
            return f"variable name {problem}"
        if len(text) > 1024:
            return f"value of {name} must be at most 1024 characters, got {len(text)}"
    return None


def _module_names(value: tuple[str, ...]) -> str | None:
    for name in value:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name):
            return f"{name!r} is not a module name"
    return None


_ACCOUNT_ID = matching(r"\d{12}", 12)
_REGION = matching(r"[a-z]{2}(-[a-z]+)+-\d+", 32)
# SageMaker's EndpointName pattern and length limit.
_ENDPOINT_NAME = matching(CONTROL_NAME_PATTERN, MAX_NAME_LENGTH)


@dataclass(frozen=True, slots=True)
class CredentialSettings:
    """One access key the gateway accepts for SigV4, and the account it acts as."""

    access_key_id: str = field(
        metadata=meta("Access key id that clients sign with.", matching(r"\w+", 128))
    )
    secret_access_key: str = field(
        repr=False, metadata=meta("Secret key of that access key.", not_empty)
    )
    account_id: str = field(
        metadata=meta(
            "12-digit account the key acts as; accounts do not see each other's endpoints.",
            _ACCOUNT_ID,
        )
    )

    def __post_init__(self) -> None:
        validate(self)


def _empty_environment() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class EndpointDeclaration:
    """An endpoint declared in the config file, served from start-up.

    ``account_id``/``region`` of None mean the defaults that ``endpoint_placement`` applies.
    ``environment`` is stored read-only; it is left out of the hash (a read-only mapping is
    not hashable) but not out of equality.
    """

    name: str = field(
        metadata=meta(
            "Endpoint name that clients invoke: letters, digits and hyphens, at most 63; "
            "unique, ignoring case, within its account and region.",
            _ENDPOINT_NAME,
        )
    )
    model_dir: str = field(
        metadata=meta(
            "Folder holding the model: inference.py (or code/inference.py) and its "
            "artifacts. A relative path is relative to this file's folder; ~ is expanded.",
            not_empty,
            path=True,
        )
    )
    memory_size_mb: int = setting(
        1024,
        "Memory of each worker in MB: 1024, 2048, 3072, 4096, 5120 or 6144, as SageMaker's "
        "MemorySizeInMB. The worker's CPU share grows with it.",
        one_of(*MEMORY_SIZES_MB),
    )
    # 20 is what the SageMaker console proposes for a new serverless endpoint.
    max_concurrency: int = setting(
        20,
        "Invocations in flight at once, 1..200, as SageMaker's MaxConcurrency; also the most "
        "worker processes. Calls past it are throttled.",
        between(1, 200),
    )
    environment: Mapping[str, str] = field(
        default_factory=_empty_environment,
        hash=False,
        metadata=meta(
            "Environment variables of the model's workers, as ContainerDefinition.Environment: "
            "at most 100, names [a-zA-Z_][a-zA-Z0-9_]*, values of at most 1024 characters.",
            _environment,
        ),
    )
    account_id: str | None = setting(
        None,
        "Account that owns the endpoint. Default: the account of the first configured "
        "credential (000000000000 when none is configured).",
        _ACCOUNT_ID,
    )
    region: str | None = setting(None, "Region of the endpoint. Default: server.region.", _REGION)

    def __post_init__(self) -> None:
        validate(self)

    def model_path(self) -> Path:
        """``model_dir`` as a path, with ``~`` expanded."""
        return Path(self.model_dir).expanduser()


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The HTTP listener and process-wide behaviour."""

    host: str = setting(
        "127.0.0.1",
        "Address to listen on. With no [[auth.credentials]] configured the gateway refuses any "
        "address but a loopback one, since the development key would be open to all.",
        not_empty,
    )
    port: int = setting(8080, "TCP port, 0..65535; 0 picks any free port.", between(0, 65535))
    state_dir: str = setting(
        "~/.local/state/coldbrew",
        "Folder for persistent state (the endpoint registry). ~ is expanded; a relative path "
        "is relative to this file's folder.",
        not_empty,
        path=True,
    )
    region: str = setting(
        "us-east-1",
        "Default region, e.g. us-east-1: endpoints declared without a region live here.",
        _REGION,
    )
    shutdown_grace_s: float = setting(
        30.0,
        "Seconds a shutdown waits for in-flight invocations before workers are killed; "
        "SageMaker gives a container 30 s between SIGTERM and SIGKILL.",
        positive,
    )
    log_level: str = setting(
        "info",
        "Log verbosity: debug, info, warning or error.",
        one_of(*LOG_LEVELS),
    )

    log_format: str = setting(
        "text",
        "Log line format: text for people, or json (one object per line with time, level, "
        "logger, message, trace_id and span_id, and fields such as endpoint and worker) for "
        "log pipelines.",
        one_of(*LOG_FORMATS),
    )
    body_timeout_s: float = setting(
        60.0,
        "Seconds a client may take to send a request's body; a slower one gets 408 "
        "RequestTimeoutException and its connection is closed, so stalled senders cannot "
        "pile up.",
        positive,
    )

    def __post_init__(self) -> None:
        validate(self)

    def state_path(self) -> Path:
        """``state_dir`` as a path, with ``~`` expanded."""
        return Path(self.state_dir).expanduser()


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Who may call the gateway. Access key ids are unique."""

    credentials: tuple[CredentialSettings, ...] = setting(
        (),
        "Access keys accepted for SigV4, each acting as one account. With none configured, "
        "the development key test / test (account 000000000000) is accepted, and only on a "
        "loopback address.",
    )
    max_clock_skew_s: float = setting(
        300.0,
        "Seconds a request's X-Amz-Date may differ from the gateway's clock; AWS allows 5 minutes.",
        positive,
    )

    def __post_init__(self) -> None:
        validate(self)
        first_index: dict[str, int] = {}
        for index, credential in enumerate(self.credentials):
            earlier = first_index.setdefault(credential.access_key_id, index)
            if earlier != index:
                raise SettingsError(
                    f"access key id {credential.access_key_id!r} is already used by "
                    f"credentials[{earlier}]",
                    f"credentials[{index}].access_key_id",
                )


@dataclass(frozen=True, slots=True)
class QuotaSettings:
    """Limits per account and region, mirroring SageMaker Serverless quotas."""

    region_concurrency: int = setting(
        200,
        "Invocations in flight at once over all endpoints of one account in one region, "
        "1..10000 (SageMaker: 200). Calls past it get ThrottlingException.",
        between(1, 10000),
    )
    endpoints_per_region: int = setting(
        50,
        "Serverless endpoints one account may have in one region, 1..10000 (SageMaker: 50).",
        between(1, 10000),
    )
    max_payload_bytes: int = setting(
        4 * 1024 * 1024,
        "Largest request or response body in bytes, 1..6291456. Serverless endpoints allow "
        "4 MB (4194304), the SageMaker API 6 MB.",
        between(1, 6 * 1024 * 1024),
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Lifetimes and deadlines of worker processes."""

    idle_timeout_s: float = setting(
        300.0,
        "Seconds an idle worker stays warm before it is stopped; an endpoint without traffic "
        "scales back to zero processes.",
        positive,
    )
    invocation_timeout_s: float = setting(
        60.0,
        "Seconds a model has to answer one invocation (SageMaker: 60). Past it the worker is "
        "killed and the caller gets a ModelError.",
        positive,
    )
    setup_timeout_s: float = setting(
        180.0,
        "Seconds a cold start (process start and model load) may take (SageMaker: 3 minutes). "
        "Past it the worker is killed and the waiting invocation fails.",
        positive,
    )
    zygotes: bool = setting(
        True,
        "Start workers by forking zygotes: a runtime zygote that has imported the frameworks, "
        "and per endpoint with traffic a model zygote that holds the loaded model. false "
        "starts every worker as a fresh interpreter.",
    )
    preload: tuple[str, ...] = setting(
        (),
        'Modules the runtime zygote imports at start, e.g. ["numpy", "sklearn"]. Modules an '
        "endpoint's handler imported on its first load are added automatically.",
        _module_names,
    )
    zygote_idle_timeout_s: float = setting(
        600.0,
        "Seconds an endpoint's model zygote outlives the endpoint's last invocation; longer "
        "than idle_timeout_s, so cold starts after a short lull stay cheap while an idle "
        "endpoint still returns to zero processes.",
        positive,
    )
    mb_per_vcpu: int = setting(
        1769,
        "Memory that buys one vCPU: each worker's CPU is capped at MemorySizeInMB / "
        "mb_per_vcpu vCPUs (at most the host's) and weighted by MemorySizeInMB (AWS Lambda "
        "publishes 1769).",
        between(128, 65536),
    )
    cpu_limits: str = setting(
        "auto",
        "How worker CPU and memory are limited: auto (cgroup v2, else v1, else the fallback), "
        "cgroup2, cgroup1, fallback (CPU affinity, thread variables and a memory watchdog) or "
        "off.",
        one_of("auto", "cgroup2", "cgroup1", "fallback", "off"),
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """How model code is kept from the gateway and from other accounts' models."""

    mode: str = setting(
        "auto",
        "on: every process that runs model code is sandboxed (its account's uid, no "
        "capabilities, seccomp, its own pid, mount and ipc namespaces, a read-only view of "
        "the system); the gateway refuses to start where that cannot be built (it needs "
        "root). auto: on where it can be built; elsewhere off, and then only one account "
        "may be served. off: nothing is isolated (one trusted user only).",
        one_of("auto", "on", "off"),
    )
    uid_base: int = setting(
        200_000,
        "The first uid (and gid) given to model code; each account gets its own, from here "
        "up in the order of account ids. Use a range no other user of the machine has.",
        between(1, 2**31 - 2),
    )
    uid_count: int = setting(
        65_536,
        "How many uids from uid_base are Coldbrew's: at least the number of accounts.",
        between(1, 2**24),
    )
    pids_limit: int = setting(
        512,
        "Processes and threads each worker may have at once (its pids cgroup): a fork bomb "
        "stops there.",
        between(16, 4_194_304),
    )
    tmp_size_mb: int = setting(
        5120,
        "Size of each sandbox's private writable area (/tmp, also HOME): SageMaker "
        "Serverless Inference's 5 GB of ephemeral storage. It is memory-backed, so it "
        "counts against the worker's memory.",
        between(1, 1_048_576),
    )

    def __post_init__(self) -> None:
        validate(self)
