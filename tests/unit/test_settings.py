"""Settings: the shipped config file, loading, validation and the bind-safety rule."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest

from gateway.settings import (
    DEV_CREDENTIAL,
    AuthSettings,
    CredentialSettings,
    EndpointDeclaration,
    PoolSettings,
    QuotaSettings,
    ServerSettings,
    Settings,
    SettingsError,
    check_bind_safety,
    default_settings,
    effective_credentials,
    endpoint_placement,
    load_settings,
    override,
)

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "coldbrew.toml"

# A commented-out example line: "# [[endpoints]]" or "# name = ...", never "# # help".
EXAMPLE_LINE = re.compile(r"^# (\[\[[\w.]+\]\]|\w+ = .*)$")

CREDENTIAL = '[[auth.credentials]]\naccess_key_id = "AKIDONE"\nsecret_access_key = "s1"\n'
CREDENTIAL += 'account_id = "111111111111"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "coldbrew.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(tmp_path: Path, text: str) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, text))
    return info.value


def endpoint(extra: str = "", name: str = "ep", model_dir: str | None = None) -> str:
    folder = f"/models/{name}" if model_dir is None else model_dir
    return f'[[endpoints]]\nname = "{name}"\nmodel_dir = "{folder}"\n{extra}\n'


def example_toml(text: str) -> str:
    return "\n".join(m[1] for line in text.splitlines() if (m := EXAMPLE_LINE.match(line)))


def comment_text(text: str) -> str:
    lines = [line.strip().lstrip("# ") for line in text.splitlines() if line.strip()[:1] == "#"]
    return " ".join(" ".join(lines).split())


def declared_help(cls: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every setting and section of ``cls`` with its help text, in declaration order;
    items of an array of tables appear as ``endpoints[].name``."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        yield key, f.metadata["help"]
        kind = hints[f.name]
        if get_origin(kind) is tuple and dataclasses.is_dataclass(get_args(kind)[0]):
            yield from declared_help(get_args(kind)[0], f"{key}[]")
        elif dataclasses.is_dataclass(kind):
            yield from declared_help(kind, key)


def declared_keys(cls: Any) -> Iterator[str]:
    return (key for key, _ in declared_help(cls))


def toml_keys(table: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        yield key
        if isinstance(value, dict) and name != "environment":
            yield from toml_keys(value, key)
        elif isinstance(value, list):
            for item in value:
                yield from toml_keys(item, f"{key}[]")


# The shipped file


def test_shipped_config_is_exactly_the_defaults() -> None:
    """config/coldbrew.toml parses to exactly default_settings()."""
    assert load_settings(SHIPPED) == default_settings()


def test_shipped_config_documents_every_setting() -> None:
    """Every declared field is a key of the shipped file or of its commented examples."""
    text = SHIPPED.read_text(encoding="utf-8")
    present = set(toml_keys(tomllib.loads(text))) | set(
        toml_keys(tomllib.loads(example_toml(text)))
    )
    assert set(declared_keys(Settings)) <= present


def test_shipped_examples_are_valid_and_complete(tmp_path: Path) -> None:
    """The commented credential and endpoint examples, uncommented, load and set every field."""
    example = example_toml(SHIPPED.read_text(encoding="utf-8"))
    tables = tomllib.loads(example)
    assert set(tables["auth"]["credentials"][0]) == {
        f.name for f in dataclasses.fields(CredentialSettings)
    }
    assert set(tables["endpoints"][0]) == {f.name for f in dataclasses.fields(EndpointDeclaration)}
    settings = load_settings(write(tmp_path, example))
    assert len(settings.auth.credentials) == 1
    assert len(settings.endpoints) == 1


def test_shipped_config_carries_every_help_text() -> None:
    """Each setting's help text appears as a comment in the shipped file."""
    comments = comment_text(SHIPPED.read_text(encoding="utf-8"))
    help_texts = list(declared_help(Settings))
    missing = [key for key, text in help_texts if " ".join(text.split()) not in comments]
    assert missing == []


def test_every_setting_has_help_text() -> None:
    """Every declared field, sections and arrays of tables included, says what it is."""
    assert all(text.strip() for _, text in declared_help(Settings))


# Loading


def test_no_path_gives_the_defaults() -> None:
    """load_settings(None) is default_settings(), which is every field at its default."""
    assert load_settings(None) == default_settings() == Settings()
    assert default_settings().server.port == 8080
    assert default_settings().quotas.max_payload_bytes == 4 * 1024 * 1024


