"""The SQL the registry runs on its tables, each call on a connection the caller holds.

Functions that write must run inside one of the caller's transactions
(``database.transaction``), so that a check (does the name exist?) and the write it
guards see the same state. Reads and row decoding need no transaction. Names are matched
case-insensitively through the ``name_key`` column. Raises the registry's errors
(``AlreadyExists``, ``NotFound``) and ``sqlite3.Error``; ``encode`` raises ``TypeError``
or ``ValueError`` for a document that is not JSON.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from gateway.sagemaker.names import Kind, Scope, arn
from gateway.store.registry.records import (
    UNSET,
    AlreadyExists,
    EndpointConfigRecord,
    EndpointRecord,
    ModelRecord,
    NotFound,
    Unset,
)

ENDPOINT_SELECT: Final = """
    SELECT r.id, r.account, r.region, r.name, r.arn, r.created,
           e.config_name, e.status, e.failure_reason, e.last_modified, e.pending_config_name,
           e.overrides
    FROM resource AS r JOIN endpoint AS e ON e.resource_id = r.id
"""

DocumentRecord = TypeVar("DocumentRecord", ModelRecord, EndpointConfigRecord)


def find(conn: sqlite3.Connection, scope: Scope, kind: Kind, name: str) -> sqlite3.Row | None:
    """The resource row of that kind and name (any letter case) in the scope, or ``None``."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM resource WHERE account = ? AND region = ? AND kind = ? AND name_key = ?",
        (scope.account_id, scope.region, kind, name.lower()),
    ).fetchone()
    return row


def insert_resource(
    conn: sqlite3.Connection, scope: Scope, kind: Kind, name: str, now: float, document: str | None
) -> int:
    """Insert a resource row; return its id. Raises ``AlreadyExists`` if the name is taken
    in the scope. Call inside a transaction."""
    resource_arn = arn(scope, kind, name)
    if find(conn, scope, kind, name) is not None:
        raise AlreadyExists(kind, resource_arn)
    row = conn.execute(
        "INSERT INTO resource (account, region, kind, name, name_key, arn, created, document)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (scope.account_id, scope.region, kind, name, name.lower(), resource_arn, now, document),
    ).fetchone()
    return int(row["id"])


def put_document(
    conn: sqlite3.Connection,
    scope: Scope,
    kind: Kind,
    name: str,
    document: Mapping[str, Any],
    now: float,
) -> None:
    """Create the resource or replace its document; call inside a transaction."""
    existing = find(conn, scope, kind, name)
    encoded = encode(document)
    if existing is None:
        insert_resource(conn, scope, kind, name, now, encoded)
    else:
        conn.execute("UPDATE resource SET document = ? WHERE id = ?", (encoded, existing["id"]))


def get_document(
    conn: sqlite3.Connection, record_type: type[DocumentRecord], kind: Kind, scope: Scope, name: str
) -> DocumentRecord | None:
    """The model or config record of that name (any letter case), or ``None``."""
    row = find(conn, scope, kind, name)
    return None if row is None else document_record(record_type, row)


def list_documents(
    conn: sqlite3.Connection, record_type: type[DocumentRecord], kind: Kind, scope: Scope
) -> list[DocumentRecord]:
    """The scope's resources of one kind, by creation time then name."""
    rows = conn.execute(
        "SELECT * FROM resource WHERE account = ? AND region = ? AND kind = ?"
        " ORDER BY created, name_key, id",
        (scope.account_id, scope.region, kind),
    ).fetchall()
    return [document_record(record_type, row) for row in rows]


def _config_spelling(conn: sqlite3.Connection, scope: Scope, config_name: str) -> str:
    """The stored spelling of an existing config's name; raises ``NotFound``."""
    row = find(conn, scope, "endpoint-config", config_name)
    if row is None:
        raise NotFound("endpoint-config", arn(scope, "endpoint-config", config_name))
    return str(row["name"])


