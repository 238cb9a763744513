"""Tests of the persisted registry of models, endpoint configs and endpoints."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.sagemaker.names import Kind, Scope, arn
from gateway.store.registry import (
    SCHEMA_VERSION,
    AlreadyExists,
    EndpointConfigRecord,
    EndpointRecord,
    ModelRecord,
    NotFound,
    Registry,
    RegistryError,
)

A = Scope("111111111111", "us-east-1")
B = Scope("222222222222", "us-east-1")
A_WEST = Scope("111111111111", "eu-west-1")

MODEL_DOC: dict[str, Any] = {
    "ModelName": "Iris",
    "PrimaryContainer": {"Image": "coldbrew/sklearn", "Environment": {"K": "v"}},
}


def config_doc(model_name: str = "Iris", memory: int = 2048) -> dict[str, Any]:
    return {
        "EndpointConfigName": "IrisConfig",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "ServerlessConfig": {"MemorySizeInMB": memory, "MaxConcurrency": 5},
            }
        ],
    }


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "registry.sqlite3"


@pytest.fixture
def registry(db_path: Path) -> Iterator[Registry]:
    with Registry(db_path) as reg:
        yield reg


def make_endpoint(reg: Registry, scope: Scope = A, name: str = "Iris-EP") -> EndpointRecord:
    reg.create_model(scope, "Iris", MODEL_DOC, now=1.0)
    reg.create_endpoint_config(scope, "IrisConfig", config_doc(), now=2.0)
    return reg.create_endpoint(scope, name, "IrisConfig", "Creating", now=3.0)


def tag_rows(db_path: Path) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(conn.execute("SELECT count(*) FROM tag").fetchone()[0])
    finally:
        conn.close()


# ARNs


def test_arn_lower_cases_the_name_only() -> None:
    """The ARN has region, account and kind as given and the name lower-cased."""
    assert arn(A, "endpoint", "My-EP") == "arn:aws:sagemaker:us-east-1:111111111111:endpoint/my-ep"
    assert arn(A_WEST, "endpoint-config", "Cfg").endswith(":111111111111:endpoint-config/cfg")
    assert arn(A, "model", "M").startswith("arn:aws:sagemaker:us-east-1:")


# models


def test_model_round_trip(registry: Registry) -> None:
    """A created model comes back from get and list with its document, spelling and ARN."""
    created = registry.create_model(A, "Iris", MODEL_DOC, now=10.5)
    assert created == ModelRecord(
        scope=A,
        name="Iris",
        arn="arn:aws:sagemaker:us-east-1:111111111111:model/iris",
        created=10.5,
        document=MODEL_DOC,
    )
    assert registry.get_model(A, "Iris") == created
    assert registry.list_models(A) == [created]
    registry.delete_model(A, "Iris")
    assert registry.get_model(A, "Iris") is None
    assert registry.list_models(A) == []


def test_model_names_are_case_insensitive(registry: Registry) -> None:
    """A name differing only in case is taken, and lookups and deletes ignore case."""
    registry.create_model(A, "Iris", MODEL_DOC, now=1.0)
    with pytest.raises(AlreadyExists) as caught:
        registry.create_model(A, "IRIS", MODEL_DOC, now=2.0)
    assert caught.value.kind == "model"
    assert caught.value.arn == "arn:aws:sagemaker:us-east-1:111111111111:model/iris"
    found = registry.get_model(A, "iRiS")
    assert found is not None
    assert found.name == "Iris"
    assert found.created == 1.0
    registry.delete_model(A, "IRIS")
    assert registry.get_model(A, "Iris") is None


def test_delete_missing_model_raises_not_found(registry: Registry) -> None:
    """Deleting an absent model raises NotFound with kind and ARN."""
    with pytest.raises(NotFound) as caught:
        registry.delete_model(A, "Ghost")
    assert (caught.value.kind, caught.value.arn) == ("model", arn(A, "model", "ghost"))
    assert isinstance(caught.value, RegistryError)


def test_lists_are_ordered_by_creation_time_then_name(registry: Registry) -> None:
    """list_models orders by creation time, and by name for equal times."""
    registry.create_model(A, "b", MODEL_DOC, now=5.0)
    registry.create_model(A, "C", MODEL_DOC, now=1.0)
    registry.create_model(A, "a", MODEL_DOC, now=5.0)
    assert [m.name for m in registry.list_models(A)] == ["C", "a", "b"]


def test_same_name_in_different_kinds_is_fine(registry: Registry) -> None:
    """A model, a config and an endpoint may share one name."""
    registry.create_model(A, "same", MODEL_DOC, now=1.0)
    registry.create_endpoint_config(A, "same", config_doc("same"), now=1.0)
    endpoint = registry.create_endpoint(A, "same", "same", "Creating", now=1.0)
    assert endpoint.arn == arn(A, "endpoint", "same")
    model = registry.get_model(A, "same")
    config = registry.get_endpoint_config(A, "same")
    assert model is not None
    assert config is not None
    assert len({model.arn, config.arn, endpoint.arn}) == 3


def test_document_that_cannot_be_encoded_writes_nothing(registry: Registry) -> None:
    """A document holding a set raises TypeError and stores no model."""
    with pytest.raises(TypeError):
        registry.create_model(A, "Bad", {"Tags": {"a", "b"}}, now=1.0)
    assert registry.get_model(A, "Bad") is None


# endpoint configs


def test_endpoint_config_round_trip(registry: Registry) -> None:
    """A created config comes back from get and list, and delete removes it."""
    created = registry.create_endpoint_config(A, "IrisConfig", config_doc(), now=4.0)
    assert created == EndpointConfigRecord(
        scope=A,
        name="IrisConfig",
        arn="arn:aws:sagemaker:us-east-1:111111111111:endpoint-config/irisconfig",
        created=4.0,
        document=config_doc(),
    )
    assert registry.get_endpoint_config(A, "irisconfig") == created
    assert registry.list_endpoint_configs(A) == [created]
    with pytest.raises(AlreadyExists):
        registry.create_endpoint_config(A, "IRISCONFIG", config_doc(), now=5.0)
    registry.delete_endpoint_config(A, "IRISCONFIG")
    assert registry.get_endpoint_config(A, "IrisConfig") is None
    with pytest.raises(NotFound) as caught:
        registry.delete_endpoint_config(A, "IrisConfig")
    assert caught.value.kind == "endpoint-config"


def test_config_may_name_a_missing_model_and_model_may_be_deleted(registry: Registry) -> None:
    """Model references in a config are not enforced in either direction."""
    registry.create_endpoint_config(A, "Orphan", config_doc("NoSuchModel"), now=1.0)
    registry.create_model(A, "Iris", MODEL_DOC, now=1.0)
    registry.create_endpoint_config(A, "IrisConfig", config_doc("Iris"), now=1.0)
    registry.delete_model(A, "Iris")
    assert registry.get_endpoint_config(A, "IrisConfig") is not None


# endpoints


def test_endpoint_round_trip(registry: Registry) -> None:
    """A created endpoint comes back from get, list, count and all_endpoints."""
    created = make_endpoint(registry, name="Iris-EP")
    assert created == EndpointRecord(
        scope=A,
        name="Iris-EP",
        arn="arn:aws:sagemaker:us-east-1:111111111111:endpoint/iris-ep",
        config_name="IrisConfig",
        status="Creating",
        failure_reason=None,
        created=3.0,
        last_modified=3.0,
        pending_config_name=None,
    )
    assert registry.get_endpoint(A, "IRIS-ep") == created
    assert registry.list_endpoints(A) == [created]
    assert len(registry.list_endpoints(A)) == 1
    assert registry.all_endpoints() == [created]
    registry.delete_endpoint(A, "iris-EP")
    assert registry.get_endpoint(A, "Iris-EP") is None
    assert len(registry.list_endpoints(A)) == 0


def test_create_endpoint_errors(registry: Registry) -> None:
    """A missing config gives NotFound for the config; a taken name gives AlreadyExists."""
    with pytest.raises(NotFound) as missing:
        registry.create_endpoint(A, "EP", "NoConfig", "Creating", now=1.0)
    assert (missing.value.kind, missing.value.arn) == (
        "endpoint-config",
        arn(A, "endpoint-config", "noconfig"),
    )
    assert registry.get_endpoint(A, "EP") is None
    make_endpoint(registry, name="EP")
    with pytest.raises(AlreadyExists) as taken:
        registry.create_endpoint(A, "ep", "IrisConfig", "Creating", now=9.0)
    assert (taken.value.kind, taken.value.arn) == ("endpoint", arn(A, "endpoint", "ep"))


def test_endpoint_stores_the_configs_spelling(registry: Registry) -> None:
    """An endpoint created with a differently cased config name records the config's name."""
    registry.create_endpoint_config(A, "IrisConfig", config_doc(), now=1.0)
    endpoint = registry.create_endpoint(A, "EP", "IRISCONFIG", "Creating", now=2.0)
    assert endpoint.config_name == "IrisConfig"