def test_missing_file_is_refused_with_its_path(tmp_path: Path) -> None:
    """A config file that does not exist is a SettingsError naming the path."""
    path = tmp_path / "absent.toml"
    with pytest.raises(SettingsError, match="cannot read config file") as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert info.value.key is None


def test_invalid_toml_is_refused_with_path_and_parse_error(tmp_path: Path) -> None:
    """A file that is not TOML is a SettingsError naming the path and the parse error."""
    path = write(tmp_path, "[server\nport = 1\n")
    with pytest.raises(SettingsError, match="is not valid TOML") as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert "line 1" in str(info.value)


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    """Settings left out of the file keep their defaults; ints are accepted for numbers."""
    settings = load_settings(write(tmp_path, "[pool]\nidle_timeout_s = 5\n"))
    assert settings.pool.idle_timeout_s == 5.0
    assert isinstance(settings.pool.idle_timeout_s, float)
    assert settings == override(default_settings(), "pool.idle_timeout_s", 5.0)


def test_full_file_round_trips(tmp_path: Path) -> None:
    """A file setting every section, credentials and endpoints loads to exactly those values."""
    text = """
[server]
host = "0.0.0.0"
port = 0
state_dir = "/var/lib/coldbrew"
region = "eu-west-1"
shutdown_grace_s = 5.5
log_level = "debug"

[auth]
max_clock_skew_s = 60

[[auth.credentials]]
access_key_id = "AKIDONE"
secret_access_key = "s1"
account_id = "111111111111"

[[auth.credentials]]
access_key_id = "AKIDTWO"
secret_access_key = "s2"
account_id = "222222222222"

[quotas]
region_concurrency = 10
endpoints_per_region = 3
max_payload_bytes = 6291456

[pool]
idle_timeout_s = 0.5
invocation_timeout_s = 2.0
setup_timeout_s = 3.0

[[endpoints]]
name = "iris"
model_dir = "/models/iris"

[[endpoints]]
name = "big-model"
model_dir = "/models/big"
memory_size_mb = 6144
max_concurrency = 200
environment = { MODEL_THRESHOLD = "0.5", _X = "" }
account_id = "222222222222"
region = "us-west-2"
"""
    expected = Settings(
        server=ServerSettings("0.0.0.0", 0, "/var/lib/coldbrew", "eu-west-1", 5.5, "debug"),
        auth=AuthSettings(
            credentials=(
                CredentialSettings("AKIDONE", "s1", "111111111111"),
                CredentialSettings("AKIDTWO", "s2", "222222222222"),
            ),
            max_clock_skew_s=60.0,
        ),
        quotas=QuotaSettings(10, 3, 6291456),
        pool=PoolSettings(0.5, 2.0, 3.0),
        endpoints=(
            EndpointDeclaration("iris", "/models/iris"),
            EndpointDeclaration(
                "big-model",
                "/models/big",
                memory_size_mb=6144,
                max_concurrency=200,
                environment={"MODEL_THRESHOLD": "0.5", "_X": ""},
                account_id="222222222222",
                region="us-west-2",
            ),
        ),
    )
    settings = load_settings(write(tmp_path, text))
    assert settings == expected
    assert endpoint_placement(settings, settings.endpoints[0]) == ("111111111111", "eu-west-1")
    assert endpoint_placement(settings, settings.endpoints[1]) == ("222222222222", "us-west-2")
    check_bind_safety(settings)


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative model_dir/state_dir resolve against the file's folder, not the working one;
    absolute and ~ paths are kept as written."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "coldbrew.toml").write_text(
        '[server]\nstate_dir = "state"\n'
        + endpoint(name="a", model_dir="models/a")
        + endpoint(name="b")
        + endpoint(name="c", model_dir="~/c"),
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("etc/coldbrew.toml"))
    assert settings.endpoints[0].model_dir == str(folder / "models" / "a")
    assert settings.endpoints[1].model_dir == "/models/b"
    assert settings.endpoints[2].model_dir == "~/c"
    assert settings.endpoints[2].model_path() == Path.home() / "c"
    assert settings.server.state_path() == folder / "state"


def test_default_state_dir_expands_home() -> None:
    """state_path() expands the default ~ path to the home folder."""
    assert default_settings().server.state_path() == Path.home() / ".local/state/coldbrew"


