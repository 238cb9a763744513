"""The persisted registry of models, endpoint configs and endpoints.

Resources are keyed by (account, region, kind, name) and stored in one SQLite file in the
state directory. A resource of one (account, region) scope is invisible to every other
scope. Names are unique case-insensitively within (account, region, kind) and looked up
case-insensitively, because the real service lower-cases names in ARNs; each record keeps
the name as it was first spelled.

Contracts shared by every method:

* Every write is one SQLite transaction: it happens entirely or not at all.
* Times are float epoch seconds passed in by the caller (``now``); the registry never
  reads the clock.
* Resource documents (the Create* request body, a JSON object) are stored as JSON text;
  a document that cannot be encoded raises ``TypeError`` or ``ValueError`` and writes
  nothing.
* Calls block on SQLite I/O. A ``Registry`` is not thread-safe: create it and use it on
  one thread only (the connection refuses calls from any other thread).
* Using a closed registry raises ``sqlite3.ProgrammingError``.
"""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from gateway.sagemaker.names import Kind, Scope, arn

# Each entry moves the schema one version forward (entry i: version i -> i + 1) and runs
# in one transaction together with the PRAGMA user_version bump. Append, never edit.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE resource (
            id INTEGER PRIMARY KEY,
            account TEXT NOT NULL,
            region TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('model', 'endpoint-config', 'endpoint')),
            name TEXT NOT NULL,
            name_key TEXT NOT NULL,
            arn TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            document TEXT,
            UNIQUE (account, region, kind, name_key)
        ) STRICT
        """,
        # Config names are plain text, not foreign keys: SageMaker lets a config be
        # deleted while an endpoint still names it.
        """
        CREATE TABLE endpoint (
            resource_id INTEGER PRIMARY KEY REFERENCES resource (id) ON DELETE CASCADE,
            config_name TEXT NOT NULL,
            status TEXT NOT NULL,
            failure_reason TEXT,
            last_modified REAL NOT NULL,
            pending_config_name TEXT
        ) STRICT
        """,
        """
        CREATE TABLE tag (
            resource_id INTEGER NOT NULL REFERENCES resource (id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (resource_id, key)
        ) STRICT
        """,
    ),
    # Version 2: what UpdateEndpointWeightsAndCapacities changed on top of the config
    # (a JSON object per variant name); NULL when nothing was.
    ("ALTER TABLE endpoint ADD COLUMN overrides TEXT",),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_ENDPOINT_SELECT: Final = """
    SELECT r.id, r.account, r.region, r.name, r.arn, r.created,
           e.config_name, e.status, e.failure_reason, e.last_modified, e.pending_config_name,
           e.overrides
    FROM resource AS r JOIN endpoint AS e ON e.resource_id = r.id
"""


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A stored model; ``document`` is the CreateModel request body as given."""

    scope: Scope
    name: str
    arn: str
    created: float
    document: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EndpointConfigRecord:
    """A stored endpoint config; ``document`` is the CreateEndpointConfig request body."""

    scope: Scope
    name: str
    arn: str
    created: float
    document: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """A stored endpoint.

    ``config_name`` and ``pending_config_name`` carry the config's name as the config
    record spells it. ``pending_config_name`` is set while an UpdateEndpoint to a new
    config is running.
    """

    scope: Scope
    name: str
    arn: str
    config_name: str
    status: str
    failure_reason: str | None
    created: float
    last_modified: float
    pending_config_name: str | None
    overrides: Mapping[str, Any] = field(default_factory=dict)


class RegistryError(Exception):
    """Base class of the registry's errors."""


class AlreadyExists(RegistryError):
    """A resource of this kind with this name (in any letter case) exists in the scope."""

    def __init__(self, kind: str, arn: str) -> None:
        super().__init__(f"{kind} already exists: {arn}")
        self.kind = kind
        self.arn = arn


class NotFound(RegistryError):
    """No resource of this kind and name (or ARN) exists in the scope."""

    def __init__(self, kind: str, arn: str) -> None:
        super().__init__(f"{kind} not found: {arn}")
        self.kind = kind
        self.arn = arn


class InUse(RegistryError):
    """A resource cannot go because others (``used_by``, a list of ARNs) depend on it.

    The registry itself never raises it (SageMaker allows deleting a model or config that
    is still named elsewhere); it is here for control-plane policies that want to.
    """

    def __init__(self, kind: str, arn: str, used_by: list[str]) -> None:
        super().__init__(f"{kind} in use: {arn} (used by {', '.join(used_by)})")
        self.kind = kind
        self.arn = arn
        self.used_by = used_by


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = _Unset.UNSET
"""Marks an ``update_endpoint`` argument that was not given (``None`` means clear it)."""

_DocumentRecord = TypeVar("_DocumentRecord", ModelRecord, EndpointConfigRecord)


class Registry:
    """Models, endpoint configs, endpoints and their tags, persisted in SQLite.

    Not thread-safe; see the module docstring for the shared contracts.
    """

    def __init__(self, path: Path | str) -> None:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date.

        ``":memory:"`` gives a private in-memory database. The parent directory must exist.
        Raises ``sqlite3.Error`` if the file cannot be opened, and ``RegistryError`` if it
        was written by a newer schema version than this code knows.
        """
        # isolation_level=None: the module does not open transactions behind our back;
        # every write opens its own explicitly (see _transaction).
        self._conn = sqlite3.connect(path, isolation_level=None)
        try:
            self._conn.row_factory = sqlite3.Row
            # Wait for another process's write lock instead of failing at once.
            self._conn.execute("PRAGMA busy_timeout = 5000")
            # WAL with synchronous=NORMAL: a commit appends to the WAL file with a write()
            # before returning, so it is in the OS page cache and survives the process
            # being killed (even SIGKILL); only the fsync is deferred to checkpoints, so
            # an OS crash or power loss may drop the last commits but never corrupts the
            # file. That is the durability a restartable gateway needs, at a fraction of
            # the cost of an fsync per write.
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        """Close the database; idempotent."""
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # models

    def create_model(
        self,
        scope: Scope,
        name: str,
        document: Mapping[str, Any],
        now: float,
        tags: Mapping[str, str] | None = None,
    ) -> ModelRecord:
        """Store a new model with its tags. Raises ``AlreadyExists`` if the name is taken
        in the scope."""
        return self._create_document(ModelRecord, "model", scope, name, document, now, tags)

    def get_model(self, scope: Scope, name: str) -> ModelRecord | None:
        """The model of that name (any letter case) in the scope, or ``None``."""
        return self._get_document(ModelRecord, "model", scope, name)

    def delete_model(self, scope: Scope, name: str) -> None:
        """Delete a model and its tags. Raises ``NotFound``."""
        self._delete(scope, "model", name)

    def list_models(self, scope: Scope) -> list[ModelRecord]:
        """The scope's models, by creation time then name."""
        return self._list_documents(ModelRecord, "model", scope)

    # endpoint configs

    def create_endpoint_config(
        self,
        scope: Scope,
        name: str,
        document: Mapping[str, Any],
        now: float,
        tags: Mapping[str, str] | None = None,
    ) -> EndpointConfigRecord:
        """Store a new endpoint config with its tags. Raises ``AlreadyExists``.

        Models named by the document are not checked; the control plane does that.
        """
        return self._create_document(
            EndpointConfigRecord, "endpoint-config", scope, name, document, now, tags
        )

    def get_endpoint_config(self, scope: Scope, name: str) -> EndpointConfigRecord | None:
        """The endpoint config of that name (any letter case) in the scope, or ``None``."""
        return self._get_document(EndpointConfigRecord, "endpoint-config", scope, name)

    def delete_endpoint_config(self, scope: Scope, name: str) -> None:
        """Delete a config and its tags, even if endpoints name it. Raises ``NotFound``."""
        self._delete(scope, "endpoint-config", name)

    def list_endpoint_configs(self, scope: Scope) -> list[EndpointConfigRecord]:
        """The scope's endpoint configs, by creation time then name."""
        return self._list_documents(EndpointConfigRecord, "endpoint-config", scope)

    # endpoints

    def create_endpoint(
        self,
        scope: Scope,
        name: str,
        config_name: str,
        status: str,
        now: float,
        tags: Mapping[str, str] | None = None,
    ) -> EndpointRecord:
        """Store a new endpoint using ``config_name``, with its tags.

        Raises ``AlreadyExists`` if the name is taken, ``NotFound`` (kind
        ``endpoint-config``) if the config does not exist in the scope.
        """
        with self._transaction():
            record = self._insert_endpoint(scope, name, config_name, status, now)
            self._put_tags(self._resource_id_by_arn(scope, record.arn), tags or {})
            return record

    def get_endpoint(self, scope: Scope, name: str) -> EndpointRecord | None:
        """The endpoint of that name (any letter case) in the scope, or ``None``."""
        row = self._conn.execute(
            _ENDPOINT_SELECT + " WHERE r.account = ? AND r.region = ? AND r.name_key = ?",
            (scope.account_id, scope.region, name.lower()),
        ).fetchone()
        return None if row is None else _endpoint_record(row)

    def update_endpoint(
        self,
        scope: Scope,
        name: str,
        *,
        now: float,
        status: str | None = None,
        failure_reason: str | _Unset | None = UNSET,
        config_name: str | None = None,
        pending_config_name: str | _Unset | None = UNSET,
        overrides: Mapping[str, Any] | _Unset = UNSET,
    ) -> EndpointRecord:
        """Change the given fields of an endpoint and set ``last_modified`` to ``now``.

        ``status``/``config_name`` of ``None`` and ``failure_reason``/``pending_config_name``
        /``overrides`` of ``UNSET`` leave the field alone; ``None`` for the middle two and
        an empty mapping for ``overrides`` clear it. Raises
        ``NotFound`` (kind ``endpoint``) if the endpoint does not exist, or (kind
        ``endpoint-config``) if a config name given does not.
        """
        with self._transaction():
            return self._update_endpoint(
                scope,
                name,
                now=now,
                status=status,
                failure_reason=failure_reason,
                config_name=config_name,
                pending_config_name=pending_config_name,
                overrides=overrides,
            )

    def delete_endpoint(self, scope: Scope, name: str) -> None:
        """Delete an endpoint and its tags. Raises ``NotFound``."""
        self._delete(scope, "endpoint", name)

    def list_endpoints(self, scope: Scope) -> list[EndpointRecord]:
        """The scope's endpoints, by creation time then name."""
        rows = self._conn.execute(
            _ENDPOINT_SELECT
            + " WHERE r.account = ? AND r.region = ? ORDER BY r.created, r.name_key, r.id",
            (scope.account_id, scope.region),
        ).fetchall()
        return [_endpoint_record(row) for row in rows]

    def count_endpoints(self, scope: Scope) -> int:
        """How many endpoints the scope has (for the per-region quota)."""
        row = self._conn.execute(
            "SELECT count(*) FROM resource WHERE account = ? AND region = ? AND kind = ?",
            (scope.account_id, scope.region, "endpoint"),
        ).fetchone()
        return int(row[0])

    def all_endpoints(self) -> list[EndpointRecord]:
        """Every endpoint of every scope, by account, region, creation time, name."""
        rows = self._conn.execute(
            _ENDPOINT_SELECT + " ORDER BY r.account, r.region, r.created, r.name_key, r.id"
        ).fetchall()
        return [_endpoint_record(row) for row in rows]

    # tags

    def add_tags(self, scope: Scope, resource_arn: str, tags: Mapping[str, str]) -> None:
        """Add tags to a resource, overwriting the values of keys it already has.

        Raises ``NotFound`` if no resource of the scope has exactly that ARN. The limit of
        50 tags per resource is the caller's to enforce.
        """
        with self._transaction():
            self._put_tags(self._resource_id_by_arn(scope, resource_arn), tags)

    def _put_tags(self, resource_id: int, tags: Mapping[str, str]) -> None:
        """Add or overwrite tags; call inside a transaction."""
        self._conn.executemany(
            "INSERT INTO tag (resource_id, key, value) VALUES (?, ?, ?)"
            " ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value",
            [(resource_id, key, value) for key, value in tags.items()],
        )

    def list_tags(self, scope: Scope, resource_arn: str) -> dict[str, str]:
        """A resource's tags, in the order their keys were first added. Raises ``NotFound``."""
        resource_id = self._resource_id_by_arn(scope, resource_arn)
        rows = self._conn.execute(
            "SELECT key, value FROM tag WHERE resource_id = ? ORDER BY rowid", (resource_id,)
        ).fetchall()
        return {row["key"]: row["value"] for row in rows}

    def delete_tags(self, scope: Scope, resource_arn: str, keys: Iterable[str]) -> None:
        """Remove the given tag keys from a resource; absent keys are ignored.

        Raises ``NotFound`` if no resource of the scope has that ARN.
        """
        with self._transaction() as conn:
            resource_id = self._resource_id_by_arn(scope, resource_arn)
            conn.executemany(
                "DELETE FROM tag WHERE resource_id = ? AND key = ?",
                [(resource_id, key) for key in keys],
            )

    # deploy

    def deploy(
        self,
        scope: Scope,
        *,
        model_name: str,
        model_document: Mapping[str, Any],
        config_name: str,
        config_document: Mapping[str, Any],
        endpoint_name: str,
        now: float,
    ) -> EndpointRecord:
        """Put a model, a config and an endpoint using them in place, in one transaction.

        The model and the config are created, or their documents replaced (keeping their
        spelling, creation time and tags). The endpoint is created, or repointed at the
        config; either way it ends ``InService`` with no failure reason and no pending
        config. On any error nothing is written.
        """
        with self._transaction():
            self._put_document(scope, "model", model_name, model_document, now)
            self._put_document(scope, "endpoint-config", config_name, config_document, now)
            if self._find(scope, "endpoint", endpoint_name) is None:
                return self._insert_endpoint(scope, endpoint_name, config_name, "InService", now)
            return self._update_endpoint(
                scope,
                endpoint_name,
                now=now,
                status="InService",
                failure_reason=None,
                config_name=config_name,
                pending_config_name=None,
            )

    # private helpers

    def _migrate(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise RegistryError(
                f"registry schema version {version} is newer than this code ({SCHEMA_VERSION})"
            )
        for target, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
            with self._transaction() as conn:
                for statement in statements:
                    conn.execute(statement)
                # PRAGMA takes no parameters; target is an int we computed.
                conn.execute(f"PRAGMA user_version = {target:d}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: commit if the block returns, roll back if it raises.

        IMMEDIATE takes the write lock up front, so checks made inside the block (does
        the name exist?) still hold when the block writes. Not re-entrant.
        """
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _find(self, scope: Scope, kind: Kind, name: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(
            "SELECT * FROM resource WHERE account = ? AND region = ? AND kind = ? AND name_key = ?",
            (scope.account_id, scope.region, kind, name.lower()),
        ).fetchone()
        return row

    def _insert_resource(
        self, scope: Scope, kind: Kind, name: str, now: float, document: str | None
    ) -> int:
        resource_arn = arn(scope, kind, name)
        if self._find(scope, kind, name) is not None:
            raise AlreadyExists(kind, resource_arn)
        row = self._conn.execute(
            "INSERT INTO resource (account, region, kind, name, name_key, arn, created, document)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (scope.account_id, scope.region, kind, name, name.lower(), resource_arn, now, document),
        ).fetchone()
        return int(row["id"])

    def _create_document(
        self,
        record_type: type[_DocumentRecord],
        kind: Kind,
        scope: Scope,
        name: str,
        document: Mapping[str, Any],
        now: float,
        tags: Mapping[str, str] | None = None,
    ) -> _DocumentRecord:
        with self._transaction() as conn:
            resource_id = self._insert_resource(scope, kind, name, now, _encode(document))
            self._put_tags(resource_id, tags or {})
            row = conn.execute("SELECT * FROM resource WHERE id = ?", (resource_id,)).fetchone()
            return _document_record(record_type, row)

    def _put_document(
        self, scope: Scope, kind: Kind, name: str, document: Mapping[str, Any], now: float
    ) -> None:
        """Create the resource or replace its document; call inside a transaction."""
        existing = self._find(scope, kind, name)
        encoded = _encode(document)
        if existing is None:
            self._insert_resource(scope, kind, name, now, encoded)
        else:
            self._conn.execute(
                "UPDATE resource SET document = ? WHERE id = ?", (encoded, existing["id"])
            )

    def _get_document(
        self, record_type: type[_DocumentRecord], kind: Kind, scope: Scope, name: str
    ) -> _DocumentRecord | None:
        row = self._find(scope, kind, name)
        return None if row is None else _document_record(record_type, row)

    def _list_documents(
        self, record_type: type[_DocumentRecord], kind: Kind, scope: Scope
    ) -> list[_DocumentRecord]:
        rows = self._conn.execute(
            "SELECT * FROM resource WHERE account = ? AND region = ? AND kind = ?"
            " ORDER BY created, name_key, id",
            (scope.account_id, scope.region, kind),
        ).fetchall()
        return [_document_record(record_type, row) for row in rows]

    def _delete(self, scope: Scope, kind: Kind, name: str) -> None:
        # Tags and the endpoint row go with the resource row (ON DELETE CASCADE).
        with self._transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM resource"
                " WHERE account = ? AND region = ? AND kind = ? AND name_key = ?",
                (scope.account_id, scope.region, kind, name.lower()),
            )
            if cursor.rowcount == 0:
                raise NotFound(kind, arn(scope, kind, name))

    def _config_spelling(self, scope: Scope, config_name: str) -> str:
        """The stored spelling of an existing config's name; raises ``NotFound``."""
        row = self._find(scope, "endpoint-config", config_name)
        if row is None:
            raise NotFound("endpoint-config", arn(scope, "endpoint-config", config_name))
        return str(row["name"])

    def _insert_endpoint(
        self, scope: Scope, name: str, config_name: str, status: str, now: float
    ) -> EndpointRecord:
        """Insert an endpoint; call inside a transaction."""
        config_spelling = self._config_spelling(scope, config_name)
        resource_id = self._insert_resource(scope, "endpoint", name, now, None)
        self._conn.execute(
            "INSERT INTO endpoint (resource_id, config_name, status, last_modified)"
            " VALUES (?, ?, ?, ?)",
            (resource_id, config_spelling, status, now),
        )
        return self._endpoint_by_id(resource_id)

    def _update_endpoint(
        self,
        scope: Scope,
        name: str,
        *,
        now: float,
        status: str | None,
        failure_reason: str | _Unset | None,
        config_name: str | None,
        pending_config_name: str | _Unset | None,
        overrides: Mapping[str, Any] | _Unset = UNSET,
    ) -> EndpointRecord:
        """The body of ``update_endpoint``; call inside a transaction."""
        current = self._find(scope, "endpoint", name)
        if current is None:
            raise NotFound("endpoint", arn(scope, "endpoint", name))
        changes: dict[str, object] = {"last_modified": now}
        if status is not None:
            changes["status"] = status
        if not isinstance(failure_reason, _Unset):
            changes["failure_reason"] = failure_reason
        if config_name is not None:
            changes["config_name"] = self._config_spelling(scope, config_name)
        if not isinstance(pending_config_name, _Unset):
            changes["pending_config_name"] = (
                None
                if pending_config_name is None
                else self._config_spelling(scope, pending_config_name)
            )
        if not isinstance(overrides, _Unset):
            changes["overrides"] = _encode(overrides) if overrides else None
        # Column names come from the fixed keys above, never from the caller.
        assignments = ", ".join(f"{column} = ?" for column in changes)
        self._conn.execute(
            f"UPDATE endpoint SET {assignments} WHERE resource_id = ?",
            (*changes.values(), current["id"]),
        )
        return self._endpoint_by_id(current["id"])

    def _endpoint_by_id(self, resource_id: int) -> EndpointRecord:
        row = self._conn.execute(_ENDPOINT_SELECT + " WHERE r.id = ?", (resource_id,)).fetchone()
        return _endpoint_record(row)

    def _resource_id_by_arn(self, scope: Scope, resource_arn: str) -> int:
        row = self._conn.execute(
            "SELECT id FROM resource WHERE account = ? AND region = ? AND arn = ?",
            (scope.account_id, scope.region, resource_arn),
        ).fetchone()
        if row is None:
            raise NotFound(_kind_of_arn(resource_arn), resource_arn)
        return int(row["id"])


def _encode(document: Mapping[str, Any]) -> str:
    # dict() so that read-only mappings encode too; NaN is not JSON, so refuse it.
    return json.dumps(dict(document), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _document_record(record_type: type[_DocumentRecord], row: sqlite3.Row) -> _DocumentRecord:
    return record_type(
        scope=Scope(row["account"], row["region"]),
        name=row["name"],
        arn=row["arn"],
        created=row["created"],
        document=json.loads(row["document"]),
    )


def _endpoint_record(row: sqlite3.Row) -> EndpointRecord:
    return EndpointRecord(
        scope=Scope(row["account"], row["region"]),
        name=row["name"],
        arn=row["arn"],
        config_name=row["config_name"],
        status=row["status"],
        failure_reason=row["failure_reason"],
        created=row["created"],
        last_modified=row["last_modified"],
        pending_config_name=row["pending_config_name"],
        overrides=json.loads(row["overrides"]) if row["overrides"] else {},
    )


def _kind_of_arn(resource_arn: str) -> str:
    """The resource type part of an ARN (``model`` in ``...:model/x``), or ``resource``."""
    parts = resource_arn.split(":", 5)
    if len(parts) == 6 and "/" in parts[5]:
        return parts[5].split("/", 1)[0]
    return "resource"
