"""A read-only `sqlite_utils.Database` over a replica: sqlite-utils' Python API for reading it.

SQLite refuses every write (the connection is `open_readonly`'s: `mode=ro`, `query_only`, no
ATTACH, no pragma changes); this module turns that refusal into a `ReadOnlyViewError` that
says why. Imported only by `Replica.sqlite_utils()`, so sqlite-utils stays off other paths.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from replica.errors import ReadOnlyViewError
from replica.store.readonly import open_readonly

# SQLite's words when it refuses a write ("attempt to write a readonly database") and when
# the authorizer denies a statement ("not authorized": ATTACH, setting a pragma;
# "authorization denied": VACUUM).
_REFUSALS = ("readonly", "authoriz")


class ReadOnlyDatabase(sqlite_utils.Database):
    """sqlite-utils' `Database` on a read-only connection to a replica.

    Reads work as usual (`db["runs"].rows_where(...)`, `db.query(...)`, `db.table_names()`);
    a write raises `ReadOnlyViewError` and changes nothing. Close it with `close()` or a
    `with` block.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Transactions allowed: sqlite-utils reads inside a savepoint, and this connection
        # is the view's own.
        conn = open_readonly(self.path, transactions=True)
        try:
            # No `PRAGMA recursive_triggers` (setting a pragma is refused) and no plugins
            # (a plugin that writes would make opening fail).
            super().__init__(conn, recursive_triggers=False, execute_plugins=False)
        except BaseException:
            conn.close()
            raise

    def execute(
        self, sql: str, parameters: Sequence[Any] | dict[str, Any] | None = None
    ) -> sqlite3.Cursor:
        """`Database.execute`; a statement that would write raises `ReadOnlyViewError`."""
        with self._refusal(sql):
            return super().execute(sql, parameters)

    def executescript(self, sql: str) -> sqlite3.Cursor:
        """`Database.executescript`; a script that would write raises `ReadOnlyViewError`."""
        with self._refusal(sql):
            return super().executescript(sql)

    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> Generator[dict[str, Any], None, None]:
        """`Database.query`; a statement that would write raises `ReadOnlyViewError`."""
        with self._refusal(sql):
            return super().query(sql, params)

    # sqlite-utils 4 has these too; 3.x does not.
    def __enter__(self) -> ReadOnlyDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def __repr__(self) -> str:
        return f"<ReadOnlyDatabase {str(self.path)!r}>"

    @contextlib.contextmanager
    def _refusal(self, sql: str) -> Iterator[None]:
        try:
            yield
        except ReadOnlyViewError:
            raise
        except sqlite3.DatabaseError as exc:
            if not any(word in str(exc) for word in _REFUSALS):
                raise
            raise ReadOnlyViewError(
                f"{self.path} is read-only through this sqlite-utils view: SQLite refused "
                f"{_head(sql)!r}: {exc}"
            ) from None


def _head(sql: str, limit: int = 60) -> str:
    """The start of a statement, on one line, for an error message."""
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["ReadOnlyDatabase"]