# Refusals


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\ncolour = "blue"\n', "config key server.colour: unknown setting"),
        ("[servr]\nport = 1\n", "config key servr: unknown section"),
        ("colour = 1\n", "config key colour: unknown setting"),
        ("[auth]\nmode = 1\n", "config key auth.mode: unknown setting"),
        (
            CREDENTIAL + "region = 'us-east-1'\n",
            "config key auth.credentials[0].region: unknown setting",
        ),
        (
            endpoint() + endpoint('instance_type = "ml.m5.large"', name="b"),
            "config key endpoints[1].instance_type: unknown setting",
        ),
    ],
)
def test_unknown_keys_and_sections_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """Unknown sections and keys, at any depth, are refused with the key named."""
    assert str(refusal(tmp_path, text)) == message


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[server]\nhost = ''\n", "server.host", "must not be empty"),
        ("[server]\nport = 65536\n", "server.port", "must be between 0 and 65535, got 65536"),
        ("[server]\nport = -1\n", "server.port", "must be between 0 and 65535, got -1"),
        ("[server]\nstate_dir = ' '\n", "server.state_dir", "must not be empty"),
        ("[server]\nregion = 'US-EAST-1'\n", "server.region", "must match"),
        ("[server]\nregion = 'useast1'\n", "server.region", "must match"),
        ("[server]\nshutdown_grace_s = 0\n", "server.shutdown_grace_s", "must be > 0, got 0"),
        (
            "[server]\nlog_level = 'verbose'\n",
            "server.log_level",
            "must be one of debug, info, warning, error, got 'verbose'",
        ),
        ("[auth]\nmax_clock_skew_s = -5\n", "auth.max_clock_skew_s", "must be > 0, got -5"),
        (
            "[quotas]\nregion_concurrency = 0\n",
            "quotas.region_concurrency",
            "must be between 1 and 10000, got 0",
        ),
        (
            "[quotas]\nendpoints_per_region = 10001\n",
            "quotas.endpoints_per_region",
            "must be between 1 and 10000, got 10001",
        ),
        (
            "[quotas]\nmax_payload_bytes = 6291457\n",
            "quotas.max_payload_bytes",
            "must be between 1 and 6291456, got 6291457",
        ),
        ("[pool]\nidle_timeout_s = -1\n", "pool.idle_timeout_s", "must be > 0, got -1"),
        ("[pool]\ninvocation_timeout_s = nan\n", "pool.invocation_timeout_s", "must be > 0"),
        ("[pool]\nsetup_timeout_s = inf\n", "pool.setup_timeout_s", "must be > 0, got inf"),
        (
            CREDENTIAL.replace("111111111111", "12345"),
            "auth.credentials[0].account_id",
            "must match",
        ),
        (
            CREDENTIAL.replace("AKIDONE", "AKID ONE"),
            "auth.credentials[0].access_key_id",
            "must match",
        ),
        (
            CREDENTIAL.replace('"s1"', '""'),
            "auth.credentials[0].secret_access_key",
            "must not be empty",
        ),
        (
            CREDENTIAL + CREDENTIAL.replace("111111111111", "222222222222"),
            "auth.credentials[1].access_key_id",
            "access key id 'AKIDONE' is already used by credentials[0]",
        ),
        (
            endpoint("memory_size_mb = 1500"),
            "endpoints[0].memory_size_mb",
            "must be one of 1024, 2048, 3072, 4096, 5120, 6144, got 1500",
        ),
        (
            endpoint("max_concurrency = 201"),
            "endpoints[0].max_concurrency",
            "must be between 1 and 200, got 201",
        ),
        (
            endpoint("max_concurrency = 0"),
            "endpoints[0].max_concurrency",
            "must be between 1 and 200, got 0",
        ),
        (endpoint(name="-leading-hyphen"), "endpoints[0].name", "must match"),
        (endpoint(name="under_score"), "endpoints[0].name", "must match"),
        (
            endpoint(name="a" * 64),
            "endpoints[0].name",
            "must match [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62} (at most 63 characters)",
        ),
        (
            endpoint(model_dir=""),
            "endpoints[0].model_dir",
            "must not be empty",
        ),
        (
            endpoint("environment = { 1BAD = 'x' }"),
            "endpoints[0].environment",
            "variable name must match",
        ),
        (
            endpoint(f"environment = {{ LONG = '{'x' * 1025}' }}"),
            "endpoints[0].environment",
            "value of LONG must be at most 1024 characters, got 1025",
        ),
        (
            endpoint("environment = { " + ", ".join(f"V{i} = 'x'" for i in range(101)) + " }"),
            "endpoints[0].environment",
            "must have at most 100 variables, got 101",
        ),
        (
            endpoint("environment = { N = 1 }"),
            "endpoints[0].environment.N",
            "must be a string, got integer 1",
        ),
        (endpoint("account_id = 'abc'"), "endpoints[0].account_id", "must match"),
        (endpoint("region = 'mars'"), "endpoints[0].region", "must match"),
        (
            endpoint("account_id = '999999999999'"),
            "endpoints[0].account_id",
            "no credential acts as account 999999999999",
        ),
        (
            endpoint(name="Iris") + endpoint(name="iris"),
            "endpoints[1].name",
            "endpoint 'iris' is already declared by endpoints[0] in account 000000000000, "
            "region us-east-1",
        ),
        (
            "[quotas]\nendpoints_per_region = 1\n" + endpoint(name="a") + endpoint(name="b"),
            "endpoints[1]",
            "more endpoints in account 000000000000, region us-east-1 than "
            "quotas.endpoints_per_region (1)",
        ),
    ],
)
def test_each_rule_is_refused_naming_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    """Each validation rule refuses its bad value with a message that names the key."""
    error = refusal(tmp_path, text)
    assert error.key == key
    assert str(error).startswith(f"config key {key}: {problem}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[pool]\nidle_timeout_s = 'abc'\n",
            "config key pool.idle_timeout_s: must be a number, got string 'abc'",
        ),
        ("[server]\nport = true\n", "config key server.port: must be an integer, got boolean true"),
        (
            "[quotas]\nregion_concurrency = false\n",
            "config key quotas.region_concurrency: must be an integer, got boolean false",
        ),
        (
            "[pool]\nidle_timeout_s = true\n",
            "config key pool.idle_timeout_s: must be a number, got boolean true",
        ),
        ("[server]\nport = 80.0\n", "config key server.port: must be an integer, got number 80"),
        ("[server]\nhost = 127\n", "config key server.host: must be a string, got integer 127"),
        ("[server]\nhost = ['a']\n", "config key server.host: must be a string, got an array"),
        ("server = 5\n", "config key server: must be a table, got integer 5"),
        (
            '[endpoints]\nname = "a"\n',
            "config key endpoints: must be an array of tables, got a table",
        ),
        (
            "[auth]\ncredentials = ['AKID']\n",
            "config key auth.credentials: must be an array of tables, got an array",
        ),
        (
            endpoint("environment = 'A=1'"),
            "config key endpoints[0].environment: must be a table, got string 'A=1'",
        ),
        (
            endpoint("memory_size_mb = '2048'"),
            "config key endpoints[0].memory_size_mb: must be an integer, got string '2048'",
        ),
    ],
)
def test_wrong_types_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """Values of the wrong TOML type are refused, booleans included where ints are due."""
    assert str(refusal(tmp_path, text)) == message


