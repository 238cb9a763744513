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

Modules: ``registry`` (the ``Registry`` itself), ``records`` (what it returns and
raises), ``database`` (the SQLite file, its schema and migrations, transactions) and
``tables`` (the SQL on the tables). Importers use the names exported here.
"""

from gateway.store.registry.database import SCHEMA_VERSION
from gateway.store.registry.records import (
    UNSET,
    AlreadyExists,
    EndpointConfigRecord,
    EndpointRecord,
    ModelRecord,
    NotFound,
    RegistryError,
)
from gateway.store.registry.registry import Registry

__all__ = [
    "SCHEMA_VERSION",
    "UNSET",
    "AlreadyExists",
    "EndpointConfigRecord",
    "EndpointRecord",
    "ModelRecord",
    "NotFound",
    "Registry",
    "RegistryError",
]
