"""The gateway's settings: one typed, validated, immutable object loaded from TOML.

Each setting is declared once, as a dataclass field carrying its default, its help text
and its value check (``_meta``). Construction validates, so a ``Settings`` object is
valid however it was built (loaded, ``default_settings()``, ``override()`` or by hand),
and ``config/coldbrew.toml`` documents the same fields with the same help text (the
tests hold the two together).

Every refusal is a ``SettingsError`` whose message names the key, e.g.
``config key pool.idle_timeout_s: must be > 0, got -1``.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import MappingProxyType, NoneType, UnionType
from typing import TYPE_CHECKING, Any, Final, TypeVar, get_args, get_origin, get_type_hints

from gateway.logs import LOG_FORMATS, LOG_LEVELS
from gateway.sagemaker.names import CONTROL_NAME_PATTERN, MAX_NAME_LENGTH
from gateway.sagemaker.variants import MEMORY_SIZES_MB

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T", bound="DataclassInstance")
_V = TypeVar("_V")

# A check returns None for a good value, else the problem ("must be > 0, got -1").
Check = Callable[[Any], str | None]


class SettingsError(ValueError):
    """A configuration file, value or combination of values is refused.

    ``key`` is the dotted path of the offending setting (``endpoints[0].memory_size_mb``),
    or None when the file itself cannot be read or parsed; ``problem`` is the reason.
    """

    def __init__(self, problem: str, key: str | None = None) -> None:
        super().__init__(problem if key is None else f"config key {key}: {problem}")
        self.problem = problem
        self.key = key

    def within(self, prefix: str) -> SettingsError:
        """The same error with ``key`` placed under ``prefix`` (a no-op for an empty one)."""
        if not prefix or self.key is None:
            return self
        return SettingsError(self.problem, f"{prefix}.{self.key}")


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def _between(low: int, high: int) -> Check:
    def check(value: int) -> str | None:
        ok = low <= value <= high
        return None if ok else f"must be between {low} and {high}, got {value}"

    return check


def _positive(value: float) -> str | None:
    # nan fails every comparison and inf would disable a timeout: neither is a duration.
    return None if math.isfinite(value) and value > 0 else f"must be > 0, got {_show(value)}"


def _one_of(*allowed: object) -> Check:
    listed = ", ".join(str(a) for a in allowed)

    def check(value: object) -> str | None:
        return None if value in allowed else f"must be one of {listed}, got {_show(value)}"

    return check


def _matching(pattern: str, max_len: int = 1024) -> Check:
    compiled = re.compile(pattern, re.ASCII)

    def check(value: str) -> str | None:
        if len(value) <= max_len and compiled.fullmatch(value):
            return None
        return f"must match {pattern} (at most {max_len} characters), got {value!r}"

    return check


def _not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


_VARIABLE_NAME = _matching(r"[a-zA-Z_][a-zA-Z0-9_]*")


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


def _validate(obj: Any) -> None:
    """Check each field of the dataclass ``obj`` against its type and its check.

    Normalises in place: an int given for a float becomes a float, a mapping becomes a
    read-only copy. Raises ``SettingsError`` keyed by the field name.
    """
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        normal = _typed(hints[f.name], value, f.name)
        if normal is not value:
            # Frozen dataclass: normalising during construction is the one allowed write.
            object.__setattr__(obj, f.name, normal)
        check: Check | None = f.metadata["check"]
        if normal is not None and check is not None and (problem := check(normal)) is not None:
            raise SettingsError(problem, f.name)


def _typed(kind: Any, value: object, key: str) -> object:
    """``value`` if it has type ``kind`` (normalised), else a ``SettingsError``."""
    origin = get_origin(kind)
    if origin is UnionType:
        if value is None and NoneType in get_args(kind):
            return None
        (kind,) = (arg for arg in get_args(kind) if arg is not NoneType)
        origin = get_origin(kind)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(f"must be true or false, got {_describe(value)}", key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is Mapping and isinstance(value, Mapping):
        for name, text in value.items():
            _typed(str, name, key)
            _typed(str, text, f"{key}.{name}")
        return MappingProxyType(dict(value))
    if origin is tuple and isinstance(value, tuple):
        item_kind = get_args(kind)[0]
        for index, item in enumerate(value):
            _typed(item_kind, item, f"{key}[{index}]")
        return value
    # bool is an int subclass, but true is no port number.
    if isinstance(kind, type) and isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise SettingsError(f"must be {_expected(kind)}, got {_describe(value)}", key)


def _expected(kind: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", Mapping: "a table"}
    return names.get(kind) or names.get(get_origin(kind)) or f"a {getattr(kind, '__name__', kind)}"


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float | str):
        return f"{'number' if isinstance(value, float) else 'string'} {_show(value)}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return f"{type(value).__name__} {value}"


def _module_names(value: tuple[str, ...]) -> str | None:
    for name in value:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name):
            return f"{name!r} is not a module name"
    return None


def _meta(text: str, check: Check | None = None, *, path: bool = False) -> dict[str, object]:
    """Field metadata: help ``text``, a value ``check``, and whether a relative value in a
    config file is a path relative to that file's folder."""
    return {"help": text, "check": check, "path": path}