def test_same_endpoint_name_in_other_region_or_account_is_allowed(tmp_path: Path) -> None:
    """Endpoint names need to be unique only within one account and region."""
    text = (
        CREDENTIAL
        + CREDENTIAL.replace("AKIDONE", "AKIDTWO").replace("111111111111", "222222222222")
        + endpoint(name="iris")
        + endpoint("region = 'eu-west-1'", name="IRIS")
        + endpoint("account_id = '222222222222'", name="Iris")
    )
    settings = load_settings(write(tmp_path, text))
    assert [endpoint_placement(settings, e) for e in settings.endpoints] == [
        ("111111111111", "us-east-1"),
        ("111111111111", "eu-west-1"),
        ("222222222222", "us-east-1"),
    ]


# Construction, overrides and credentials


def test_construction_validates_without_a_file() -> None:
    """Building a section by hand runs the same checks, keyed by the field name."""
    with pytest.raises(SettingsError, match=r"^config key memory_size_mb: must be one of"):
        EndpointDeclaration("ep", "/m", memory_size_mb=1000)
    with pytest.raises(SettingsError, match=r"^config key port: must be an integer"):
        ServerSettings(port=True)


def test_settings_are_immutable() -> None:
    """Sections cannot be assigned, and an endpoint's environment cannot be changed."""
    source = {"A": "1"}
    declared = EndpointDeclaration("ep", "/m", environment=source)
    source["A"] = "2"
    assert declared.environment == {"A": "1"}
    with pytest.raises(TypeError):
        declared.environment["A"] = "3"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        default_settings().server.port = 1  # type: ignore[misc]


def test_secret_is_kept_out_of_repr() -> None:
    """The secret access key never shows in a repr (and so in logs)."""
    credential = CredentialSettings("AKIDONE", "very-secret", "111111111111")
    assert "very-secret" not in repr(Settings(auth=AuthSettings(credentials=(credential,))))


