"""`where` filters of callbacks: checked with sqlglot when registered, evaluated by SQLite.

A filter is a SQL condition over one row of one table (`status = 'FAILED'`,
`json_extract(metadata, '$.progress') > 0.5`). It is evaluated on the row *as of* the
change (the previous row for a delete), so it may not read other tables: the only
subqueries allowed are over `json_each`/`json_tree` of the row's own columns. Evaluation
copies a batch of rows into a TEMP table declared like the real one (same column affinities)
and runs `SELECT ... WHERE <filter>` once per batch: SQLite semantics, set-based.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from replica.errors import ReplicaError
from replica.store.sql import ident
from replica.tables import TableSpec

if TYPE_CHECKING:
    from sqlglot import exp

log = logging.getLogger(__name__)

#: Table-valued functions a filter may read (they only look at the row's own values).
_ROW_FUNCTIONS = frozenset({"json_each", "json_tree"})
#: Columns of json_each / json_tree rows.
_JSON_EACH_COLUMNS = frozenset(
    {"key", "value", "type", "atom", "id", "parent", "fullkey", "path", "json", "root"}
)
_SEQ = "_replica_seq"


class FilterError(ReplicaError, ValueError):
    """A `where` filter that cannot be used; raised when it is registered."""

    hint = "a filter is a SQL condition over the table's columns, e.g. status = 'FAILED'"


class FilterEvaluationError(ReplicaError):
    """SQLite could not evaluate a filter on a row (e.g. malformed JSON in a column)."""

    seq: int = 0  # the change it failed on
    matched: set[int] = frozenset()  # type: ignore[assignment]  # matches before that one


@dataclass(frozen=True)
class RowFilter:
    """A checked `where` condition over rows of `table`."""

    table: str
    where: str
    columns: frozenset[str]  # columns of the table it reads

    def check_columns(self, spec: TableSpec) -> None:
        """Fail, naming the column, if the filter reads one the table does not have."""
        have = set(spec.column_names)
        unknown = sorted(self.columns - have)
        if unknown:
            raise FilterError(
                f"filter {self.where!r}: {spec.name} has no column {unknown[0]!r}",
                hint=_quote_hint(self.where, unknown[0])
                + f"the columns of {spec.name} are {', '.join(spec.column_names)}",
            )


def parse_filter(where: str, table: str, spec: TableSpec | None = None) -> RowFilter:
    """Check a `where` filter's structure (and columns, given the table's spec).

    Raises `FilterError` saying what is wrong: not SQL, not a single condition, a subquery
    over another table, an aggregate or window function, a parameter, an unknown column.
    """
    # sqlglot takes a tenth of a second to import: only filters need it, not `import replica`.
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    text = where.strip()
    if not text:
        raise FilterError("the where filter is empty")
    try:
        parsed = sqlglot.parse(text, read="sqlite")
    except SqlglotError as exc:
        raise FilterError(f"filter {where!r} is not valid SQL: {_parse_problem(exc)}") from None
    statements = [p for p in parsed if p is not None]
    if len(statements) != 1:
        raise FilterError(f"filter {where!r} must be a single condition, not several statements")
    tree = statements[0]
    if isinstance(tree, exp.Query) or not isinstance(tree, exp.Condition):
        raise FilterError(
            f"filter {where!r} must be a condition (what follows WHERE), not a statement"
        )
    columns: set[str] = set()
    _check(tree, where, table, columns, inside_row_function=False)
    row_filter = RowFilter(table=table, where=text, columns=frozenset(columns))
    if spec is not None:
        row_filter.check_columns(spec)
    return row_filter


def _check(
    node: exp.Expression, where: str, table: str, columns: set[str], *, inside_row_function: bool
) -> None:
    from sqlglot import exp

    if isinstance(node, (exp.Placeholder, exp.Parameter)):
        raise FilterError(
            f"filter {where!r} has a parameter ({node.sql()}); write the value into the filter"
        )
    if isinstance(node, exp.AggFunc):
        raise FilterError(
            f"filter {where!r} uses the aggregate {node.sql()}: a filter looks at one row"
        )
    if isinstance(node, exp.Window):
        raise FilterError(f"filter {where!r} uses a window function: a filter looks at one row")
    if isinstance(node, exp.Query):
        _check_subquery(node, where, table, columns)
        return
    if isinstance(node, exp.Column):
        qualifier = node.table
        if qualifier and qualifier != table and not inside_row_function:
            raise FilterError(
                f"filter {where!r} refers to {qualifier}.{node.name}: a filter on {table} "
                f"can only read the columns of {table}"
            )
        if inside_row_function and (
            (qualifier and qualifier != table) or node.name.lower() in _JSON_EACH_COLUMNS
        ):
            return  # a column of the json_each/json_tree row
        columns.add(node.name)
        return
    for child in node.iter_expressions():
        _check(child, where, table, columns, inside_row_function=inside_row_function)


def _check_subquery(query: exp.Query, where: str, table: str, columns: set[str]) -> None:
    """Allow `(SELECT ... FROM json_each(col) ...)`, nothing that reads a table."""
    from sqlglot import exp

    for source in query.find_all(exp.Table):
        function = source.this
        name = function.name.lower() if isinstance(function, exp.Func) else ""
        if name not in _ROW_FUNCTIONS:
            raise FilterError(
                f"filter {where!r} reads {source.sql(dialect='sqlite')}: a filter is evaluated "
                "on the row as of the change, so it cannot read tables; only json_each() and "
                "json_tree() of the row's columns may appear in a subquery"
            )
    for child in query.iter_expressions():
        _check(child, where, table, columns, inside_row_function=True)


def _parse_problem(exc: Exception) -> str:
    """sqlglot's complaint, without its internals (`<class 'sqlglot...EQ'>` -> `EQ`)."""
    errors = getattr(exc, "errors", None) or []
    if errors:
        first = errors[0]
        text = f"{first.get('description')} (column {first.get('col')})"
    else:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r"\1", text)