def _setting(default: _V, text: str, check: Check | None = None, *, path: bool = False) -> _V:
    """A field with a ``default``; see ``_meta`` for the rest."""
    return field(default=default, metadata=_meta(text, check, path=path))


_ACCOUNT_ID = _matching(r"\d{12}", 12)
_REGION = _matching(r"[a-z]{2}(-[a-z]+)+-\d+", 32)
# SageMaker's EndpointName pattern and length limit.
_ENDPOINT_NAME = _matching(CONTROL_NAME_PATTERN, MAX_NAME_LENGTH)


@dataclass(frozen=True, slots=True)
class CredentialSettings:
    """One access key the gateway accepts for SigV4, and the account it acts as."""

    access_key_id: str = field(
        metadata=_meta("Access key id that clients sign with.", _matching(r"\w+", 128))
    )
    secret_access_key: str = field(
        repr=False, metadata=_meta("Secret key of that access key.", _not_empty)
    )
    account_id: str = field(
        metadata=_meta(
            "12-digit account the key acts as; accounts do not see each other's endpoints.",
            _ACCOUNT_ID,
        )
    )

    def __post_init__(self) -> None:
        _validate(self)


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
        metadata=_meta(
            "Endpoint name that clients invoke: letters, digits and hyphens, at most 63; "
            "unique, ignoring case, within its account and region.",
            _ENDPOINT_NAME,
        )
    )
    model_dir: str = field(
        metadata=_meta(
            "Folder holding the model: inference.py (or code/inference.py) and its "
            "artifacts. A relative path is relative to this file's folder; ~ is expanded.",
            _not_empty,
            path=True,
        )
    )
    memory_size_mb: int = _setting(
        1024,
        "Memory of each worker in MB: 1024, 2048, 3072, 4096, 5120 or 6144, as SageMaker's "
        "MemorySizeInMB. The worker's CPU share grows with it.",
        _one_of(*MEMORY_SIZES_MB),
    )
    # 20 is what the SageMaker console proposes for a new serverless endpoint.
    max_concurrency: int = _setting(
        20,
        "Invocations in flight at once, 1..200, as SageMaker's MaxConcurrency; also the most "
        "worker processes. Calls past it are throttled.",
        _between(1, 200),
    )
    environment: Mapping[str, str] = field(
        default_factory=_empty_environment,
        hash=False,
        metadata=_meta(
            "Environment variables of the model's workers, as ContainerDefinition.Environment: "
            "at most 100, names [a-zA-Z_][a-zA-Z0-9_]*, values of at most 1024 characters.",
            _environment,
        ),
    )
    account_id: str | None = _setting(
        None,
        "Account that owns the endpoint. Default: the account of the first configured "
        "credential (000000000000 when none is configured).",
        _ACCOUNT_ID,
    )
    region: str | None = _setting(None, "Region of the endpoint. Default: server.region.", _REGION)

    def __post_init__(self) -> None:
        _validate(self)

    def model_path(self) -> Path:
        """``model_dir`` as a path, with ``~`` expanded."""
        return Path(self.model_dir).expanduser()


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The HTTP listener and process-wide behaviour."""

    host: str = _setting(
        "127.0.0.1",
        "Address to listen on. With no [[auth.credentials]] configured the gateway refuses any "
        "address but a loopback one, since the development key would be open to all.",
        _not_empty,
    )
    port: int = _setting(8080, "TCP port, 0..65535; 0 picks any free port.", _between(0, 65535))
    state_dir: str = _setting(
        "~/.local/state/coldbrew",
        "Folder for persistent state (the endpoint registry). ~ is expanded; a relative path "
        "is relative to this file's folder.",
        _not_empty,
        path=True,
    )
    region: str = _setting(
        "us-east-1",
        "Default region, e.g. us-east-1: endpoints declared without a region live here.",
        _REGION,
    )
    shutdown_grace_s: float = _setting(
        30.0,
        "Seconds a shutdown waits for in-flight invocations before workers are killed; "
        "SageMaker gives a container 30 s between SIGTERM and SIGKILL.",
        _positive,
    )
    log_level: str = _setting(
        "info",
        "Log verbosity: debug, info, warning or error.",
        _one_of(*LOG_LEVELS),
    )

    log_format: str = _setting(
        "text",
        "Log line format: text for people, or json (one object per line with time, level, "
        "logger, message, trace_id and span_id, and fields such as endpoint and worker) for "
        "log pipelines.",
        _one_of(*LOG_FORMATS),
    )
    body_timeout_s: float = _setting(
        60.0,
        "Seconds a client may take to send a request's body; a slower one gets 408 "
        "RequestTimeoutException and its connection is closed, so stalled senders cannot "
        "pile up.",
        _positive,
    )

    def __post_init__(self) -> None:
        _validate(self)

    def state_path(self) -> Path:
        """``state_dir`` as a path, with ``~`` expanded."""
        return Path(self.state_dir).expanduser()


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Who may call the gateway. Access key ids are unique."""

    credentials: tuple[CredentialSettings, ...] = _setting(
        (),
        "Access keys accepted for SigV4, each acting as one account. With none configured, "
        "the development key test / test (account 000000000000) is accepted, and only on a "
        "loopback address.",
    )
    max_clock_skew_s: float = _setting(
        300.0,
        "Seconds a request's X-Amz-Date may differ from the gateway's clock; AWS allows 5 minutes.",
        _positive,
    )

    def __post_init__(self) -> None:
        _validate(self)
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

    region_concurrency: int = _setting(
        200,
        "Invocations in flight at once over all endpoints of one account in one region, "
        "1..10000 (SageMaker: 200). Calls past it get ThrottlingException.",
        _between(1, 10000),
    )
    endpoints_per_region: int = _setting(
        50,
        "Serverless endpoints one account may have in one region, 1..10000 (SageMaker: 50).",
        _between(1, 10000),
    )
    max_payload_bytes: int = _setting(
        4 * 1024 * 1024,
        "Largest request or response body in bytes, 1..6291456. Serverless endpoints allow "
        "4 MB (4194304), the SageMaker API 6 MB.",
        _between(1, 6 * 1024 * 1024),
    )

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Lifetimes and deadlines of worker processes."""

    idle_timeout_s: float = _setting(
        300.0,
        "Seconds an idle worker stays warm before it is stopped; an endpoint without traffic "
        "scales back to zero processes.",
        _positive,
    )
    invocation_timeout_s: float = _setting(
        60.0,
        "Seconds a model has to answer one invocation (SageMaker: 60). Past it the worker is "
        "killed and the caller gets a ModelError.",
        _positive,
    )
    setup_timeout_s: float = _setting(
        180.0,
        "Seconds a cold start (process start and model load) may take (SageMaker: 3 minutes). "
        "Past it the worker is killed and the waiting invocation fails.",
        _positive,
    )
    zygotes: bool = _setting(
        True,
        "Start workers by forking zygotes: a runtime zygote that has imported the frameworks, "
        "and per endpoint with traffic a model zygote that holds the loaded model. false "
        "starts every worker as a fresh interpreter.",
    )
    preload: tuple[str, ...] = _setting(
        (),
        'Modules the runtime zygote imports at start, e.g. ["numpy", "sklearn"]. Modules an '
        "endpoint's handler imported on its first load are added automatically.",
        _module_names,
    )
    zygote_idle_timeout_s: float = _setting(
        600.0,
        "Seconds an endpoint's model zygote outlives the endpoint's last invocation; longer "
        "than idle_timeout_s, so cold starts after a short lull stay cheap while an idle "
        "endpoint still returns to zero processes.",
        _positive,
    )
    mb_per_vcpu: int = _setting(
        1769,
        "Memory that buys one vCPU: each worker's CPU is capped at MemorySizeInMB / "
        "mb_per_vcpu vCPUs (at most the host's) and weighted by MemorySizeInMB (AWS Lambda "
        "publishes 1769).",
        _between(128, 65536),
    )
    cpu_limits: str = _setting(
        "auto",
        "How worker CPU and memory are limited: auto (cgroup v2, else v1, else the fallback), "
        "cgroup2, cgroup1, fallback (CPU affinity, thread variables and a memory watchdog) or "
        "off.",
        _one_of("auto", "cgroup2", "cgroup1", "fallback", "off"),
    )

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway is configured with.

    Besides each field's own check, construction refuses an endpoint whose account has no
    credential, two endpoints with the same name (ignoring case) in one account and region,
    and more endpoints in one account and region than ``quotas.endpoints_per_region``.
    """

    server: ServerSettings = field(
        default_factory=ServerSettings,
        metadata=_meta("The HTTP listener and process-wide behaviour."),
    )
    auth: AuthSettings = field(
        default_factory=AuthSettings, metadata=_meta("Who may call the gateway.")
    )
    quotas: QuotaSettings = field(
        default_factory=QuotaSettings,
        metadata=_meta("Limits per account and region, mirroring SageMaker Serverless quotas."),
    )
    pool: PoolSettings = field(
        default_factory=PoolSettings, metadata=_meta("Lifetimes and deadlines of workers.")
    )
    endpoints: tuple[EndpointDeclaration, ...] = _setting(
        (),
        "Endpoints served from start-up, each backed by a model folder. The control-plane API "
        "(CreateModel, CreateEndpointConfig, CreateEndpoint) adds more at run time.",
    )

    def __post_init__(self) -> None:
        _validate(self)
        _check_endpoints(self)