def test_override_sets_one_validated_setting() -> None:
    """override() returns a copy with the setting changed and the original untouched."""
    base = default_settings()
    changed = override(base, "server.port", 9000)
    assert changed.server.port == 9000
    assert changed.server.host == base.server.host
    assert base.server.port == 8080
    assert override(base, "pool.idle_timeout_s", 2).pool.idle_timeout_s == 2.0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("server.port", 70000, "config key server.port: must be between 0 and 65535, got 70000"),
        ("server.port", "9000", "config key server.port: must be an integer, got string '9000'"),
        ("server.colour", "red", "config key server.colour: unknown setting"),
        ("endpoints", (), "config key endpoints: unknown setting"),
        ("nope.port", 1, "config key nope.port: unknown setting"),
    ],
)
def test_override_refuses_bad_keys_and_values(key: str, value: object, message: str) -> None:
    """override() refuses unknown keys and invalid values, naming the full key."""
    with pytest.raises(SettingsError) as info:
        override(default_settings(), key, value)
    assert str(info.value) == message


def test_override_rechecks_cross_field_rules() -> None:
    """An override that breaks a rule across sections is refused."""
    settings = Settings(endpoints=(EndpointDeclaration("a", "/a"), EndpointDeclaration("b", "/b")))
    with pytest.raises(SettingsError, match=r"^config key endpoints\[1\]: more endpoints"):
        override(settings, "quotas.endpoints_per_region", 1)


def test_effective_credentials_fall_back_to_the_dev_key() -> None:
    """With no credentials configured the dev key test/test applies, else only configured ones."""
    assert effective_credentials(default_settings()) == (DEV_CREDENTIAL,)
    assert (DEV_CREDENTIAL.access_key_id, DEV_CREDENTIAL.account_id) == ("test", "000000000000")
    mine = CredentialSettings("AKIDONE", "s1", "111111111111")
    assert effective_credentials(Settings(auth=AuthSettings(credentials=(mine,)))) == (mine,)


def test_endpoint_account_defaults_to_first_credential() -> None:
    """An endpoint without account_id belongs to the first configured credential's account."""
    first = CredentialSettings("AKIDONE", "s1", "111111111111")
    second = CredentialSettings("AKIDTWO", "s2", "222222222222")
    declared = EndpointDeclaration("ep", "/m")
    settings = Settings(auth=AuthSettings(credentials=(first, second)), endpoints=(declared,))
    assert endpoint_placement(settings, declared) == ("111111111111", "us-east-1")
    assert endpoint_placement(default_settings(), declared) == ("000000000000", "us-east-1")


# Bind safety


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "gateway.example.com"])
def test_bind_safety_refuses_public_address_with_dev_credentials(host: str) -> None:
    """With no credentials configured, a non-loopback host is refused and the fix is named."""
    with pytest.raises(SettingsError) as info:
        check_bind_safety(override(default_settings(), "server.host", host))
    assert info.value.key == "server.host"
    assert "[[auth.credentials]]" in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_bind_safety_allows_loopback_with_dev_credentials(host: str) -> None:
    """Loopback addresses are allowed with the development credentials."""
    check_bind_safety(override(default_settings(), "server.host", host))


def test_bind_safety_allows_public_address_with_configured_credentials() -> None:
    """Configured credentials make listening on 0.0.0.0 acceptable."""
    credential = CredentialSettings("AKIDONE", "s1", "111111111111")
    settings = Settings(
        server=ServerSettings(host="0.0.0.0"), auth=AuthSettings(credentials=(credential,))
    )
    check_bind_safety(settings)


def test_pool_booleans_and_module_lists(tmp_path: Path) -> None:
    """zygotes takes only true/false; preload takes an array of module names."""
    good = tmp_path / "good.toml"
    good.write_text('[pool]\nzygotes = false\npreload = ["numpy", "sklearn.linear_model"]\n')
    settings = load_settings(good)
    assert settings.pool.zygotes is False
    assert settings.pool.preload == ("numpy", "sklearn.linear_model")
    for text, key in (
        ("[pool]\nzygotes = 1\n", "pool.zygotes"),
        ('[pool]\npreload = "numpy"\n', "pool.preload"),
        ('[pool]\npreload = ["not a module"]\n', "pool.preload"),
        ('[pool]\ncpu_limits = "cgroup3"\n', "pool.cpu_limits"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(SettingsError, match=key.replace(".", r"\.")):
            load_settings(bad)
