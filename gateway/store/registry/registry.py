"""``Registry``: models, endpoint configs, endpoints and their tags in one SQLite file.

The contracts every method shares (transactions, ``now``, documents, threads) are in the
package docstring (``gateway.store.registry``). The file and its schema are
``database``'s; the SQL on the tables is ``tables``'.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gateway.sagemaker.names import Kind, Scope, arn
from gateway.store.registry import tables
from gateway.store.registry.database import connect, transaction
from gateway.store.registry.records import (
    UNSET,
    EndpointConfigRecord,
    EndpointRecord,
    ModelRecord,
    NotFound,
    Unset,
)
from gateway.store.registry.tables import DocumentRecord


class Registry:
    """Models, endpoint configs, endpoints and their tags, persisted in SQLite.

    Not thread-safe; see the package docstring for the shared contracts.
    """

    def __init__(self, path: Path | str) -> None:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date.

        ``":memory:"`` gives a private in-memory database. The parent directory must exist.
        Raises ``sqlite3.Error`` if the file cannot be opened, and ``RegistryError`` if it
        was written by a newer schema version than this code knows.
        """
        self._conn = connect(path)

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
        return tables.get_document(self._conn, ModelRecord, "model", scope, name)

    def delete_model(self, scope: Scope, name: str) -> None:
        """Delete a model and its tags. Raises ``NotFound``."""
        self._delete(scope, "model", name)

    def list_models(self, scope: Scope) -> list[ModelRecord]:
        """The scope's models, by creation time then name."""
        return tables.list_documents(self._conn, ModelRecord, "model", scope)

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
        return tables.get_document(self._conn, EndpointConfigRecord, "endpoint-config", scope, name)

    def delete_endpoint_config(self, scope: Scope, name: str) -> None:
        """Delete a config and its tags, even if endpoints name it. Raises ``NotFound``."""
        self._delete(scope, "endpoint-config", name)

    def list_endpoint_configs(self, scope: Scope) -> list[EndpointConfigRecord]:
        """The scope's endpoint configs, by creation time then name."""
        return tables.list_documents(self._conn, EndpointConfigRecord, "endpoint-config", scope)

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
        with transaction(self._conn) as conn:
            record = tables.insert_endpoint(conn, scope, name, config_name, status, now)
            tables.put_tags(conn, tables.resource_id_by_arn(conn, scope, record.arn), tags or {})
            return record

    def get_endpoint(self, scope: Scope, name: str) -> EndpointRecord | None:
        """The endpoint of that name (any letter case) in the scope, or ``None``."""
        row = self._conn.execute(
            tables.ENDPOINT_SELECT + " WHERE r.account = ? AND r.region = ? AND r.name_key = ?",
            (scope.account_id, scope.region, name.lower()),
        ).fetchone()
        return None if row is None else tables.endpoint_record(row)

    def update_endpoint(
        self,
        scope: Scope,
        name: str,
        *,
        now: float,
        status: str | None = None,
        failure_reason: str | Unset | None = UNSET,
        config_name: str | None = None,
        pending_config_name: str | Unset | None = UNSET,
        overrides: Mapping[str, Any] | Unset = UNSET,
    ) -> EndpointRecord:
        """Change the given fields of an endpoint and set ``last_modified`` to ``now``.

        ``status``/``config_name`` of ``None`` and ``failure_reason``/``pending_config_name``
        /``overrides`` of ``UNSET`` leave the field alone; ``None`` for the middle two and
        an empty mapping for ``overrides`` clear it. Raises
        ``NotFound`` (kind ``endpoint``) if the endpoint does not exist, or (kind
        ``endpoint-config``) if a config name given does not.
        """
        with transaction(self._conn) as conn:
            return tables.update_endpoint(
                conn,
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
            tables.ENDPOINT_SELECT
            + " WHERE r.account = ? AND r.region = ? ORDER BY r.created, r.name_key, r.id",
            (scope.account_id, scope.region),
        ).fetchall()
        return [tables.endpoint_record(row) for row in rows]

    def all_endpoints(self) -> list[EndpointRecord]:
        """Every endpoint of every scope, by account, region, creation time, name."""
        rows = self._conn.execute(
            tables.ENDPOINT_SELECT + " ORDER BY r.account, r.region, r.created, r.name_key, r.id"
        ).fetchall()
        return [tables.endpoint_record(row) for row in rows]

    # tags

    def add_tags(self, scope: Scope, resource_arn: str, tags: Mapping[str, str]) -> None:
        """Add tags to a resource, overwriting the values of keys it already has.

        Raises ``NotFound`` if no resource of the scope has exactly that ARN. The limit of
        50 tags per resource is the caller's to enforce.
        """
        with transaction(self._conn) as conn:
            tables.put_tags(conn, tables.resource_id_by_arn(conn, scope, resource_arn), tags)

    def list_tags(self, scope: Scope, resource_arn: str) -> dict[str, str]:
        """A resource's tags, in the order their keys were first added. Raises ``NotFound``."""
        resource_id = tables.resource_id_by_arn(self._conn, scope, resource_arn)
        rows = self._conn.execute(
            "SELECT key, value FROM tag WHERE resource_id = ? ORDER BY rowid", (resource_id,)
        ).fetchall()
        return {row["key"]: row["value"] for row in rows}

    def delete_tags(self, scope: Scope, resource_arn: str, keys: Iterable[str]) -> None:
        """Remove the given tag keys from a resource; absent keys are ignored.

        Raises ``NotFound`` if no resource of the scope has that ARN.
        """
        with transaction(self._conn) as conn:
            resource_id = tables.resource_id_by_arn(conn, scope, resource_arn)
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
        with transaction(self._conn) as conn:
            tables.put_document(conn, scope, "model", model_name, model_document, now)
            tables.put_document(conn, scope, "endpoint-config", config_name, config_document, now)
            if tables.find(conn, scope, "endpoint", endpoint_name) is None:
                return tables.insert_endpoint(
                    conn, scope, endpoint_name, config_name, "InService", now
                )
            return tables.update_endpoint(
                conn,
                scope,
                endpoint_name,
                now=now,
                status="InService",
                failure_reason=None,
                config_name=config_name,
                pending_config_name=None,
            )

    # private helpers

    def _create_document(
        self,
        record_type: type[DocumentRecord],
        kind: Kind,
        scope: Scope,
        name: str,
        document: Mapping[str, Any],
        now: float,
        tags: Mapping[str, str] | None = None,
    ) -> DocumentRecord:
        with transaction(self._conn) as conn:
            resource_id = tables.insert_resource(
                conn, scope, kind, name, now, tables.encode(document)
            )
            tables.put_tags(conn, resource_id, tags or {})
            row = conn.execute("SELECT * FROM resource WHERE id = ?", (resource_id,)).fetchone()
            return tables.document_record(record_type, row)

    def _delete(self, scope: Scope, kind: Kind, name: str) -> None:
        # Tags and the endpoint row go with the resource row (ON DELETE CASCADE).
        with transaction(self._conn) as conn:
            cursor = conn.execute(
                "DELETE FROM resource"
                " WHERE account = ? AND region = ? AND kind = ? AND name_key = ?",
                (scope.account_id, scope.region, kind, name.lower()),
            )
            if cursor.rowcount == 0:
                raise NotFound(kind, arn(scope, kind, name))
