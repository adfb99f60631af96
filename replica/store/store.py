"""The replica database as the sync engine writes it: shapes, positions, rows, change log.

`Store.apply` is the one write path. Each call is one transaction holding the shape's new
position: pages that do not end at an up-to-date are staged (durably, in `_replica_pending`);
an up-to-date publishes everything staged plus its own changes at once, so readers only ever
see consistent states and a restart resumes exactly where the last commit left off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from replica.errors import ApplyError, DatabaseError
from replica.iso_time import now_iso
from replica.store import derived, sql
from replica.store.apply import TableWriter
from replica.store.database import WriterLock, connect, migrate
from replica.store.table_specs import create_table, grow_table, spec_from_json, spec_to_json
from replica.tables import RUNS, Column, RowChange, TableSpec

log = logging.getLogger(__name__)

_SHAPE_COLUMNS = (
    'id, key, kind, target, definition, handle, "offset", position, phase, generation, '
    "state, rows, last_up_to_date, last_error, next_retry_at, created_at, updated_at, "
    "handle_since"
)


@dataclass(frozen=True)
class ShapeRecord:
    """A subscribed shape as stored in `_replica_shapes`."""

    id: int
    key: str
    kind: str
    target: str
    definition: dict[str, Any]
    handle: str | None
    offset: str
    position: dict[str, Any] | None
    phase: str
    generation: int
    state: str
    rows: int
    last_up_to_date: str | None
    last_error: str | None
    next_retry_at: str | None
    created_at: str
    updated_at: str
    handle_since: str | None  # when the current handle was first written

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ShapeRecord:
        values = list(row)
        values[4] = orjson.loads(values[4] or "{}")
        values[7] = orjson.loads(values[7]) if values[7] else None
        return cls(*values)


@dataclass(frozen=True)
class ApplyResult:
    """What one `Store.apply` committed."""

    published: bool  # True when the call reached an up-to-date and made changes visible
    changes: int  # change-log entries written
    last_seq: int | None  # sequence number of the last of them
    rows: int  # rows the shape holds now


class Store:
    """The writer's handle on a replica database (one per file: a lock guards it)."""

    def __init__(self, path: str | Path, *, lock: bool = True) -> None:
        self.path = Path(path)
        self._lock = WriterLock(self.path) if lock else None
        if self._lock is not None:
            self._lock.acquire()
        try:
            if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
                raise DatabaseError(
                    f"database {self.path} is read-only for this user",
                    hint="sync as the user that owns it, or into another file",
                    cli_hint="sync as the user that owns it, or into another --db",
                )
            self.conn = connect(self.path)
            migrate(self.conn)
            self.conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _replica_context "
                "(shape_id INTEGER, committed_at TEXT, bulk INTEGER)"
            )
            self.tables: dict[str, TableSpec] = {}
            self._writers: dict[str, TableWriter] = {}
            self._install(RUNS)
            for (text,) in self.conn.execute("SELECT spec FROM _replica_tables"):
                self._install(spec_from_json(text))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection and release the writer lock."""
        conn = getattr(self, "conn", None)
        if conn is not None:
            # Fold the WAL back into the database file, so the file alone holds everything
            # (a copy of replica.db without its -wal would otherwise miss recent commits).
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            self.conn = None  # type: ignore[assignment]
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tables -----------------------------------------------------------------------

    def _install(self, spec: TableSpec) -> None:
        for statement in sql.log_triggers(spec):
            self.conn.execute(statement)
        derive = None
        if spec.name == RUNS.name:  # run_tags and run_history follow runs
            for statement in derived.TRIGGERS:
                self.conn.execute(statement)
            derive = derived.derive_waiting
        self.tables[spec.name] = spec
        self._writers[spec.name] = TableWriter(self.conn, spec, derive)

    def ensure_table(self, spec: TableSpec) -> TableSpec:
        """Create the table of a plain Electric shape, or add the columns it gained.

        Returns the spec in effect (existing columns are kept even when a schema drops them).
        """
        if spec.name == RUNS.name or spec.name.startswith(("_replica_", "run_", "sqlite_")):
            raise DatabaseError(f"table name {spec.name!r} is reserved by replica")
        current = self.tables.get(spec.name)
        with self._transaction():
            if current is None:
                existing = self.conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (spec.name,)
                ).fetchone()
                if existing:
                    raise DatabaseError(
                        f"table {spec.name!r} already exists and was not created by replica",
                        hint="sync into another database, or drop that table first",
                    )
                create_table(self.conn, spec)
                merged = spec
            else:
                merged = grow_table(self.conn, current, spec)
            self.conn.execute(
                "INSERT INTO _replica_tables (name, spec) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
                (merged.name, spec_to_json(merged)),
            )
        self._install(merged)
        return merged

    def set_keep_detached(self, table: str, keep: bool) -> None:
        """Choose what happens to a row of `table` that leaves every shape: kept with
        `detached_at` set (`keep`), or deleted. Runs are kept by default, rows of plain
        Electric tables deleted."""
        spec = self.tables[table]
        if spec.keep_detached == keep:
            return
        columns = spec.columns
        with self._transaction():
            if keep and "detached_at" not in spec.column_names:
                self.conn.execute(f'ALTER TABLE {sql.ident(table)} ADD COLUMN "detached_at" TEXT')
                columns = (*columns, Column("detached_at", "TEXT"))
            changed = replace(spec, columns=columns, keep_detached=keep)
            if table != RUNS.name:
                self.conn.execute(
                    "UPDATE _replica_tables SET spec = ? WHERE name = ?",
                    (spec_to_json(changed), table),
                )
        self._install(changed)

    # -- shapes -----------------------------------------------------------------------

    def register_shape(
        self, key: str, *, kind: str, target: str, definition: Mapping[str, Any] | None = None
    ) -> ShapeRecord:
        """The shape stored under `key`, created (at offset -1) if new.

        `target` may name a table that does not exist yet (a plain Electric shape's table is
        created from its schema); it must exist before the shape's first `apply`.
        """
        now = now_iso()
        with self._transaction():
            self.conn.execute(
                "INSERT INTO _replica_shapes (key, kind, target, definition, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "definition = excluded.definition",
                (key, kind, target, orjson.dumps(dict(definition or {})).decode(), now, now),
            )
        shape = self.shape(key)
        assert shape is not None
        return shape

    def shape(self, key: str) -> ShapeRecord | None:
        """The stored shape with this key, if any."""
        row = self.conn.execute(
            f"SELECT {_SHAPE_COLUMNS} FROM _replica_shapes WHERE key = ?", (key,)
        ).fetchone()
        return ShapeRecord.from_row(row) if row else None

    def shapes(self) -> list[ShapeRecord]:
        """Every stored shape, oldest first."""
        rows = self.conn.execute(f"SELECT {_SHAPE_COLUMNS} FROM _replica_shapes ORDER BY id")
        return [ShapeRecord.from_row(row) for row in rows]

    def set_status(
        self,
        shape_id: int,
        state: str,
        *,
        error: str | None = None,
        next_retry_at: str | None = None,
    ) -> None:
        """Record how a shape is doing (initial, live, refetching, backing-off, failed)."""
        with self._transaction():
            self.conn.execute(
                "UPDATE _replica_shapes SET state = ?, last_error = ?, next_retry_at = ?, "
                "updated_at = ? WHERE id = ?",
                (state, error, next_retry_at, now_iso(), shape_id),
            )

    def forget_position(self, shape_id: int | None = None) -> int:
        """Make shapes (all if None) fetch from scratch on the next sync; rows stay until
        the new snapshot replaces them. Returns how many shapes were reset."""
        where, params = ("WHERE id = ?", (shape_id,)) if shape_id is not None else ("", ())
        with self._transaction():
            self._drop_pending(shape_id)
            cursor = self.conn.execute(
                "UPDATE _replica_shapes SET handle = NULL, \"offset\" = '-1', position = NULL, "
                "handle_since = NULL, phase = 'snapshot', generation = generation + 1, "
                "state = 'initial', "
                f"updated_at = ? {where}",
                (now_iso(), *params),
            )
        return cursor.rowcount

    def remove_shape(self, shape_id: int) -> None:
        """Unsubscribe: let go of the shape's rows (detached or deleted) and forget it."""
        shape = self._shape_by_id(shape_id)
        with self._transaction(shape_id):
            writer = self._writers[shape.target]
            writer.sweep(shape_id, generation=shape.generation + 1)
            self._drop_pending(shape_id)
            self.conn.execute("DELETE FROM _replica_shapes WHERE id = ?", (shape_id,))

    def let_go_older(self, shape_id: int, column: str, before: str) -> int:
        """Let go of the rows a shape holds whose `column` is below `before` (e.g. runs that
        aged out of a moving window, which the server drops without a delete): detached or
        deleted as when they leave the shape. Returns how many it let go of."""
        shape = self._shape_by_id(shape_id)
        with self._transaction(shape_id):
            gone = self._writers[shape.target].let_go_older(shape_id, column, before)
            if gone:
                self.conn.execute(
                    "UPDATE _replica_shapes SET rows = rows - ? WHERE id = ?", (gone, shape_id)
                )
        return gone

    # -- the write path ---------------------------------------------------------------

    def apply(
        self,
        shape_id: int,
        changes: Sequence[RowChange],
        *,
        position: Mapping[str, Any],
        up_to_date: bool,
        reset: bool = False,
    ) -> ApplyResult:
        """Stage or publish one page of changes for a shape, with its new position.

        `reset` starts the shape over (everything staged is dropped; the rows the next
        snapshot does not contain are let go when it is published). `up_to_date` publishes.
        """
        shape = self._shape_by_id(shape_id)
        writer = self._writers.get(shape.target)
        if writer is None:
            raise DatabaseError(f"table {shape.target!r} of shape {shape.key} does not exist")
        phase, generation = shape.phase, shape.generation
        now = now_iso()
        with self._transaction(shape_id, now) as first_seq:
            if reset:
                self._drop_pending(shape_id)
                phase, generation = "snapshot", generation + 1
            rows = shape.rows
            if not up_to_date:
                if changes:
                    self._stage(shape_id, writer, changes)
            else:
                moved = 0
                for page in self._pending(shape_id):
                    if isinstance(page, tuple):
                        moved += writer.publish_staged(shape_id, generation, *page)
                    else:
                        moved += writer.apply(shape_id, generation, page)
                moved += writer.apply(shape_id, generation, changes)
                self.conn.execute("DELETE FROM _replica_pending WHERE shape_id = ?", (shape_id,))
                if phase == "snapshot":
                    moved += writer.sweep(shape_id, generation)
                    phase = "live"
                if moved or reset:
                    rows = self.conn.execute(
                        "SELECT count(*) FROM _replica_members WHERE shape_id = ?", (shape_id,)
                    ).fetchone()[0]
            handle = position.get("handle")
            self.conn.execute(
                'UPDATE _replica_shapes SET handle = ?, "offset" = ?, position = ?, phase = ?, '
                "generation = ?, rows = ?, updated_at = ?, "
                "last_up_to_date = CASE WHEN ? THEN ? ELSE last_up_to_date END, "
                "handle_since = CASE WHEN handle IS ? THEN handle_since ELSE ? END WHERE id = ?",
                (
                    handle,
                    str(position.get("offset", "-1")),
                    orjson.dumps(dict(position)).decode(),
                    phase,
                    generation,
                    rows,
                    now,
                    up_to_date,
                    now,
                    handle,
                    now if handle else None,
                    shape_id,
                ),
            )
            last_seq = self._last_seq()
        written = (last_seq - first_seq) if last_seq is not None else 0
        return ApplyResult(up_to_date, written, last_seq if written else None, rows)

    def _stage(self, shape_id: int, writer: TableWriter, changes: Sequence[RowChange]) -> None:
        """Keep a page until the shape's next up-to-date: a page of inserts as rows of the
        staged table (published set-based), any other page encoded."""
        staged = writer.stage(changes)
        if staged is None:
            self.conn.execute(
                "INSERT INTO _replica_pending (shape_id, changes) VALUES (?, ?)",
                (shape_id, _encode(changes)),
            )
            return
        names, first, last = staged
        self.conn.execute(
            "INSERT INTO _replica_pending (shape_id, changes, columns, first_row, last_row) "
            "VALUES (?, x'', ?, ?, ?)",
            (shape_id, orjson.dumps(names).decode(), first, last),
        )

    def _pending(self, shape_id: int) -> Iterator[list[RowChange] | tuple[list[str], int, int]]:
        """The shape's staged pages in order: decoded changes, or (columns, first rowid, last
        rowid) of a page in the staged table."""
        # One staged page at a time: memory stays bounded by a page, not by the shape.
        last = 0
        while True:
            row = self.conn.execute(
                "SELECT id, changes, columns, first_row, last_row FROM _replica_pending "
                "WHERE shape_id = ? AND id > ? ORDER BY id LIMIT 1",
                (shape_id, last),
            ).fetchone()
            if row is None:
                return
            last = row[0]
            if row[2] is None:
                yield _decode(row[1])
            else:
                yield orjson.loads(row[2]), row[3], row[4]

    def _drop_pending(self, shape_id: int | None) -> None:
        """Forget the staged pages of a shape (of every shape if None)."""
        if shape_id is None:
            for writer in self._writers.values():
                writer.drop_staged()
            self.conn.execute("DELETE FROM _replica_pending")
            return
        writer = self._writers.get(self._shape_by_id(shape_id).target)
        ranges = self.conn.execute(
            "SELECT first_row, last_row FROM _replica_pending "
            "WHERE shape_id = ? AND columns IS NOT NULL",
            (shape_id,),
        ).fetchall()
        if writer is not None:
            for first, last in ranges:
                writer.drop_staged(first, last)
        self.conn.execute("DELETE FROM _replica_pending WHERE shape_id = ?", (shape_id,))

    # -- reading ----------------------------------------------------------------------

    def row(self, table: str, key: Any) -> dict[str, Any] | None:
        """The stored row of `table` whose key column equals `key`, as a dict."""
        spec = self.tables[table]
        cursor = self.conn.execute(
            f"SELECT * FROM {sql.ident(table)} WHERE {sql.ident(spec.key_column)} = ?", (key,)
        )
        found = cursor.fetchone()
        if found is None:
            return None
        return dict(zip([d[0] for d in cursor.description], found, strict=True))

    # -- helpers ----------------------------------------------------------------------

    def _shape_by_id(self, shape_id: int) -> ShapeRecord:
        row = self.conn.execute(
            f"SELECT {_SHAPE_COLUMNS} FROM _replica_shapes WHERE id = ?", (shape_id,)
        ).fetchone()
        if row is None:
            raise DatabaseError(f"no shape with id {shape_id} in {self.path}")
        return ShapeRecord.from_row(row)

    def _last_seq(self) -> int | None:
        row = self.conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = '_replica_changes'"
        ).fetchone()
        return row[0] if row else None

    @contextlib.contextmanager
    def _transaction(self, shape_id: int | None = None, now: str | None = None) -> Iterator[int]:
        """BEGIN IMMEDIATE .. COMMIT, with the change-log context; rolled back on any error.

        Yields the change-log sequence number before the transaction's first change.
        """
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot start a write transaction on {self.path}: {exc}") from exc
        try:
            conn.execute("DELETE FROM temp._replica_context")
            conn.execute(
                "INSERT INTO temp._replica_context (shape_id, committed_at) VALUES (?, ?)",
                (shape_id, now or now_iso()),
            )
            yield self._last_seq() or 0
            conn.execute("DELETE FROM temp._replica_context")
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.IntegrityError) or "malformed JSON" in str(exc):
                raise ApplyError(f"a change was refused by the local schema: {exc}") from exc
            if isinstance(exc, sqlite3.Error):
                raise DatabaseError(f"writing {self.path} failed: {exc}") from exc
            raise


def _encode(changes: Sequence[RowChange]) -> bytes:
    return orjson.dumps([[c.op, c.key, c.values] for c in changes])


def _decode(blob: bytes) -> list[RowChange]:
    return [RowChange(op, key, values) for op, key, values in orjson.loads(blob)]
