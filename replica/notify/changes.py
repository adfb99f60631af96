"""Changes as callbacks see them, read back from the change log `_replica_changes`.

Rows are not stored in the log: the row *as of* change N is the current row rewound through
the `old` values of later changes to the same row. A batch is read in one short read
transaction, so the log, the rows and the head it reports agree with each other.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import orjson

from replica.store.sql import ident
from replica.store.table_specs import spec_from_json
from replica.tables import RUNS, TableSpec

if TYPE_CHECKING:
    from typing_extensions import TypeForm

    from replica.models import Run
    from replica.task_models import OtherTasks

    RunT = TypeVar("RunT", bound=Run[Any, Any])

log = logging.getLogger(__name__)

ChangeOp = Literal["insert", "update", "delete", "reset"]

#: Tables whose rows follow `runs` (kept by triggers, not logged): a change to them is a
#: change to `runs`.
DERIVED_TABLES = {"run_tags": "runs", "run_history": "runs"}


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change to a replicated row, or a `reset`.

    `row` is the row as of this change (None for a delete), `old` the previous values of
    the `changed` columns (the whole previous row for a delete, None for an insert); JSON
    columns are decoded in both. `key` is the primary key as text (a JSON array for a
    composite key). `shape` is the label of the shape whose sync made the change.

    A `reset` (`table`, `key`, `row` all None) means changes up to `seq` were pruned from
    the log before this consumer saw them: read the current state again (`db.query`).
    """

    seq: int
    op: ChangeOp
    table: str | None
    key: str | None
    row: dict[str, Any] | None
    changed: tuple[str, ...] = ()
    old: dict[str, Any] | None = None
    shape_id: int | None = None
    shape: str | None = None
    committed_at: str | None = None

    @property
    def previous(self) -> dict[str, Any] | None:
        """The whole row before this change (None for an insert or a reset)."""
        if self.op == "delete":
            return self.old
        if self.op == "update" and self.row is not None:
            return {**self.row, **(self.old or {})}
        return None

    @overload
    def run(self, *, model: TypeForm[RunT], other: Literal["error", "skip"]) -> RunT | None: ...
    @overload
    def run(
        self, *, model: TypeForm[RunT], other: Literal["run"] = ...
    ) -> RunT | Run[Any, Any] | None: ...
    @overload
    def run(
        self,
        *,
        models: Mapping[str, type[Run[Any, Any]]] | None = ...,
        other: OtherTasks = ...,
    ) -> Run[Any, Any] | None: ...
    def run(
        self,
        *,
        model: Any = None,
        models: Mapping[str, type[Run[Any, Any]]] | None = None,
        other: OtherTasks = "run",
    ) -> Run[Any, Any] | None:
        """For a change to `runs`: the run as of this change (before it, for a delete);
        None for other tables and resets.

        Models as for `Replica.run` (None: the untyped `Run`): `change.run(model=EmailRun |
        ReportRun)` reads it with the model of its task; a run of another task is an
        untyped `Run` (`other="run"`), a `ReplicaError` (`"error"`) or None (`"skip"`)."""
        if self.table != RUNS.name:
            return None
        values = self.row if self.row is not None else self.previous
        if values is None:
            return None
        # pydantic is imported on first use: the command line reads changes without it.
        from replica.models import Run
        from replica.task_models import RunModels

        chosen = RunModels.of(Run if model is None else model, models, other)
        return chosen.from_values(values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (what `replica watch` prints)."""
        return {
            "seq": self.seq,
            "op": self.op,
            "table": self.table,
            "key": self.key,
            "row": self.row,
            "changed": list(self.changed),
            "old": self.old,
            "shape": self.shape,
            "committed_at": self.committed_at,
        }


@dataclass(slots=True)
class LoggedChange:
    """A change-log entry with its rows as stored (JSON columns still JSON text)."""

    seq: int
    table: str
    key: str
    op: Literal["insert", "update", "delete"]
    shape_id: int | None
    changed: tuple[str, ...]
    old: dict[str, Any] | None
    committed_at: str
    row: dict[str, Any] | None = None  # as of this change
    before: dict[str, Any] | None = None  # just before it

    @property
    def subject(self) -> dict[str, Any] | None:
        """The row a filter looks at: the new row, or the previous one for a delete."""
        return self.before if self.op == "delete" else self.row


@dataclass(slots=True)
class Batch:
    """What one read of the log found after a cursor.

    Handling every change (or skipping it) lets the cursor move to `through`. With `reset`
    set, the cursor was below the pruned part of the log: changes up to `reset` are gone.
    """

    changes: list[LoggedChange] = field(default_factory=list)
    through: int = 0
    reset: int | None = None


class TableSpecs:
    """The specs of replicated tables (`runs`, and those in `_replica_tables`), cached."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._specs: dict[str, TableSpec] = {RUNS.name: RUNS}
        self._loaded = False

    def get(self, name: str) -> TableSpec | None:
        spec = self._specs.get(name)
        if spec is None:
            self.reload()
            spec = self._specs.get(name)
        return spec

    def reload(self) -> None:
        try:
            rows = self.conn.execute("SELECT spec FROM _replica_tables").fetchall()
        except sqlite3.OperationalError:  # a database replica never migrated
            return
        for (text,) in rows:
            spec = spec_from_json(text)
            self._specs[spec.name] = spec

    def names(self) -> set[str]:
        self.reload()
        return set(self._specs)


class LogReader:
    """Reads the change log on a connection of its own (never one holding a transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.specs = TableSpecs(conn)
        self._shape_labels: dict[int, str] = {}

    def head(self) -> int:
        """The sequence number of the newest change ever logged (0 if none)."""
        return head_seq(self.conn)

    def pruned_through(self) -> int:
        return pruned_through(self.conn)

    def read(
        self,
        after: int,
        *,
        limit: int = 500,
        table: str | None = None,
        ops: Iterable[str] | None = None,
    ) -> Batch:
        """Changes after `after` (at most `limit`), optionally of one table and some ops,
        each with its row as of the change and just before it."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            head = head_seq(conn)
            floor = pruned_through(conn)
            if after < floor:
                return Batch(through=floor, reset=floor)
            where, params = ["seq > ?", "seq <= ?"], [after, head]
            if table is not None:
                where.append("tbl = ?")
                params.append(table)
            if ops is not None:
                chosen = sorted(set(ops))
                where.append(f"op IN ({', '.join('?' for _ in chosen)})")
                params.extend(chosen)
            rows = conn.execute(
                "SELECT seq, tbl, key, op, shape_id, changed, old, committed_at "
                f"FROM _replica_changes WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                (*params, limit),
            ).fetchall()
            changes = [
                LoggedChange(
                    seq=seq,
                    table=tbl,
                    key=key,
                    op=op,
                    shape_id=shape_id,
                    changed=tuple(orjson.loads(changed)) if changed else (),
                    old=orjson.loads(old) if old else None,
                    committed_at=committed_at,
                )
                for seq, tbl, key, op, shape_id, changed, old, committed_at in rows
            ]
            self._rewind(changes)
            through = head if len(changes) < limit else changes[-1].seq
            return Batch(changes, through=through)
        finally:
            conn.execute("COMMIT")

    def _rewind(self, changes: Sequence[LoggedChange]) -> None:
        """Fill `row` and `before` of each change: walk each row's later changes backwards
        from its current state (one pass per row and batch)."""
        groups: dict[tuple[str, str], list[LoggedChange]] = {}
        for change in changes:
            groups.setdefault((change.table, change.key), []).append(change)
        for (table, key), members in groups.items():
            wanted = {c.seq: c for c in members}
            state = self.current_row(table, key)
            later = self.conn.execute(
                "SELECT seq, op, old FROM _replica_changes WHERE tbl = ? AND key = ? "
                "AND seq >= ? ORDER BY seq DESC",
                (table, key, members[0].seq),
            )
            for seq, op, old in later:
                if op == "insert":
                    before = None
                elif op == "delete":
                    before = orjson.loads(old) if old else None
                else:
                    before = {**state, **orjson.loads(old or "{}")} if state is not None else None
                change = wanted.get(seq)
                if change is not None:
                    change.row = state if op != "delete" else None
                    change.before = before
                state = before

    def current_row(self, table: str, key: str) -> dict[str, Any] | None:
        """The row of a replicated table with this logged key, as stored now."""
        spec = self.specs.get(table)
        if spec is None:
            return None
        if len(spec.primary_key) == 1:
            values: list[Any] = [key]
        else:
            values = list(orjson.loads(key))
        condition = " AND ".join(f"{ident(c)} = ?" for c in spec.primary_key)
        try:
            cursor = self.conn.execute(f"SELECT * FROM {ident(table)} WHERE {condition}", values)
        except sqlite3.OperationalError as exc:  # the table is gone
            log.debug("reading %s %s: %s", table, key, exc)
            return None
        found = cursor.fetchone()
        if found is None:
            return None
        return dict(zip([d[0] for d in cursor.description], found, strict=True))

    def shape_label(self, shape_id: int | None) -> str | None:
        """The human label of a shape (`tag user:1234`), or its key; None if unknown."""
        if shape_id is None:
            return None
        label = self._shape_labels.get(shape_id)
        if label is None:
            row = self.conn.execute(
                "SELECT coalesce(json_extract(definition, '$.label'), key) "
                "FROM _replica_shapes WHERE id = ?",
                (shape_id,),
            ).fetchone()
            if row is None:
                return None
            label = self._shape_labels[shape_id] = row[0]
        return label

    def to_change(self, logged: LoggedChange) -> Change:
        """The public form of a logged change: JSON columns decoded, shape named."""
        spec = self.specs.get(logged.table)
        json_columns = spec.json_columns if spec is not None else frozenset()
        return Change(
            seq=logged.seq,
            op=logged.op,
            table=logged.table,
            key=logged.key,
            row=decode_json_columns(logged.row, json_columns),
            changed=logged.changed,
            old=decode_json_columns(logged.old, json_columns),
            shape_id=logged.shape_id,
            shape=self.shape_label(logged.shape_id),
            committed_at=logged.committed_at,
        )


def reset_change(seq: int) -> Change:
    """The event a reader gets when changes up to `seq` were pruned before it saw them."""
    return Change(seq=seq, op="reset", table=None, key=None, row=None)


def decode_json_columns(
    values: Mapping[str, Any] | None, json_columns: frozenset[str]
) -> dict[str, Any] | None:
    """A copy of `values` with JSON text in `json_columns` decoded (kept as text if broken)."""
    if values is None:
        return None
    out = dict(values)
    for name in json_columns.intersection(out):
        text = out[name]
        if isinstance(text, str):
            with contextlib.suppress(orjson.JSONDecodeError):
                out[name] = orjson.loads(text)
    return out


def head_seq(conn: sqlite3.Connection) -> int:
    """The newest change-log sequence number (AUTOINCREMENT keeps it even after pruning)."""
    try:
        rows = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = '_replica_changes'"
        ).fetchall()
    except sqlite3.OperationalError:  # no AUTOINCREMENT table yet: not a replica database
        return 0
    return int(rows[0][0]) if rows else 0


def pruned_through(conn: sqlite3.Connection) -> int:
    """The sequence number at or below which the log was pruned (0 if never)."""
    try:
        rows = conn.execute("SELECT pruned_through FROM _replica_log_state WHERE id = 1").fetchall()
    except sqlite3.OperationalError:  # schema 1: nothing was ever pruned
        return 0
    return int(rows[0][0]) if rows else 0


__all__ = [
    "DERIVED_TABLES",
    "Batch",
    "Change",
    "ChangeOp",
    "LogReader",
    "LoggedChange",
    "TableSpecs",
    "decode_json_columns",
    "head_seq",
    "pruned_through",
    "reset_change",
]
