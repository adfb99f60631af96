"""Shapes: definitions, handles, snapshot chunks and per-shape logs, as Electric keeps them.

A shape is created by the first `offset=-1` request for a definition. Its log starts with a
snapshot (pre-rendered chunks at offsets `0_0`, `0_1`, ...; `0_inf` ends it) built in the
background from a pinned SQLite read snapshot, so the first chunk is served while later ones
are still being rendered; committed transactions are converted per shape (where-clause moves,
replica modes, primary-key changes) and appended at `<lsn>_<op_position>` offsets. Handles are
`<hash>-<unix µs>` and never reused; rotating a shape retires its handle for good.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from replica.devserver.offsets import BEFORE_ALL, INF, SNAPSHOT_END, Offset
from replica.devserver.pgtypes import encode_value
from replica.devserver.snapshots import SnapshotBuilder
from replica.devserver.tables import Change, Database, Row, Table, Transaction
from replica.devserver.where import Where

log = logging.getLogger(__name__)


class Wakeable(Protocol):
    """Something long-polls wait on: `wake()` releases them (called on the server's loop)."""

    def wake(self) -> None: ...


@dataclass(frozen=True)
class ShapeDefinition:
    """What identifies a shape (Electric's `Shape.comparable/1`)."""

    table: Table
    columns: tuple[str, ...]
    where: Where | None = None
    params: tuple[tuple[str, str], ...] = ()
    replica: Literal["default", "full"] = "default"
    log_mode: Literal["full", "changes_only"] = "full"

    @property
    def identity(self) -> tuple[Any, ...]:
        return (
            self.table.relation,
            self.columns,
            self.where.sql if self.where else None,
            self.params,
            self.replica,
            self.log_mode,
        )


@dataclass
class ReadResult:
    """A slice of a shape log: message bodies (JSON, without brackets) and where it ends."""

    parts: list[bytes]
    end: Offset
    has_data: bool
    up_to_date: bool


class Shape:
    """One shape log. Mutated only under the database lock; waited on from the event loop."""

    def __init__(self, shape_id: int, handle: str, definition: ShapeDefinition, lsn: int) -> None:
        self.id = shape_id
        self.handle = handle
        self.definition = definition
        self.created_lsn = lsn
        self.created_at = time.time()
        self.chunk_count = 0  # snapshot chunks stored so far
        self.snapshot_complete = False
        self.snapshot_error: str | None = None
        self.rows = 0
        self.latest = SNAPSHOT_END  # last offset of the log once the snapshot is complete
        self.log_entries = 0
        self.rotated = False
        self._event = asyncio.Event()
        table = definition.table
        self._pk = [c for c in table.primary_key if c in definition.columns] or list(
            definition.columns
        )
        self._bools = [
            c
            for c in definition.columns
            if table.columns[c].type.name == "bool" and not table.columns[c].type.dims
        ]
        relation = orjson.dumps(list(table.relation))
        self._insert_suffix = b',"headers":{"operation":"insert","relation":' + relation + b"}}"
        self._relation = list(table.relation)
        all_columns = tuple(table.columns)
        self._projection = None if definition.columns == all_columns else definition.columns

    def __repr__(self) -> str:
        return f"<Shape {self.handle} {self.definition.table.qualified} rows={self.rows}>"

    @property
    def event(self) -> asyncio.Event:
        """Set (and replaced) whenever the shape gains data, a chunk or is rotated."""
        return self._event

    def wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    # -- conversion of replicated changes -----------------------------------------------

    def _matches(self, row: Row | None) -> bool:
        if row is None:
            return False
        where = self.definition.where
        return where is None or where.matches(row)

    def _wire(self, row: Row, names: Any) -> dict[str, str | None]:
        value = {c: row[c] for c in names}
        for c in self._bools:  # replication sends t/f where snapshots send true/false
            if c in value and value[c] is not None:
                value[c] = "t" if value[c] == "true" else "f"
        return value

    def convert(self, change: Change) -> list[tuple[int, dict[str, Any]]]:
        """The messages (op_position, message) this shape logs for one change."""
        definition = self.definition
        table = definition.table
        old_in, new_in = self._matches(change.old), self._matches(change.new)
        full = definition.replica == "full"
        pos = change.position
        if change.op == "insert" or (change.op == "update" and new_in and not old_in):
            if not new_in:
                return []
            assert change.new is not None
            return [(pos, self._message(table.key_of(change.new), "insert", change.new))]
        if change.op == "delete" or (change.op == "update" and old_in and not new_in):
            if not old_in:
                return []
            assert change.old is not None
            value_cols = definition.columns if full else self._pk
            key = table.key_of(change.old)
            return [(pos, self._message(key, "delete", change.old, value_cols))]
        if not (old_in and new_in):
            return []
        old, new = change.old, change.new
        assert old is not None
        assert new is not None
        old_key, new_key = table.key_of(old), table.key_of(new)
        if old_key != new_key:
            value_cols = definition.columns if full else self._pk
            return [
                (pos, self._message(old_key, "delete", old, value_cols, key_change_to=new_key)),
                (pos + 1, self._message(new_key, "insert", new, key_change_from=old_key)),
            ]
        changed = [c for c in definition.columns if old[c] != new[c]]
        if not changed:
            return []
        if full:
            message = self._message(new_key, "update", new)
            message["old_value"] = self._wire(old, changed)
        else:
            cols = list(self._pk) + [c for c in changed if c not in self._pk]
            message = self._message(new_key, "update", new, cols)
        return [(pos, message)]

    def _message(
        self,
        key: str,
        operation: str,
        row: Row,
        columns: Any = None,
        **extra: str,
    ) -> dict[str, Any]:
        headers: dict[str, Any] = {"operation": operation, "relation": self._relation}
        headers.update(extra)
        return {
            "key": key,
            "value": self._wire(row, columns if columns is not None else self.definition.columns),
            "headers": headers,
        }

    # -- snapshot rendering -------------------------------------------------------------

    def render_snapshot_row(self, key: str, blob: bytes) -> bytes | None:
        """One snapshot `insert` message for a stored row, or None if the where excludes it."""
        where = self.definition.where
        projection = self._projection
        if where is not None or projection is not None:
            row = orjson.loads(blob)
            if where is not None and not where.matches(row):
                return None
            if projection is not None:
                blob = orjson.dumps({c: row[c] for c in projection})
        return b'{"key":' + orjson.dumps(key) + b',"value":' + blob + self._insert_suffix


class ShapeRegistry:
    """Every shape of a Database, their storage, and the fan-out of commits into them."""

    def __init__(
        self,
        db: Database,
        *,
        chunk_bytes: int = 10 * 1024 * 1024,
        chunk_rows: int | None = None,
        log_chunk_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.db = db
        self.chunk_bytes = chunk_bytes
        self.chunk_rows = chunk_rows
        self.log_chunk_bytes = log_chunk_bytes
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._by_handle: dict[str, Shape] = {}
        self._current: dict[tuple[Any, ...], Shape] = {}
        self._by_table: dict[tuple[str, str], dict[int, Shape]] = {}
        # Shapes whose where pins the primary key, by (table, key): routed without evaluating.
        self._by_key: dict[tuple[tuple[str, str], str], dict[int, Shape]] = {}
        # The others: every change of their table is converted for them.
        self._unrouted: dict[tuple[str, str], dict[int, Shape]] = {}
        self._retired: set[str] = set()
        self._next_id = 1
        self._last_handle_us = 0
        self._pending_wake: set[Shape] = set()
        self._builders: set[asyncio.Task[None]] = set()
        conn = db.connection
        with db.lock:
            conn.executescript(
                """
                DROP TABLE IF EXISTS _shape_log;
                DROP TABLE IF EXISTS _shape_chunks;
                CREATE TABLE _shape_log (shape_id INTEGER NOT NULL, tx INTEGER NOT NULL,
                    op INTEGER NOT NULL, body BLOB NOT NULL);
                CREATE UNIQUE INDEX _shape_log_pos ON _shape_log (shape_id, tx, op);
                CREATE TABLE _shape_chunks (shape_id INTEGER NOT NULL, idx INTEGER NOT NULL,
                    body BLOB NOT NULL, PRIMARY KEY (shape_id, idx));
                """
            )
        db.add_commit_hook(self._on_commit)
        db.add_commit_hook(self._after_commit, after=True)

    # -- event loop binding -------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Wake long-polls on `loop` (the server's); snapshots are then built in the background."""
        self.loop = loop
        self._loop_thread = threading.get_ident() if loop is not None else None

    def wake(self, waiters: Iterable[Wakeable]) -> None:
        """Call `wake()` of each waiter on the server's loop (from whichever thread commits)."""
        waiters = list(waiters)
        if not waiters:
            return
        loop = self.loop
        if loop is None or loop.is_closed() or threading.get_ident() == self._loop_thread:
            for w in waiters:
                w.wake()
        else:
            loop.call_soon_threadsafe(lambda: [w.wake() for w in waiters])

    def wake_all(self) -> None:
        """Wake every waiter (used at shutdown so long-polls return promptly)."""
        self.wake(self._by_handle.values())

    # -- lookup and creation ------------------------------------------------------------

    def shapes(self) -> list[Shape]:
        with self.db.lock:
            return list(self._by_handle.values())

    def by_handle(self, handle: str) -> Shape | None:
        return self._by_handle.get(handle)

    def is_retired(self, handle: str) -> bool:
        return handle in self._retired

    def current(self, definition: ShapeDefinition) -> Shape | None:
        return self._current.get(definition.identity)

    def _new_handle(self, definition: ShapeDefinition) -> str:
        digest = zlib.crc32(repr(definition.identity).encode()) % (1 << 27)
        now_us = time.time_ns() // 1000
        self._last_handle_us = max(now_us, self._last_handle_us + 1)
        return f"{digest}-{self._last_handle_us}"

    def get_or_create(self, definition: ShapeDefinition) -> Shape:
        """The live shape for `definition`, creating it (and starting its snapshot) if none."""
        with self.db.lock:
            shape = self._current.get(definition.identity)
            if shape is not None:
                return shape
            shape = Shape(self._next_id, self._new_handle(definition), definition, self.db.lsn)
            self._next_id += 1
            self._current[definition.identity] = shape
            self._by_handle[shape.handle] = shape
            table = definition.table.relation
            self._by_table.setdefault(table, {})[shape.id] = shape
            route = self._route_key(definition)
            if route is not None:
                self._by_key.setdefault((table, route), {})[shape.id] = shape
            else:
                self._unrouted.setdefault(table, {})[shape.id] = shape
            builder = SnapshotBuilder(self, shape)  # pins the read snapshot now, under lock
        log.debug("created shape %s for %s", shape.handle, definition.table.qualified)
        self._start_builder(builder)
        return shape

    def _route_key(self, definition: ShapeDefinition) -> str | None:
        table = definition.table
        where = definition.where
        if where is None or not table.primary_key:
            return None
        if not all(c in where.equalities for c in table.primary_key):
            return None
        probe = {
            c: encode_value(where.equalities[c], table.columns[c].type) for c in table.primary_key
        }
        return table.key_of(probe)

    def _start_builder(self, builder: SnapshotBuilder) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self.loop:
            task = running.create_task(builder.run_async())
            self._builders.add(task)
            task.add_done_callback(self._builders.discard)
        else:
            builder.run_sync()

    def rotate(self, shape: Shape) -> None:
        """Retire `shape`: its handle now gets 409; the next request creates a successor."""
        with self.db.lock:
            if shape.rotated:
                return
            shape.rotated = True
            self._retired.add(shape.handle)
            self._by_handle.pop(shape.handle, None)
            if self._current.get(shape.definition.identity) is shape:
                del self._current[shape.definition.identity]
            table = shape.definition.table.relation
            self._by_table.get(table, {}).pop(shape.id, None)
            self._unrouted.get(table, {}).pop(shape.id, None)
            route = self._route_key(shape.definition)
            if route is not None:
                routed = self._by_key.get((table, route), {})
                routed.pop(shape.id, None)
                if not routed:
                    self._by_key.pop((table, route), None)
            conn = self.db.connection
            conn.execute("DELETE FROM _shape_log WHERE shape_id = ?", (shape.id,))
            conn.execute("DELETE FROM _shape_chunks WHERE shape_id = ?", (shape.id,))
        log.info("rotated shape %s (%s)", shape.handle, shape.definition.table.qualified)
        self.wake([shape])

    def rotate_table(self, table: Table) -> list[str]:
        """Rotate every shape of `table` (what a TRUNCATE does); returns the retired handles."""
        with self.db.lock:
            shapes = list(self._by_table.get(table.relation, {}).values())
        for s in shapes:
            self.rotate(s)
        return [s.handle for s in shapes]

    # -- commit fan-out -----------------------------------------------------------------

    def _on_commit(self, txn: Transaction) -> None:
        """Append this transaction's messages to every affected shape (inside the txn)."""
        per_shape: dict[int, tuple[Shape, list[tuple[int, dict[str, Any]]]]] = {}
        for change in txn.changes:
            relation = change.table.relation
            candidates = dict(self._unrouted.get(relation, {}))
            if self._by_key:
                for row in (change.old, change.new):
                    if row is not None:
                        routed = self._by_key.get((relation, change.table.key_of(row)))
                        if routed:
                            candidates.update(routed)
            for shape in candidates.values():
                messages = shape.convert(change)
                if messages:
                    per_shape.setdefault(shape.id, (shape, []))[1].extend(messages)
        if not per_shape:
            return
        rows = []
        lsn = str(txn.lsn)
        for shape, messages in per_shape.values():
            last_index = len(messages) - 1
            for i, (pos, message) in enumerate(messages):
                headers = message["headers"]
                headers["txids"] = [txn.txid]
                headers["lsn"] = lsn
                headers["op_position"] = pos
                if i == last_index:
                    headers["last"] = True
                rows.append((shape.id, txn.lsn, pos, orjson.dumps(message)))
            shape.latest = Offset(txn.lsn, messages[-1][0])
            shape.log_entries += len(messages)
            self._pending_wake.add(shape)
        self.db.connection.executemany(
            "INSERT INTO _shape_log (shape_id, tx, op, body) VALUES (?, ?, ?, ?)", rows
        )

    def _after_commit(self, txn: Transaction) -> None:
        with self.db.lock:
            pending, self._pending_wake = self._pending_wake, set()
        self.wake(pending)

    # -- reading ------------------------------------------------------------------------

    def snapshot_ready(self, shape: Shape, offset: Offset) -> bool:
        """Whether the snapshot part needed to answer a read at `offset` exists yet."""
        if offset == BEFORE_ALL:
            return shape.chunk_count > 0 or shape.snapshot_complete
        if offset.tx == 0 and offset.op != INF:
            return shape.snapshot_complete or shape.chunk_count > offset.op + 1
        return shape.snapshot_complete

    def out_of_bounds(self, shape: Shape, offset: Offset) -> bool:
        """An offset this shape's log never produced (checked once the snapshot is done)."""
        if offset.tx == 0:
            return offset.op != INF and offset.op >= shape.chunk_count
        # Offsets up to the global LSN are fine (SSE clients resume at `<global lsn>_0`).
        return offset.tx > max(self.db.lsn, shape.latest.tx)

    def read(self, shape: Shape, offset: Offset) -> ReadResult:
        """The next slice after `offset` (callers check `snapshot_ready` and bounds first)."""
        conn = self.db.connection
        with self.db.lock:
            if offset == BEFORE_ALL or (offset.tx == 0 and offset.op + 1 < shape.chunk_count):
                index = 0 if offset == BEFORE_ALL else offset.op + 1
                body = conn.execute(
                    "SELECT body FROM _shape_chunks WHERE shape_id = ? AND idx = ?",
                    (shape.id, index),
                ).fetchone()[0]
                # A snapshot chunk is never up-to-date: offset=-1 must stay cacheable, and
                # the client learns the end of the snapshot from the next request.
                has_rows = body[:7] == b'{"key":'  # a chunk may hold only snapshot-end
                return ReadResult([body] if body else [], Offset(0, index), has_rows, False)
            after = max(offset, SNAPSHOT_END)
            parts: list[bytes] = []
            size = 0
            end = after if offset.tx > 0 else SNAPSHOT_END
            cursor = conn.execute(
                "SELECT tx, op, body FROM _shape_log WHERE shape_id = ? AND"
                " (tx > ? OR (tx = ? AND op > ?)) ORDER BY tx, op",
                (shape.id, after.tx, after.tx, min(after.op, INF)),
            )
            for tx, op, body in cursor:
                parts.append(body)
                size += len(body)
                end = Offset(tx, op)
                if size >= self.log_chunk_bytes:
                    break
            cursor.close()
            up_to_date = end >= shape.latest
            return ReadResult(parts, end, bool(parts), up_to_date)

    def storage_bytes(self, shape: Shape) -> int:
        with self.db.lock:
            conn = self.db.connection
            chunks = conn.execute(
                "SELECT coalesce(sum(length(body)), 0) FROM _shape_chunks WHERE shape_id = ?",
                (shape.id,),
            ).fetchone()[0]
            entries = conn.execute(
                "SELECT coalesce(sum(length(body)), 0) FROM _shape_log WHERE shape_id = ?",
                (shape.id,),
            ).fetchone()[0]
        return int(chunks) + int(entries)


__all__ = [
    "BEFORE_ALL",
    "INF",
    "SNAPSHOT_END",
    "Offset",
    "ReadResult",
    "Shape",
    "ShapeDefinition",
    "ShapeRegistry",
]
