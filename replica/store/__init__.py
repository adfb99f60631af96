"""The local SQLite replica: schema, migrations, applying row changes atomically with
their shape positions, row membership, and the change log. Knows nothing of HTTP."""

from replica.store.database import WriterLock, connect, migrate
from replica.store.store import ApplyResult, ShapeRecord, Store

__all__ = ["ApplyResult", "ShapeRecord", "Store", "WriterLock", "connect", "migrate"]
