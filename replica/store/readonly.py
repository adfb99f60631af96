"""Read-only access for users' queries: no writes, no ATTACH, no extensions, no pragma writes,
no transactions.

Used by `replica query`, `Replica.query` and the read-only sqlite-utils view: SQLite enforces
it (a `mode=ro` connection, `query_only`, and an authorizer), so a query cannot change the
replica however it is written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from replica.errors import DatabaseError, QueryRefusedError
from replica.store.database import connect

# ATTACH could open (and create) another file read-write.
_ALWAYS_DENIED = frozenset({sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH})
# Transactions too, on a shared connection: a SAVEPOINT or BEGIN left open would pin it to
# one snapshot, so every later query (`Replica.query`) would read stale data, and the WAL
# could not be checkpointed past it.
_TRANSACTIONS = frozenset({sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT})

# Pragmas whose argument names a table or an index to describe, not a value to set:
# sqlite-utils reads a table's columns, indexes and foreign keys with them.
_DESCRIBING_PRAGMAS = frozenset(
    {
        "foreign_key_list",
        "index_info",
        "index_list",
        "index_xinfo",
        "table_info",
        "table_list",
        "table_xinfo",
    }
)


def _authorizer(denied: frozenset[int]) -> Callable[..., int]:
    def authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
        if action in denied:
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA and arg2 is not None:
            # Setting a pragma is denied; reading one, or describing a table, is fine.
            return sqlite3.SQLITE_OK if arg1 in _DESCRIBING_PRAGMAS else sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    return authorize


def open_readonly(path: str | Path, *, transactions: bool = False) -> sqlite3.Connection:
    """A read-only, sandboxed connection to an existing replica database.

    `transactions=True` lets BEGIN and SAVEPOINT through (sqlite-utils reads inside a
    savepoint); only for a connection that one caller owns, never a shared one.
    """
    path = Path(path)
    if not path.exists():
        raise DatabaseError(
            f"database {path} does not exist",
            hint="sync it first (replica sync, or Replica.sync), or check the path",
            cli_hint="run replica sync first, or pass --db",
        )
    conn = connect(path, readonly=True)
    conn.execute("PRAGMA query_only = 1")
    conn.set_authorizer(
        _authorizer(_ALWAYS_DENIED if transactions else _ALWAYS_DENIED | _TRANSACTIONS)
    )
    return conn


def run_query(
    conn: sqlite3.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of one read-only statement, with typed errors."""
    try:
        cursor = conn.execute(sql, params)
        rows = cursor.fetchall()
    except (sqlite3.Warning, sqlite3.ProgrammingError) as exc:
        if "binding" in str(exc):
            raise DatabaseError(
                f"query failed: {exc}",
                hint="give a value for every parameter of the query",
                cli_hint="give every :name a value with -p NAME VALUE",
            ) from None
        # several statements at once
        raise DatabaseError(f"query failed: {exc}", hint="run one statement at a time") from None
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "authoriz" in text or "readonly" in text or "query_only" in text:
            raise QueryRefusedError(f"query refused: {text}") from None
        raise DatabaseError(f"query failed: {text}", hint="check the SQL") from None
    return [d[0] for d in cursor.description or ()], rows