def test_update_endpoint_changes_only_given_fields(registry: Registry) -> None:
    """Each update changes the fields passed, keeps the others, and sets last_modified."""
    make_endpoint(registry, name="EP")
    registry.create_endpoint_config(A, "NewConfig", config_doc(memory=4096), now=4.0)

    failed = registry.update_endpoint(A, "ep", now=5.0, status="Failed", failure_reason="boom")
    assert (failed.status, failed.failure_reason, failed.last_modified) == ("Failed", "boom", 5.0)
    assert failed.config_name == "IrisConfig"
    assert failed.created == 3.0

    updating = registry.update_endpoint(
        A, "EP", now=6.0, status="Updating", failure_reason=None, pending_config_name="newconfig"
    )
    assert updating.failure_reason is None
    assert updating.pending_config_name == "NewConfig"
    assert updating.config_name == "IrisConfig"

    touched = registry.update_endpoint(A, "EP", now=6.5)
    assert touched.last_modified == 6.5
    assert (touched.status, touched.pending_config_name) == ("Updating", "NewConfig")

    done = registry.update_endpoint(
        A, "EP", now=7.0, status="InService", config_name="NewConfig", pending_config_name=None
    )
    assert (done.status, done.config_name, done.pending_config_name) == (
        "InService",
        "NewConfig",
        None,
    )
    assert registry.get_endpoint(A, "EP") == done