DEV_CREDENTIAL: Final = CredentialSettings("test", "test", "000000000000")


def default_settings() -> Settings:
    """Every setting at its default: no credentials, no declared endpoints."""
    return Settings()


def effective_credentials(settings: Settings) -> tuple[CredentialSettings, ...]:
    """The configured credentials, or ``(DEV_CREDENTIAL,)`` when none are configured."""
    return settings.auth.credentials or (DEV_CREDENTIAL,)


def endpoint_placement(settings: Settings, endpoint: EndpointDeclaration) -> tuple[str, str]:
    """The ``(account_id, region)`` a declared endpoint belongs to, defaults applied."""
    account = endpoint.account_id or effective_credentials(settings)[0].account_id
    return account, endpoint.region or settings.server.region


def _check_endpoints(settings: Settings) -> None:
    accounts = {credential.account_id for credential in effective_credentials(settings)}
    first_index: dict[tuple[str, str, str], int] = {}
    per_region: Counter[tuple[str, str]] = Counter()
    for index, endpoint in enumerate(settings.endpoints):
        account, region = endpoint_placement(settings, endpoint)
        if account not in accounts:
            raise SettingsError(
                f"no credential acts as account {account}, so no client could call this endpoint",
                f"endpoints[{index}].account_id",
            )
        # ARNs are lower-cased, so names differing only in case would collide.
        earlier = first_index.setdefault((account, region, endpoint.name.lower()), index)
        if earlier != index:
            raise SettingsError(
                f"endpoint {endpoint.name!r} is already declared by endpoints[{earlier}] "
                f"in account {account}, region {region}",
                f"endpoints[{index}].name",
            )
        per_region[account, region] += 1
        if per_region[account, region] > settings.quotas.endpoints_per_region:
            raise SettingsError(
                f"more endpoints in account {account}, region {region} than "
                f"quotas.endpoints_per_region ({settings.quotas.endpoints_per_region})",
                f"endpoints[{index}]",
            )


