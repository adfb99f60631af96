"""The emulator's "Postgres": tables held in SQLite, transactions, LSNs and txids.

Each emulated table is one SQLite table of `(rid, key, row)` where `row` is the orjson of a
dict holding every column's Postgres text form (or None). A committed transaction gets one
commit LSN and one txid, like a Postgres transaction seen through logical replication, and is
handed to commit hooks (the shape registry) *inside* the SQLite transaction so that rows and
shape logs change atomically. There is no global change log to scan: shapes created later
start from a snapshot.

Thread safety: every public method takes `Database.lock`; the HTTP server, the simulator and
test code in other threads may all write.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from replica.devserver.identifiers import IdentifierError, parse_relation
from replica.devserver.pgtypes import PgType, encode_value, parse_type

log = logging.getLogger(__name__)

Op = Literal["insert", "update", "delete"]
#: A row as stored and sent: column name -> Postgres text form or None.
Row = dict[str, "str | None"]

#: Where LSNs start, so they look like real ones (decimal form of a 64-bit WAL position).
FIRST_LSN = 26_800_000
FIRST_TXID = 1_000


class TableError(ValueError):
    """A table definition or a write is invalid (unknown column, duplicate key, ...)."""


@dataclass(frozen=True)
class Column:
    """One column: name, Postgres type, NOT NULL."""

    name: str
    type: PgType
    not_null: bool = False


@dataclass
class Table:
    """An emulated Postgres table."""

    schema: str
    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...]
    storage: str

    @property
    def relation(self) -> tuple[str, str]:
        return (self.schema, self.name)

    @property
    def qualified(self) -> str:
        return f'"{self.schema}"."{self.name}"'

    def types(self) -> dict[str, PgType]:
        return {name: c.type for name, c in self.columns.items()}

    def key_of(self, row: Mapping[str, str | None]) -> str:
        """Electric's row key: `"schema"."table"/"pk1"/"pk2"` with `/` doubled in values."""
        prefix = (
            '"' + self.schema.replace("/", "//").replace(".", "..") + '".'
            '"' + self.name.replace("/", "//").replace(".", "..") + '"'
        )
        names = self.primary_key or tuple(sorted(self.columns))
        parts = []
        for name in names:
            value = row.get(name)
            parts.append("_" if value is None else '"' + value.replace("/", "//") + '"')
        return prefix + "/" + "/".join(parts)

    def electric_schema(self, selected: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The `electric-schema` header object for the selected columns."""
        out: dict[str, dict[str, Any]] = {}
        for name in selected:
            col = self.columns[name]
            info: dict[str, Any] = {"type": col.type.name}
            if col.type.dims:
                info["dims"] = col.type.dims
            if name in self.primary_key:
                info["pk_index"] = self.primary_key.index(name)
            if col.not_null or name in self.primary_key:
                info["not_null"] = True
            out[name] = info
        return out

    def encode_row(self, values: Mapping[str, Any], *, base: Row | None = None) -> Row:
        """Python values (or text forms) -> a full stored row, checking names and NOT NULL."""
        columns = self.columns
        row: Row = dict(base) if base is not None else dict.fromkeys(columns)
        for name, value in values.items():
            col = columns.get(name)
            if col is None:
                unknown = sorted(set(values) - set(columns))
                raise TableError(f"table {self.qualified} has no column(s) {', '.join(unknown)}")
            # Fast path for values already in text form (the common case in bulk loads).
            if value is None or (type(value) is str and col.type.kind == "text"):
                row[name] = value
            else:
                row[name] = encode_value(value, col.type)
        for name in self._required:
            if row[name] is None:
                raise TableError(f"null value in column {name!r} of {self.qualified}")
        return row

    @functools.cached_property
    def _required(self) -> tuple[str, ...]:
        return tuple(n for n, c in self.columns.items() if c.not_null or n in self.primary_key)


@dataclass
class Change:
    """One row change of a committed transaction; `position` is Electric's op_position."""

    table: Table
    op: Op
    old: Row | None
    new: Row | None
    position: int


@dataclass
class Transaction:
    """A committed transaction: one LSN and txid for all its changes."""

    lsn: int
    txid: int
    changes: list[Change] = field(default_factory=list)


CommitHook = Callable[[Transaction], None]
#: (op, table, primary key values or {} for inserts, column values)
WriteOp = tuple[Op, Table, Mapping[str, Any], Mapping[str, Any]]


class Database:
    """SQLite-held tables with transactional writes, LSNs and commit hooks."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # An emulator: durability across power loss is not worth the fsyncs.
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS _meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS _tables (
                storage TEXT PRIMARY KEY, schema TEXT NOT NULL, name TEXT NOT NULL,
                spec BLOB NOT NULL, UNIQUE (schema, name));
            """
        )
        self.tables: dict[tuple[str, str], Table] = {}
        self.lsn = int(self._meta("lsn", str(FIRST_LSN)))
        self.txid = int(self._meta("txid", str(FIRST_TXID)))
        self._hooks: list[CommitHook] = []
        self._after_hooks: list[CommitHook] = []
        for storage, spec in self._conn.execute("SELECT storage, spec FROM _tables"):
            self._load_table(storage, orjson.loads(spec))

    # -- setup --------------------------------------------------------------------------

    @property
    def connection(self) -> sqlite3.Connection:
        """The writer connection (use under `lock`); the shape registry keeps its logs here."""
        return self._conn

    def _meta(self, key: str, default: str) -> str:
        row = self._conn.execute("SELECT v FROM _meta WHERE k = ?", (key,)).fetchone()
        return row[0] if row else default

    def add_commit_hook(self, hook: CommitHook, *, after: bool = False) -> None:
        """Call `hook(txn)` for every commit: inside the SQLite transaction, or after it."""
        (self._after_hooks if after else self._hooks).append(hook)

    def _load_table(self, storage: str, spec: dict[str, Any]) -> Table:
        columns = {
            c["name"]: Column(c["name"], parse_type(c["type"]), bool(c.get("not_null")))
            for c in spec["columns"]
        }
        table = Table(spec["schema"], spec["name"], columns, tuple(spec["primary_key"]), storage)
        self.tables[table.relation] = table
        return table

    def define_table(
        self,
        name: str,
        columns: Mapping[str, str] | Sequence[tuple[str, str] | Column],
        primary_key: Sequence[str] | str = (),
        *,
        schema: str = "public",
        not_null: Sequence[str] = (),
    ) -> Table:
        """Create a table (idempotent when the definition is the same).

        `columns` maps names to Postgres types (`{"id": "int4", "tags": "text[]"}`); the
        primary key columns are NOT NULL. Names are kept exactly as given (quoted identifiers).
        """
        pk = (primary_key,) if isinstance(primary_key, str) else tuple(primary_key)
        items: list[Column] = []
        pairs = columns.items() if isinstance(columns, Mapping) else columns
        for item in pairs:
            if isinstance(item, Column):
                items.append(item)
            else:
                col_name, type_spec = item
                items.append(Column(col_name, parse_type(type_spec), col_name in not_null))
        names = [c.name for c in items]
        if len(set(names)) != len(names):
            raise TableError(f"duplicate column names in {name}: {names}")
        missing = [k for k in pk if k not in names]
        if missing:
            raise TableError(f"primary key column(s) {missing} are not columns of {name}")
        spec = {
            "schema": schema,
            "name": name,
            "columns": [
                {"name": c.name, "type": str(c.type), "not_null": c.not_null or c.name in pk}
                for c in items
            ],
            "primary_key": list(pk),
        }
        with self.lock:
            existing = self.tables.get((schema, name))
            if existing is not None:
                if self._spec(existing) != spec:
                    raise TableError(f'table "{schema}"."{name}" exists with another definition')
                return existing
            storage = f"t{len(self.tables) + 1}"
            while self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = ?", (storage,)
            ).fetchone():
                storage += "_"
            self._conn.execute(
                f"CREATE TABLE {storage} (rid INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
                " row BLOB NOT NULL)"
            )
            self._conn.execute(
                "INSERT INTO _tables (storage, schema, name, spec) VALUES (?, ?, ?, ?)",
                (storage, schema, name, orjson.dumps(spec)),
            )
            return self._load_table(storage, spec)

    @staticmethod
    def _spec(table: Table) -> dict[str, Any]:
        return {
            "schema": table.schema,
            "name": table.name,
            "columns": [
                {"name": c.name, "type": str(c.type), "not_null": c.not_null}
                for c in table.columns.values()
            ],
            "primary_key": list(table.primary_key),
        }

    def table(self, name: str | tuple[str, str]) -> Table:
        """Look a table up by (schema, name), `"schema"."name"` text or bare name."""
        try:
            relation = parse_relation(name) if isinstance(name, str) else name
        except IdentifierError as exc:
            raise TableError(str(exc)) from None
        try:
            return self.tables[relation]
        except KeyError:
            # A bare name given exactly as defined (e.g. `TaskRun`) also finds the table.
            if isinstance(name, str) and ("public", name) in self.tables:
                return self.tables[("public", name)]
            raise TableError(
                f'Table "{relation[0]}"."{relation[1]}" does not exist. If the table name '
                "contains capitals or special characters you must quote it."
            ) from None

    # -- reads --------------------------------------------------------------------------

    def get(self, table: Table, key: str) -> Row | None:
        """The row with Electric key `key`, or None."""
        with self.lock:
            found = self._conn.execute(
                f"SELECT row FROM {table.storage} WHERE key = ?", (key,)
            ).fetchone()
        return orjson.loads(found[0]) if found else None

    def get_by_pk(self, table: Table, pk: Mapping[str, Any]) -> Row | None:
        """The row whose primary key columns have the given values (Python or text)."""
        probe = {name: encode_value(pk[name], table.columns[name].type) for name in pk}
        return self.get(table, table.key_of(probe))

    def rows(self, table: Table) -> list[Row]:
        """Every row of `table`, in insertion order."""
        with self.lock:
            cursor = self._conn.execute(f"SELECT row FROM {table.storage} ORDER BY rid")
            return [orjson.loads(r[0]) for r in cursor]

    def count(self, table: Table) -> int:
        with self.lock:
            return self._conn.execute(f"SELECT count(*) FROM {table.storage}").fetchone()[0]

    @contextlib.contextmanager
    def snapshot_reader(self) -> Iterator[sqlite3.Connection]:
        """A connection holding a read transaction that sees exactly the current state.

        Must be entered under `lock` (so no commit slips in between); the snapshot then stays
        stable while writers continue (WAL), which lets shape snapshots be built in the
        background while the shape log already collects later changes.
        """
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM _meta").fetchone()  # pins the read snapshot
            yield conn
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("COMMIT")
            conn.close()

    # -- writes -------------------------------------------------------------------------

    def transaction(self) -> TransactionBuilder:
        """Collect writes; `commit()` (or leaving the `with` block) applies them atomically."""
        return TransactionBuilder(self)

    def commit(self, ops: Sequence[WriteOp], *, encoded: bool = False) -> Transaction | None:
        """Apply `(op, table, pk_or_values, values)` tuples as one transaction.

        insert: `values` is the new row; update: `pk_or_values` identifies the row (primary
        key values) and `values` the columns to set (may include new PK values); delete:
        `pk_or_values` identifies the row. Returns the committed Transaction (None if empty).
        With `encoded=True` insert values are complete rows already in text form (bulk loads
        skip the per-value encoding).
        """
        if not ops:
            return None
        with self.lock:
            txn = Transaction(lsn=0, txid=self.txid + 1)
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for index, (op, table, ident, values) in enumerate(ops):
                    txn.changes.append(self._apply(table, op, ident, values, index * 2, encoded))
                # LSNs grow with the volume written, like WAL positions.
                txn.lsn = self.lsn + 64 + 48 * len(ops)
                for hook in self._hooks:
                    hook(txn)
                conn.executemany(
                    "INSERT OR REPLACE INTO _meta (k, v) VALUES (?, ?)",
                    [("lsn", str(txn.lsn)), ("txid", str(txn.txid))],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.lsn, self.txid = txn.lsn, txn.txid
            for hook in self._after_hooks:
                try:
                    hook(txn)
                except Exception:  # a notification failing must not undo a commit
                    log.exception("after-commit hook failed")
            return txn

    def _apply(
        self,
        table: Table,
        op: Op,
        ident: Mapping[str, Any],
        values: Mapping[str, Any],
        pos: int,
        encoded: bool = False,
    ) -> Change:
        conn = self._conn
        if op == "insert":
            if encoded and len(values) == len(table.columns):
                new = dict(values)
            else:
                new = table.encode_row({**ident, **values})
            key = table.key_of(new)
            try:
                conn.execute(
                    f"INSERT INTO {table.storage} (key, row) VALUES (?, ?)",
                    (key, orjson.dumps(new)),
                )
            except sqlite3.IntegrityError:
                raise TableError(f"duplicate key value violates unique constraint: {key}") from None
            return Change(table, "insert", None, new, pos)
        probe = {n: encode_value(ident[n], table.columns[n].type) for n in ident}
        key = table.key_of(probe) if set(probe) >= set(table.primary_key) else None
        found = (
            conn.execute(f"SELECT rid, row FROM {table.storage} WHERE key = ?", (key,)).fetchone()
            if key is not None
            else None
        )
        if found is None:
            raise TableError(f"no row in {table.qualified} with key {dict(ident)!r}")
        rid, old = found[0], orjson.loads(found[1])
        if op == "delete":
            conn.execute(f"DELETE FROM {table.storage} WHERE rid = ?", (rid,))
            return Change(table, "delete", old, None, pos)
        new = table.encode_row(values, base=old)
        new_key = table.key_of(new)
        try:
            conn.execute(
                f"UPDATE {table.storage} SET key = ?, row = ? WHERE rid = ?",
                (new_key, orjson.dumps(new), rid),
            )
        except sqlite3.IntegrityError:
            raise TableError(f"duplicate key value violates unique constraint: {new_key}") from None
        return Change(table, "update", old, new, pos)

    def close(self) -> None:
        with self.lock:
            self._conn.close()


class TransactionBuilder:
    """Writes collected for one transaction: `insert`, `update`, `delete`, then `commit`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ops: list[WriteOp] = []
        self.result: Transaction | None = None

    def _table(self, table: str | Table) -> Table:
        return table if isinstance(table, Table) else self.db.table(table)

    def insert(self, table: str | Table, values: Mapping[str, Any]) -> TransactionBuilder:
        self.ops.append(("insert", self._table(table), {}, dict(values)))
        return self

    def update(
        self, table: str | Table, pk: Mapping[str, Any], values: Mapping[str, Any]
    ) -> TransactionBuilder:
        self.ops.append(("update", self._table(table), dict(pk), dict(values)))
        return self

    def delete(self, table: str | Table, pk: Mapping[str, Any]) -> TransactionBuilder:
        self.ops.append(("delete", self._table(table), dict(pk), {}))
        return self

    def commit(self) -> Transaction | None:
        self.result = self.db.commit(self.ops)
        self.ops = []
        return self.result

    def __enter__(self) -> TransactionBuilder:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.commit()
