"""Applying row changes to local tables inside the caller's transaction.

Runs of inserts with the same columns go through multi-row upserts (a snapshot is mostly
inserts); updates and deletes go row by row with prepared statements. Membership
records which shapes hold which rows; the change log is written by triggers (see sql.py).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

from replica.store import sql
from replica.tables import RowChange, TableSpec

log = logging.getLogger(__name__)

#: Runs of at least this many inserts with the same columns go through multi-row statements.
BULK_THRESHOLD = 16
_HOLD_ONE = sql.hold(sql.values(4))
#: (connection, table the rows wait in, their column names, rowid range or ()) -> None
Derive = Callable[[sqlite3.Connection, str, Sequence[str], Sequence[int]], None]
#: Bound parameters per statement (SQLite's limit is 32766 since 3.32, 999 before).
MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999


class TableWriter:
    """Writes `RowChange`s for one table on one connection (the caller owns transactions)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        spec: TableSpec,
        derive: Derive | None = None,
    ) -> None:
        self.conn = conn
        self.spec = spec
        #: Brings tables derived from this one in step with rows about to be bulk upserted
        #: (bulk upserts silence the per-row derivations).
        self.derive = derive
        self.table = sql.ident(spec.name)
        self.key = sql.ident(spec.key_column)
        self.required = frozenset(c.name for c in spec.columns if c.not_null and c.default is None)
        self.batch = sql.batch_table(spec)
        self.staged = sql.staged_table(spec)
        # Made here, outside any transaction (a rollback would take it away again); a new
        # writer (the table gained columns) makes it anew.
        conn.execute(f"DROP TABLE IF EXISTS {self.batch}")
        conn.execute(sql.create_like(spec, self.batch))

    def apply(self, shape_id: int, generation: int, changes: Sequence[RowChange]) -> int:
        """Apply changes in order for `shape_id`; return how many memberships came or went."""
        moved = 0
        for (op, columns), group in groupby(changes, key=_group_key):
            batch = list(group)
            if op == "insert" and len(batch) >= BULK_THRESHOLD:
                moved += self._bulk_insert(shape_id, generation, columns, batch)
                continue
            for change in batch:
                if change.op == "insert":
                    moved += self._insert(shape_id, generation, change)
                elif change.op == "update":
                    moved += self._update(shape_id, generation, change)
                else:
                    moved += self._delete(shape_id, change)
        return moved

    # -- inserts ----------------------------------------------------------------------

    def _insert(self, shape_id: int, generation: int, change: RowChange) -> int:
        values = self._full(change)
        statement = sql.upsert(self.spec, list(values), sql.values(len(values)))
        self.conn.execute(statement, list(values.values()))
        return self._hold(shape_id, generation, change.key)

    def _bulk_insert(
        self, shape_id: int, generation: int, columns: tuple[str, ...], batch: list[RowChange]
    ) -> int:
        spec = self.spec
        names, rows = self._params(columns, batch)
        if self._set_based(names, batch):
            self._batch_upsert(names, rows)
        else:
            # Many rows per statement: per-statement costs (and the statement journal SQLite
            # keeps for statements that fire triggers) are paid once per chunk, not per row.
            self._many(lambda source: sql.upsert(spec, names, source), rows)
        before = self.conn.total_changes
        members = [(shape_id, spec.name, c.key, generation) for c in batch]
        with contextlib.suppress(TypeError):  # keys of mixed types: any order will do
            members.sort(key=itemgetter(2))  # B-tree inserts in key order touch fewer pages
        self._many(sql.hold, members)
        return self.conn.total_changes - before

    def _params(
        self, columns: tuple[str, ...], batch: list[RowChange]
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The column names and parameter rows of inserts that share `columns`."""
        if self.spec.key_column in columns:
            # One column set per group (see _group_key): the dicts' values are the params.
            return list(columns), [tuple(c.values.values()) for c in batch]
        return [self.spec.key_column, *columns], [(c.key, *c.values.values()) for c in batch]

    # -- durably staged pages ---------------------------------------------------------------

    def stage(self, changes: Sequence[RowChange]) -> tuple[list[str], int, int] | None:
        """Stage a page of inserts as rows of the staged table, if it can be published
        set-based (see `_set_based`): its column names and the first and last rowid of its
        rows. None (nothing written) for any other page: the caller stages it encoded."""
        if len(changes) < BULK_THRESHOLD or changes[0].op != "insert":
            return None
        columns = tuple(changes[0].values)
        if any(c.op != "insert" or tuple(c.values) != columns for c in changes):
            return None
        batch = list(changes)
        names, rows = self._params(columns, batch)
        if not self._set_based(names, batch):
            return None
        self._ensure_staged_table()
        staged = self.staged
        first = self.conn.execute(f"SELECT coalesce(max(rowid), 0) + 1 FROM {staged}").fetchone()
        self._many(lambda source: sql.insert(staged, names, source), rows)
        return names, first[0], first[0] + len(rows) - 1

    def publish_staged(
        self, shape_id: int, generation: int, names: list[str], first: int, last: int
    ) -> int:
        """Apply a page staged by `stage` (set-based, like `_staged_upsert`) and let go of
        its staged rows; return how many memberships came or went."""
        spec, conn = self.spec, self.conn
        self._log_and_upsert(names, self.staged, (first, last))
        before = conn.total_changes
        conn.execute(
            sql.hold(
                f"SELECT ?, ?, {self.key}, ? FROM {self.staged} WHERE rowid BETWEEN ? AND ? "
                f"ORDER BY {self.key}"
            ),
            (shape_id, spec.name, generation, first, last),
        )
        moved = conn.total_changes - before
        self.drop_staged(first, last)
        return moved

    def drop_staged(self, first: int | None = None, last: int | None = None) -> None:
        """Forget staged rows: those between two rowids (staged by `stage`, so the table
        exists), or all of them (if the table was ever made)."""
        staged = self.staged
        if first is not None and last is not None:
            self.conn.execute(f"DELETE FROM {staged} WHERE rowid BETWEEN ? AND ?", (first, last))
        elif self.conn.execute(
            "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?",
            (sql.staged_table_name(self.spec),),
        ).fetchone():
            self.conn.execute(f"DELETE FROM {staged}")

    def _ensure_staged_table(self) -> None:
        """Make the staged table, or give it the columns the target table gained since."""
        name = sql.staged_table_name(self.spec)
        self.conn.execute(sql.create_like(self.spec, self.staged))
        have = {row[1] for row in self.conn.execute(f"PRAGMA main.table_info({sql.ident(name)})")}
        for column in self.spec.columns:
            if column.name not in have:
                self.conn.execute(
                    f"ALTER TABLE {self.staged} ADD COLUMN {sql.ident(column.name)} {column.type}"
                )

    def _set_based(self, names: list[str], batch: list[RowChange]) -> bool:
        """Whether a run of inserts can be logged and upserted set-based (see sql.bulk_log):
        its primary key is among the columns and no key comes twice."""
        if "detached_at" in names or not set(self.spec.primary_key) <= set(names):
            return False
        return len({c.key for c in batch}) == len(batch)

    def _batch_upsert(self, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        batch = self.batch
        self.conn.execute(f"DELETE FROM {batch}")
        self._many(lambda source: sql.insert(batch, names, source), rows)
        self._log_and_upsert(names, batch)
        self.conn.execute(f"DELETE FROM {batch}")

    def _log_and_upsert(
        self, names: list[str], source: str, page: tuple[int, int] | None = None
    ) -> None:
        """Log, then upsert, the rows waiting in `source` (the batch table, or with `page`,
        the first and last rowid of a page, the staged table); the per-row log and derive
        triggers stand aside meanwhile (`bulk`), and derived tables follow set-based."""
        spec, conn, params = self.spec, self.conn, page or ()
        if self.derive is not None:  # compares the waiting rows with the stored ones
            self.derive(conn, source, names, params)
        conn.execute(sql.bulk_log(spec, names, source, page=page is not None), params)
        conn.execute("UPDATE temp._replica_context SET bulk = 1")
        conn.execute(sql.bulk_upsert(spec, names, source, page=page is not None), params)
        conn.execute("UPDATE temp._replica_context SET bulk = NULL")

    def _many(self, statement: Callable[[str], str], rows: list[tuple[Any, ...]]) -> None:
        """Run `statement(source)` for many rows, `source` being a multi-row `VALUES` of
        as many rows as fit in one statement.

        The rows left over after the full statements go in statements of 256, 128, .., 1
        rows: a few shapes, each prepared once and kept in the connection's statement cache,
        rather than one of a new length for nearly every page (each a large statement,
        prepared anew and then kept: 14 of them per 100k runs)."""
        width = len(rows[0])
        per = max(1, min(500, MAX_VARIABLES // width))
        full = statement(sql.values(width, per)) if len(rows) >= per else ""
        start, left = 0, len(rows)
        while left:
            size = per if left >= per else 1 << (left.bit_length() - 1)
            text = full if size == per else statement(sql.values(width, size))
            chunk = rows[start : start + size]
            self.conn.execute(text, [value for row in chunk for value in row])
            start += size
            left -= size

    def _full(self, change: RowChange) -> dict[str, Any]:
        values = {self.spec.key_column: change.key}
        values.update(change.values)
        values[self.spec.key_column] = change.key
        return values

    # -- updates ----------------------------------------------------------------------

    def _update(self, shape_id: int, generation: int, change: RowChange) -> int:
        values = {k: v for k, v in change.values.items() if k != self.spec.key_column}
        if values:
            columns = list(values)
            params = [*values.values(), change.key, *values.values()]
            cursor = self.conn.execute(sql.update(self.spec, columns), params)
            if cursor.rowcount:
                return self._hold(shape_id, generation, change.key)
        if self._exists(change.key):
            return self._hold(shape_id, generation, change.key)
        # An update for a row we do not have (a changes-only log, or replayed history):
        # keep it only if it carries a whole row.
        if self.required <= set(values) | {self.spec.key_column}:
            return self._insert(shape_id, generation, change)
        log.debug("%s: update for unknown key %r ignored", self.spec.name, change.key)
        return 0

    def _exists(self, key: Any) -> bool:
        row = self.conn.execute(
            f"SELECT 1 FROM {self.table} WHERE {self.key} = ?", (key,)
        ).fetchone()
        return row is not None

    # -- membership and deletes -----------------------------------------------------------

    def _hold(self, shape_id: int, generation: int, key: Any) -> int:
        cursor = self.conn.execute(_HOLD_ONE, (shape_id, self.spec.name, key, generation))
        return cursor.rowcount

    def _delete(self, shape_id: int, change: RowChange) -> int:
        cursor = self.conn.execute(
            "DELETE FROM _replica_members WHERE shape_id = ? AND tbl = ? AND key = ?",
            (shape_id, self.spec.name, change.key),
        )
        self.release([change.key], detached_at=None)
        return cursor.rowcount

    def release(self, keys: Iterable[Any] | None, *, detached_at: str | None) -> None:
        """Detach or delete rows no shape holds any more (`keys`, or the staged `_gone`)."""
        spec = self.spec
        orphan = (
            "NOT EXISTS (SELECT 1 FROM _replica_members AS m "
            f"WHERE m.tbl = {sql.literal(spec.name)} AND m.key = {self.table}.{self.key})"
        )
        if keys is None:
            where = f"{self.key} IN (SELECT key FROM temp._replica_gone) AND {orphan}"
            params: list[Any] = []
        else:
            keys = list(keys)
            where = f"{self.key} IN ({', '.join('?' for _ in keys)}) AND {orphan}"
            params = keys
        if spec.keep_detached:
            stamp = detached_at or _now(self.conn)
            self.conn.execute(
                f'UPDATE {self.table} SET "detached_at" = ? '
                f'WHERE "detached_at" IS NULL AND {where}',
                [stamp, *params],
            )
        else:
            self.conn.execute(f"DELETE FROM {self.table} WHERE {where}", params)

    def sweep(self, shape_id: int, generation: int) -> int:
        """After a snapshot: let go of rows this shape held before but not in it."""
        return self._let_go(shape_id, "m.generation < ?", [generation])

    def let_go_older(self, shape_id: int, column: str, before: str) -> int:
        """Let go of the rows this shape holds whose `column` is below `before` (rows that
        left the shape without the server saying so)."""
        return self._let_go(
            shape_id,
            f"m.key IN (SELECT {self.key} FROM {self.table} WHERE {sql.ident(column)} < ?)",
            [before],
        )

    def _let_go(self, shape_id: int, condition: str, params: list[Any]) -> int:
        """Drop the memberships of this shape matching `condition` (over `m`, the
        membership), then detach or delete the rows no shape holds any more."""
        conn = self.conn
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _replica_gone (key)")
        conn.execute("DELETE FROM temp._replica_gone")
        conn.execute(
            "INSERT INTO temp._replica_gone SELECT m.key FROM _replica_members AS m "
            f"WHERE m.shape_id = ? AND m.tbl = ? AND {condition}",
            [shape_id, self.spec.name, *params],
        )
        gone = conn.execute("SELECT count(*) FROM temp._replica_gone").fetchone()[0]
        if gone:
            conn.execute(
                "DELETE FROM _replica_members WHERE shape_id = ? AND tbl = ? "
                "AND key IN (SELECT key FROM temp._replica_gone)",
                (shape_id, self.spec.name),
            )
            self.release(None, detached_at=None)
        conn.execute("DELETE FROM temp._replica_gone")
        return gone


def _group_key(change: RowChange) -> tuple[str, tuple[str, ...]]:
    if change.op == "insert":
        return ("insert", tuple(change.values))
    return (change.op, ())


def _now(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT committed_at FROM temp._replica_context").fetchone()
    if row is not None and row[0]:
        return row[0]
    return conn.execute("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')").fetchone()[0]