def test_update_endpoint_errors_change_nothing(registry: Registry) -> None:
    """Updating a missing endpoint, or to a missing config, raises NotFound and writes nothing."""
    with pytest.raises(NotFound) as missing:
        registry.update_endpoint(A, "Ghost", now=1.0, status="InService")
    assert missing.value.kind == "endpoint"
    before = make_endpoint(registry, name="EP")
    with pytest.raises(NotFound) as bad_config:
        registry.update_endpoint(A, "EP", now=9.0, status="Updating", config_name="Nope")
    assert bad_config.value.kind == "endpoint-config"
    with pytest.raises(NotFound):
        registry.update_endpoint(A, "EP", now=9.0, status="Updating", pending_config_name="Nope")
    assert registry.get_endpoint(A, "EP") == before


def test_delete_missing_endpoint_raises_not_found(registry: Registry) -> None:
    """Deleting an absent endpoint raises NotFound for the endpoint ARN."""
    with pytest.raises(NotFound) as caught:
        registry.delete_endpoint(A, "Ghost")
    assert (caught.value.kind, caught.value.arn) == ("endpoint", arn(A, "endpoint", "ghost"))


def test_config_may_be_deleted_while_an_endpoint_uses_it(registry: Registry) -> None:
    """Deleting a config in use succeeds, and the endpoint keeps its config name."""
    make_endpoint(registry, name="EP")
    registry.delete_endpoint_config(A, "IrisConfig")
    endpoint = registry.get_endpoint(A, "EP")
    assert endpoint is not None
    assert endpoint.config_name == "IrisConfig"


# tags


def test_tags_round_trip(registry: Registry) -> None:
    """Tags are added, overwritten by key, listed in first-added order and deleted by key."""
    model = registry.create_model(A, "Iris", MODEL_DOC, now=1.0)
    assert registry.list_tags(A, model.arn) == {}
    registry.add_tags(A, model.arn, {"team": "ml", "env": "dev"})
    registry.add_tags(A, model.arn, {"env": "prod", "cost": "42"})
    assert list(registry.list_tags(A, model.arn).items()) == [
        ("team", "ml"),
        ("env", "prod"),
        ("cost", "42"),
    ]
    registry.delete_tags(A, model.arn, ["env", "absent"])
    assert registry.list_tags(A, model.arn) == {"team": "ml", "cost": "42"}


def test_tags_on_unknown_arn_raise_not_found(registry: Registry) -> None:
    """Tag operations on an ARN that names nothing raise NotFound with the ARN's kind."""
    ghost = arn(A, "endpoint", "ghost")
    with pytest.raises(NotFound) as caught:
        registry.add_tags(A, ghost, {"k": "v"})
    assert (caught.value.kind, caught.value.arn) == ("endpoint", ghost)
    with pytest.raises(NotFound):
        registry.list_tags(A, ghost)
    with pytest.raises(NotFound):
        registry.delete_tags(A, ghost, ["k"])
    with pytest.raises(NotFound) as garbage:
        registry.list_tags(A, "not-an-arn")
    assert garbage.value.kind == "resource"