def check_bind_safety(settings: Settings) -> None:
    """Refuse to serve the development credentials beyond this machine.

    Raises ``SettingsError`` (key ``server.host``) when no credentials are configured and
    ``server.host`` is not a loopback address (127.0.0.0/8, ::1 or localhost).
    """
    host = settings.server.host
    if settings.auth.credentials or _is_loopback(host):
        return
    raise SettingsError(
        f"refusing to listen on {host!r} with no credentials configured: anyone who can "
        f"reach it could sign requests with the development key "
        f"{DEV_CREDENTIAL.access_key_id!r}. Configure [[auth.credentials]] or listen on a "
        "loopback address such as 127.0.0.1",
        "server.host",
    )


def _is_loopback(host: str) -> bool:
    bare = host.strip().removeprefix("[").removesuffix("]")
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def override(settings: Settings, key: str, value: object) -> Settings:
    """A copy of ``settings`` with the setting ``key`` (``"server.port"``) set to ``value``.

    ``value`` must have the setting's type (ints are accepted for numbers). Raises
    ``SettingsError`` naming ``key`` for an unknown key or a refused value.
    """
    section_name, _, name = key.partition(".")
    sections = {f.name for f in fields(Settings)}
    section: Any = getattr(settings, section_name) if section_name in sections else None
    names = {f.name for f in fields(section)} if is_dataclass(section) else set()
    if name not in names:
        raise SettingsError("unknown setting", key)
    try:
        updated: Any = replace(section, **{name: value})
    except SettingsError as exc:
        raise exc.within(section_name) from None
    return replace(settings, **{section_name: updated})