def _quote_hint(where: str, column: str) -> str:
    if f'"{column}"' in where:
        return f"strings take single quotes in SQL: '{column}'; "
    return ""


class FilterEvaluator:
    """Evaluates filters with SQLite on one connection (TEMP tables only; the connection may
    be read-only)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._mirrors: dict[str, tuple[str, ...]] = {}  # table -> columns of its TEMP mirror

    def prepare(self, row_filter: RowFilter, spec: TableSpec) -> None:
        """Let SQLite compile the filter against the table (unknown functions, bad syntax
        sqlglot let through): raises FilterError."""
        row_filter.check_columns(spec)
        mirror = self._mirror(spec)
        try:
            self.conn.execute(f"EXPLAIN {self._select(mirror, spec, row_filter)}").fetchall()
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise FilterError(f"filter {row_filter.where!r}: SQLite says: {exc}") from None

    def matching(
        self, row_filter: RowFilter, spec: TableSpec, rows: Sequence[tuple[int, dict[str, Any]]]
    ) -> set[int]:
        """The keys (first items) of `rows` whose row satisfies the filter.

        Raises `FilterEvaluationError` for the first row SQLite cannot evaluate it on, with
        `seq` (that row's key) and `matched` (matching keys of the rows before it).
        """
        if not rows:
            return set()
        mirror = self._mirror(spec)
        try:
            return self._evaluate(mirror, spec, row_filter, rows)
        except sqlite3.Error:
            pass
        # Row by row, to deliver what precedes the bad row and name the bad one.
        found: set[int] = set()
        for item in rows:
            try:
                found |= self._evaluate(mirror, spec, row_filter, [item])
            except sqlite3.Error as exc:
                error = FilterEvaluationError(
                    f"filter {row_filter.where!r} failed on change {item[0]}: {exc}"
                )
                error.seq, error.matched = item[0], found
                raise error from None
        return found

    def _evaluate(
        self,
        mirror: str,
        spec: TableSpec,
        row_filter: RowFilter,
        rows: Sequence[tuple[int, dict[str, Any]]],
    ) -> set[int]:
        names = self._mirrors[spec.name]
        conn = self.conn
        conn.execute(f"DELETE FROM {mirror}")
        try:
            conn.executemany(
                f"INSERT INTO {mirror} ({ident(_SEQ)}, {', '.join(ident(n) for n in names)}) "
                f"VALUES (?{', ?' * len(names)})",
                ([seq, *(row.get(n) for n in names)] for seq, row in rows),
            )
            return {seq for (seq,) in conn.execute(self._select(mirror, spec, row_filter))}
        finally:
            conn.execute(f"DELETE FROM {mirror}")

    def _select(self, mirror: str, spec: TableSpec, row_filter: RowFilter) -> str:
        # Aliased as the table, so `runs.status` works; the newlines keep a trailing
        # `-- comment` in the filter from swallowing the closing parenthesis.
        return (
            f"SELECT {ident(_SEQ)} FROM {mirror} AS {ident(spec.name)} "
            f"WHERE (\n{row_filter.where}\n)"
        )

    def _mirror(self, spec: TableSpec) -> str:
        name = f"temp.{ident('_replica_filter_' + spec.name)}"
        columns = spec.column_names
        if self._mirrors.get(spec.name) != columns:
            definition = ", ".join(f"{ident(c.name)} {c.type}" for c in spec.columns)
            self.conn.execute(f"DROP TABLE IF EXISTS {name}")
            self.conn.execute(f"CREATE TEMP TABLE {name} ({ident(_SEQ)} INTEGER, {definition})")
            self._mirrors[spec.name] = columns
        return name


__all__ = ["FilterError", "FilterEvaluationError", "FilterEvaluator", "RowFilter", "parse_filter"]