@pytest.mark.parametrize("kind", ["model", "endpoint-config", "endpoint"])
def test_deleting_a_resource_deletes_its_tags(
    registry: Registry, db_path: Path, kind: Kind
) -> None:
    """Deleting a model, config or endpoint removes its tag rows, and a new one starts bare."""
    make_endpoint(registry, name="Iris")
    names = {"model": "Iris", "endpoint-config": "IrisConfig", "endpoint": "Iris"}
    deleters = {
        "model": registry.delete_model,
        "endpoint-config": registry.delete_endpoint_config,
        "endpoint": registry.delete_endpoint,
    }
    target = arn(A, kind, names[kind])
    registry.add_tags(A, target, {"k": "v"})
    assert tag_rows(db_path) == 1
    deleters[kind](A, names[kind])
    assert tag_rows(db_path) == 0
    with pytest.raises(NotFound):
        registry.list_tags(A, target)


# scopes


def test_scopes_are_isolated(registry: Registry) -> None:
    """Another account or region cannot see, list, count, delete or tag a scope's resources."""
    endpoint = make_endpoint(registry, A, name="EP")
    model_arn = arn(A, "model", "Iris")
    for other in (B, A_WEST):
        assert registry.get_model(other, "Iris") is None
        assert registry.get_endpoint_config(other, "IrisConfig") is None
        assert registry.get_endpoint(other, "EP") is None
        assert registry.list_models(other) == []
        assert registry.list_endpoint_configs(other) == []
        assert registry.list_endpoints(other) == []
        assert len(registry.list_endpoints(other)) == 0
        with pytest.raises(NotFound):
            registry.delete_model(other, "Iris")
        with pytest.raises(NotFound):
            registry.delete_endpoint_config(other, "IrisConfig")
        with pytest.raises(NotFound):
            registry.delete_endpoint(other, "EP")
        with pytest.raises(NotFound):
            registry.update_endpoint(other, "EP", now=9.0, status="Failed")
        with pytest.raises(NotFound):
            registry.add_tags(other, model_arn, {"k": "v"})
        with pytest.raises(NotFound):
            registry.list_tags(other, endpoint.arn)
        with pytest.raises(NotFound):
            registry.create_endpoint(other, "EP2", "IrisConfig", "Creating", now=9.0)
    assert registry.get_endpoint(A, "EP") == endpoint
    assert registry.list_tags(A, model_arn) == {}


def test_same_names_in_two_scopes_are_independent(registry: Registry) -> None:
    """Both scopes may hold the same names; deleting one leaves the other."""
    in_a = make_endpoint(registry, A, name="EP")
    in_b = make_endpoint(registry, B, name="EP")
    assert in_a.arn != in_b.arn
    registry.add_tags(B, in_b.arn, {"owner": "b"})
    registry.delete_endpoint(A, "EP")
    registry.delete_model(A, "Iris")
    assert registry.get_endpoint(B, "EP") == in_b
    assert registry.get_model(B, "Iris") is not None
    assert registry.list_tags(B, in_b.arn) == {"owner": "b"}
    assert registry.all_endpoints() == [in_b]


def test_all_endpoints_spans_scopes(registry: Registry) -> None:
    """all_endpoints returns the endpoints of every scope."""
    make_endpoint(registry, A, name="EP")
    make_endpoint(registry, A_WEST, name="EP")
    make_endpoint(registry, B, name="Other")
    assert {(e.scope, e.name) for e in registry.all_endpoints()} == {
        (A, "EP"),
        (A_WEST, "EP"),
        (B, "Other"),
    }


# deploy


def test_deploy_creates_everything_in_service(registry: Registry) -> None:
    """deploy on an empty scope creates the model, the config and an InService endpoint."""
    endpoint = registry.deploy(
        A,
        model_name="Iris",
        model_document=MODEL_DOC,
        config_name="IrisConfig",
        config_document=config_doc(),
        endpoint_name="Iris-EP",
        now=5.0,
    )
    assert (endpoint.status, endpoint.config_name, endpoint.created) == (
        "InService",
        "IrisConfig",
        5.0,
    )
    model = registry.get_model(A, "Iris")
    config = registry.get_endpoint_config(A, "IrisConfig")
    assert model is not None
    assert model.document == MODEL_DOC
    assert config is not None
    assert config.document == config_doc()