@dataclass(frozen=True, slots=True)
class SettingDoc:
    """The help text of one setting. ``key`` is its dotted path; items of an array of
    tables appear as ``endpoints[].name``."""

    key: str
    help: str


def describe_settings() -> tuple[SettingDoc, ...]:
    """Every setting and section, in declaration order, with its help text."""
    return tuple(_describe_fields(Settings, ""))


def _describe_fields(cls: Any, prefix: str) -> Iterator[SettingDoc]:
    hints = get_type_hints(cls)
    for f in fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        yield SettingDoc(key, f.metadata["help"])
        kind = hints[f.name]
        if get_origin(kind) is tuple and is_dataclass(get_args(kind)[0]):
            yield from _describe_fields(get_args(kind)[0], f"{key}[]")
        elif isinstance(kind, type) and is_dataclass(kind):
            yield from _describe_fields(kind, key)


def load_settings(path: Path | None) -> Settings:
    """Read and validate the TOML config file at ``path``; None gives the defaults.

    Settings left out of the file keep their defaults; unknown sections and keys are
    refused. Relative path settings resolve against the file's folder. Raises
    ``SettingsError`` when the file cannot be read, is not TOML, or holds a refused value.
    """
    if path is None:
        return default_settings()
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
    return _build(Settings, document, "", path.absolute().parent)


def _build(cls: type[_T], table: dict[str, Any], prefix: str, base_dir: Path) -> _T:
    """``cls`` built from a TOML table; keys in errors are placed under ``prefix``."""
    hints = get_type_hints(cls)
    declared = {f.name: f for f in fields(cls)}
    arguments: dict[str, object] = {}
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in declared:
            raise SettingsError(
                "unknown section" if isinstance(value, dict) else "unknown setting", key
            )
        if declared[name].metadata["path"] and isinstance(value, str):
            value = _resolve_path(value, base_dir)
        arguments[name] = _convert(hints[name], value, key, base_dir)
    try:
        return cls(**arguments)
    except SettingsError as exc:
        raise exc.within(prefix) from None


def _convert(kind: Any, value: object, key: str, base_dir: Path) -> object:
    """Tables become the section's dataclass, arrays of tables a tuple of them; the
    constructors check everything else."""
    if get_origin(kind) is tuple and not is_dataclass(get_args(kind)[0]):
        # An array of plain values: each item's type is checked by the constructor.
        if not isinstance(value, list):
            raise SettingsError(f"must be an array, got {_describe(value)}", key)
        return tuple(value)
    if get_origin(kind) is tuple:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise SettingsError(f"must be an array of tables, got {_describe(value)}", key)
        item_kind = get_args(kind)[0]
        return tuple(
            _build(item_kind, item, f"{key}[{index}]", base_dir) for index, item in enumerate(value)
        )
    if isinstance(kind, type) and is_dataclass(kind):
        if not isinstance(value, dict):
            raise SettingsError(f"must be a table, got {_describe(value)}", key)
        return _build(kind, value, key, base_dir)
    return value


def _resolve_path(value: str, base_dir: Path) -> str:
    # "~" paths stay as written and are expanded at use, so the shipped file's value
    # equals the default; a blank one stays blank for its check to refuse.
    if not value.strip() or value.startswith("~") or Path(value).is_absolute():
        return value
    return str(base_dir / value)
