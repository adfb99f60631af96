"""Read-only access for users' queries: no writes, no ATTACH, no extensions, no pragma writes,
no transactions.

Used by `replica query` and `Replica.query`: SQLite enforces it (a `mode=ro` connection,
`query_only`, and an authorizer), so a query cannot change the replica however it is
written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from replica.errors import DatabaseError, QueryRefusedError
from replica.store.database import connect

# Transactions too: a SAVEPOINT or BEGIN left open would pin the shared connection to one
# snapshot, so every later query (`Replica.query`) would read stale data, and the WAL could
# not be checkpointed past it.
_DENIED = {
    sqlite3.SQLITE_ATTACH,
    sqlite3.SQLITE_DETACH,
    sqlite3.SQLITE_TRANSACTION,
    sqlite3.SQLITE_SAVEPOINT,
}


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if action in _DENIED:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None:
        return sqlite3.SQLITE_DENY  # setting a pragma; reading one is fine
    return sqlite3.SQLITE_OK


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only, sandboxed connection to an existing replica database."""
    path = Path(path)
    if not path.exists():
        raise DatabaseError(
            f"database {path} does not exist",
            hint="sync it first (replica sync, or Replica.sync), or check the path",
            cli_hint="run replica sync first, or pass --db",
        )
    conn = connect(path, readonly=True)
    conn.execute("PRAGMA query_only = 1")
    conn.set_authorizer(_authorize)
    return conn


def run_query(
    conn: sqlite3.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of one read-only statement, with typed errors."""
    try:
        cursor = conn.execute(sql, params)
        rows = cursor.fetchall()
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "authoriz" in text or "readonly" in text or "query_only" in text:
            raise QueryRefusedError(f"query refused: {text}") from None
        raise DatabaseError(f"query failed: {text}", hint="check the SQL") from None
    except (sqlite3.Warning, sqlite3.ProgrammingError) as exc:  # several statements at once
        raise DatabaseError(f"query failed: {exc}", hint="run one statement at a time") from None
    return [d[0] for d in cursor.description or ()], rows