def test_deploy_replaces_documents_and_repoints_the_endpoint(registry: Registry) -> None:
    """deploy over existing resources replaces documents, keeps tags, and resets the endpoint."""
    make_endpoint(registry, name="EP")
    model_arn = arn(A, "model", "Iris")
    registry.add_tags(A, model_arn, {"k": "v"})
    registry.update_endpoint(A, "EP", now=4.0, status="Failed", failure_reason="boom")
    new_model = {**MODEL_DOC, "PrimaryContainer": {"Image": "coldbrew/sklearn:2"}}

    endpoint = registry.deploy(
        A,
        model_name="iris",
        model_document=new_model,
        config_name="Second",
        config_document=config_doc(memory=4096),
        endpoint_name="ep",
        now=8.0,
    )

    assert endpoint.name == "EP"
    assert (endpoint.status, endpoint.failure_reason, endpoint.config_name) == (
        "InService",
        None,
        "Second",
    )
    assert (endpoint.created, endpoint.last_modified) == (3.0, 8.0)
    model = registry.get_model(A, "Iris")
    assert model is not None
    assert (model.name, model.created, model.document) == ("Iris", 1.0, new_model)
    assert registry.list_tags(A, model_arn) == {"k": "v"}
    assert [c.name for c in registry.list_endpoint_configs(A)] == ["IrisConfig", "Second"]


def test_deploy_failing_midway_writes_nothing(registry: Registry, db_path: Path) -> None:
    """A config document that cannot be encoded rolls back the model already written."""
    with pytest.raises(TypeError):
        registry.deploy(
            A,
            model_name="Iris",
            model_document=MODEL_DOC,
            config_name="IrisConfig",
            config_document={"ProductionVariants": {"not", "json"}},
            endpoint_name="EP",
            now=1.0,
        )
    assert registry.get_model(A, "Iris") is None
    assert registry.list_endpoint_configs(A) == []
    assert registry.all_endpoints() == []
    # A fresh connection sees the same: nothing reached the file.
    with Registry(db_path) as other:
        assert other.list_models(A) == []


def test_deploy_failing_over_existing_resources_keeps_them(registry: Registry) -> None:
    """A failed deploy over an existing model leaves its old document in place."""
    before = registry.create_model(A, "Iris", MODEL_DOC, now=1.0)
    with pytest.raises(TypeError):
        registry.deploy(
            A,
            model_name="Iris",
            model_document={"ModelName": "Iris", "Changed": True},
            config_name="IrisConfig",
            config_document={"bad": {1, 2}},
            endpoint_name="EP",
            now=2.0,
        )
    assert registry.get_model(A, "Iris") == before


# persistence


def test_reopening_keeps_everything(db_path: Path) -> None:
    """Closing and reopening the file keeps models, configs, endpoints and tags."""
    with Registry(db_path) as first:
        endpoint = make_endpoint(first, name="EP")
        first.add_tags(A, endpoint.arn, {"k": "v"})
        models = first.list_models(A)
        configs = first.list_endpoint_configs(A)
    with Registry(db_path) as second:
        assert second.list_models(A) == models
        assert second.list_endpoint_configs(A) == configs
        assert second.all_endpoints() == [endpoint]
        assert second.list_tags(A, endpoint.arn) == {"k": "v"}


def test_file_database_uses_wal_and_records_schema_version(
    registry: Registry, db_path: Path
) -> None:
    """The file is in WAL mode and carries the current schema version."""
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    assert SCHEMA_VERSION >= 1


def test_newer_schema_version_is_refused(db_path: Path) -> None:
    """A database written by a newer schema version raises RegistryError on open."""
    Registry(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RegistryError, match="newer"):
        Registry(db_path)


def test_in_memory_database_works() -> None:
    """':memory:' opens a working, private registry."""
    with Registry(":memory:") as reg:
        make_endpoint(reg, name="EP")
        assert len(reg.list_endpoints(A)) == 1
    with Registry(":memory:") as fresh:
        assert fresh.all_endpoints() == []


_WRITER = """
import signal, sys
from gateway.sagemaker.names import Scope
from gateway.store.registry import Registry
registry = Registry(sys.argv[1])
scope = Scope("111111111111", "us-east-1")
registry.create_model(scope, "Iris", {"ModelName": "Iris"}, now=1.0)
registry.create_endpoint_config(scope, "Cfg", {"ProductionVariants": []}, now=2.0)
registry.create_endpoint(scope, "EP", "Cfg", "InService", now=3.0)
print("committed", flush=True)
signal.pause()
"""


def test_commits_survive_sigkill(db_path: Path) -> None:
    """Writes committed by a process killed with SIGKILL are there on reopen."""
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        assert writer.stdout is not None
        line = writer.stdout.readline()
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert line == "committed\n"
    assert writer.returncode == -signal.SIGKILL
    with Registry(db_path) as reopened:
        endpoint = reopened.get_endpoint(A, "ep")
        assert endpoint is not None
        assert (endpoint.config_name, endpoint.status, endpoint.created) == (
            "Cfg",
            "InService",
            3.0,
        )
        model = reopened.get_model(A, "IRIS")
        assert model is not None
        assert model.document == {"ModelName": "Iris"}