def insert_endpoint(
    conn: sqlite3.Connection, scope: Scope, name: str, config_name: str, status: str, now: float
) -> EndpointRecord:
    """Insert an endpoint; call inside a transaction."""
    config_spelling = _config_spelling(conn, scope, config_name)
    resource_id = insert_resource(conn, scope, "endpoint", name, now, None)
    conn.execute(
        "INSERT INTO endpoint (resource_id, config_name, status, last_modified)"
        " VALUES (?, ?, ?, ?)",
        (resource_id, config_spelling, status, now),
    )
    return _endpoint_by_id(conn, resource_id)


def update_endpoint(
    conn: sqlite3.Connection,
    scope: Scope,
    name: str,
    *,
    now: float,
    status: str | None,
    failure_reason: str | Unset | None,
    config_name: str | None,
    pending_config_name: str | Unset | None,
    overrides: Mapping[str, Any] | Unset = UNSET,
) -> EndpointRecord:
    """The body of ``Registry.update_endpoint``; call inside a transaction."""
    current = find(conn, scope, "endpoint", name)
    if current is None:
        raise NotFound("endpoint", arn(scope, "endpoint", name))
    changes: dict[str, object] = {"last_modified": now}
    if status is not None:
        changes["status"] = status
    if not isinstance(failure_reason, Unset):
        changes["failure_reason"] = failure_reason
    if config_name is not None:
        changes["config_name"] = _config_spelling(conn, scope, config_name)
    if not isinstance(pending_config_name, Unset):
        changes["pending_config_name"] = (
            None
            if pending_config_name is None
            else _config_spelling(conn, scope, pending_config_name)
        )
    if not isinstance(overrides, Unset):
        changes["overrides"] = encode(overrides) if overrides else None
    # Column names come from the fixed keys above, never from the caller.
    assignments = ", ".join(f"{column} = ?" for column in changes)
    conn.execute(
        f"UPDATE endpoint SET {assignments} WHERE resource_id = ?",
        (*changes.values(), current["id"]),
    )
    return _endpoint_by_id(conn, current["id"])


def _endpoint_by_id(conn: sqlite3.Connection, resource_id: int) -> EndpointRecord:
    row = conn.execute(ENDPOINT_SELECT + " WHERE r.id = ?", (resource_id,)).fetchone()
    return endpoint_record(row)


def resource_id_by_arn(conn: sqlite3.Connection, scope: Scope, resource_arn: str) -> int:
    """The id of the scope's resource with exactly that ARN. Raises ``NotFound``."""
    row = conn.execute(
        "SELECT id FROM resource WHERE account = ? AND region = ? AND arn = ?",
        (scope.account_id, scope.region, resource_arn),
    ).fetchone()
    if row is None:
        raise NotFound(_kind_of_arn(resource_arn), resource_arn)
    return int(row["id"])


def put_tags(conn: sqlite3.Connection, resource_id: int, tags: Mapping[str, str]) -> None:
    """Add or overwrite tags; call inside a transaction."""
    conn.executemany(
        "INSERT INTO tag (resource_id, key, value) VALUES (?, ?, ?)"
        " ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value",
        [(resource_id, key, value) for key, value in tags.items()],
    )


def encode(document: Mapping[str, Any]) -> str:
    """A document as the compact JSON text stored in ``resource.document``."""
    # dict() so that read-only mappings encode too; NaN is not JSON, so refuse it.
    return json.dumps(dict(document), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def document_record(record_type: type[DocumentRecord], row: sqlite3.Row) -> DocumentRecord:
    """The model or config record of a ``resource`` row."""
    return record_type(
        scope=Scope(row["account"], row["region"]),
        name=row["name"],
        arn=row["arn"],
        created=row["created"],
        document=json.loads(row["document"]),
    )


def endpoint_record(row: sqlite3.Row) -> EndpointRecord:
    """The record of a row selected with ``ENDPOINT_SELECT``."""
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
