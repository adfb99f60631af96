"""Live queries: a SQL query re-run whenever a table it reads changes.

The tables a query reads are found with sqlglot (`run_tags` and `run_history` count as
`runs`, which they follow). A wake re-runs the query only if the change log shows a change
to one of them since the last run; a query reading anything the log does not cover (a
`_replica_` table, a table replica does not sync) re-runs on every commit instead. Bursts
are coalesced: after a relevant change the query waits `debounce` seconds, then runs once
for everything committed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from replica.errors import ReplicaError
from replica.notify.changes import DERIVED_TABLES, TableSpecs, head_seq, pruned_through
from replica.notify.wake import ChangeSignal, Pulse
from replica.store.database import connect

log = logging.getLogger(__name__)

Rows = list[dict[str, Any]]


class QueryError(ReplicaError, ValueError):
    """A query that cannot be watched (not valid SQL, or not a read)."""

    hint = "watch_query takes one SELECT statement"


def query_tables(sql: str) -> set[str] | None:
    """The tables a SELECT reads (lower-cased, CTE names excluded); None if sqlglot cannot
    tell (the caller then watches every commit)."""
    import sqlglot  # slow to import; only needed here
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except SqlglotError:
        return None
    if len(statements) != 1:
        raise QueryError(f"watch_query takes one statement, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise QueryError(f"watch_query takes a SELECT, not {tree.key.upper()}: {sql!r}")
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    tables = set()
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Func):
            continue  # json_each(...) and other table-valued functions
        name = table.name.lower()
        if name and name not in ctes:
            tables.add(name)
    return tables


class LiveQuery:
    """`async for rows in db.watch_query(sql)` (or a plain `for` outside async code):
    the result now, then a fresh result after every change to a table the query reads.

    `rows` is a list of dicts. `executions` counts runs of the query; `tables` are the
    logged tables it depends on, and `every_commit` tells whether it re-runs on any commit.
    """

    def __init__(
        self,
        path: Path,
        signal: ChangeSignal,
        sql: str,
        params: Sequence[Any] | dict[str, Any] = (),
        *,
        debounce: float = 0.05,
    ) -> None:
        self.path = path
        self.signal = signal
        self.sql = sql
        self.params = params
        self.debounce = debounce
        self.executions = 0
        conn = connect(path, readonly=True)
        try:
            try:
                conn.execute(f"EXPLAIN {sql}", params).fetchall()
            except (sqlite3.Error, sqlite3.Warning) as exc:  # Warning: several statements (3.10)
                raise QueryError(f"cannot watch {sql!r}: {exc}") from None
            found = query_tables(sql)
            logged = TableSpecs(conn).names()
        finally:
            conn.close()
        if found is None:
            log.info("could not find the tables of %r; re-running it on every commit", sql)
            self.tables: frozenset[str] = frozenset()
            self.every_commit = True
        else:
            mapped = {DERIVED_TABLES.get(t, t) for t in found}
            self.tables = frozenset(t for t in mapped if t in logged)
            self.every_commit = bool(mapped - self.tables)

    async def __aiter__(self) -> AsyncIterator[Rows]:
        conn = connect(self.path, readonly=True)
        conn.execute("PRAGMA query_only = 1")
        pulse = Pulse(self.signal, any_commit=self.every_commit)
        try:
            cursor, rows = await asyncio.to_thread(self._execute, conn)
            yield rows
            while True:
                seen = pulse.generation
                relevant, head = await asyncio.to_thread(self._changed, conn, cursor)
                if not relevant:
                    cursor = head
                    await pulse.wait(seen)
                    if self.every_commit:
                        relevant = True
                    else:
                        continue
                # Coalesce a burst: whatever commits during the pause is in the next result.
                await asyncio.sleep(self.debounce)
                cursor, rows = await asyncio.to_thread(self._execute, conn)
                yield rows
        finally:
            pulse.close()
            conn.close()

    def __iter__(self) -> Iterator[Rows]:
        loop = asyncio.new_event_loop()
        results = self.__aiter__()
        try:
            while True:
                try:
                    yield loop.run_until_complete(results.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(results.aclose())  # type: ignore[attr-defined]
            loop.close()

    def _execute(self, conn: sqlite3.Connection) -> tuple[int, Rows]:
        conn.execute("BEGIN")
        try:
            head = head_seq(conn)
            cursor = conn.execute(self.sql, self.params)
            names = [d[0] for d in cursor.description or ()]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            conn.execute("COMMIT")
        self.executions += 1
        return head, rows

    def _changed(self, conn: sqlite3.Connection, cursor: int) -> tuple[bool, int]:
        if self.every_commit:
            return False, cursor  # decided by the commit pulse
        conn.execute("BEGIN")
        try:
            head = head_seq(conn)
            if head <= cursor:
                return False, cursor
            if cursor < pruned_through(conn):
                return True, head
            touched = {
                tbl
                for (tbl,) in conn.execute(
                    "SELECT DISTINCT tbl FROM _replica_changes WHERE seq > ? AND seq <= ?",
                    (cursor, head),
                ).fetchall()
            }
        finally:
            conn.execute("COMMIT")
        return bool(touched & self.tables), head


__all__ = ["LiveQuery", "QueryError", "query_tables"]
