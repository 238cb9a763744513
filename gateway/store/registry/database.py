"""The registry's SQLite file: opening it, its schema and migrations, and transactions.

``connect`` opens the file with the settings every registry connection needs and brings
the schema up to ``SCHEMA_VERSION``; ``transaction`` is the one way the registry writes.
Calls block on SQLite I/O; a connection is bound to the thread that opened it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from gateway.store.registry.records import RegistryError

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


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` and bring its schema up to date.

    ``":memory:"`` gives a private in-memory database. The parent directory must exist.
    Raises ``sqlite3.Error`` if the file cannot be opened, and ``RegistryError`` if it
    was written by a newer schema version than this code knows; the connection is then
    closed.
    """
    # isolation_level=None: the module does not open transactions behind our back;
    # every write opens its own explicitly (see transaction).
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        # Wait for another process's write lock instead of failing at once.
        conn.execute("PRAGMA busy_timeout = 5000")
        # WAL with synchronous=NORMAL: a commit appends to the WAL file with a write()
        # before returning, so it is in the OS page cache and survives the process
        # being killed (even SIGKILL); only the fsync is deferred to checkpoints, so
        # an OS crash or power loss may drop the last commits but never corrupts the
        # file. That is the durability a restartable gateway needs, at a fraction of
        # the cost of an fsync per write.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Run the migrations ``conn``'s database lacks, each in its own transaction.

    Raises ``RegistryError`` if the database is newer than ``SCHEMA_VERSION``.
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise RegistryError(
            f"registry schema version {version} is newer than this code ({SCHEMA_VERSION})"
        )
    for target, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
        with transaction(conn):
            for statement in statements:
                conn.execute(statement)
            # PRAGMA takes no parameters; target is an int we computed.
            conn.execute(f"PRAGMA user_version = {target:d}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: commit if the block returns, roll back if it raises.

    IMMEDIATE takes the write lock up front, so checks made inside the block (does
    the name exist?) still hold when the block writes. Not re-entrant.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
