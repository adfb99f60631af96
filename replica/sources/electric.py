"""Plain Electric shapes: a local table from `electric-schema`, and rows for it.

Postgres types are classified with sqlglot and mapped by our own rules: integers and
booleans → INTEGER (0/1), floats → REAL, exact numerics → TEXT (no rounding), JSON and
arrays → JSON text, everything else → TEXT as Postgres prints it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import orjson

from replica.errors import MalformedResponseError, ShapeDefinitionError
from replica.protocol.messages import ChangeMessage
from replica.protocol.shape import SECRET_PARAMS, ShapeDefinition
from replica.tables import Column, RowChange, TableSpec

#: Column holding the upstream's row key for tables without a primary key.
ROW_KEY_COLUMN = "_replica_key"


def electric_endpoint(url: str) -> tuple[str, dict[str, str]]:
    """The shape endpoint of an Electric server (`http://host:3000` → `.../v1/shape`) and
    the query parameters its URL carries (e.g. Electric Cloud's `source_id`), sent with
    every request. A secret in the URL is refused: it would show in process arguments,
    `replica.toml` and shell history."""
    parts = urlsplit(url.strip()) if isinstance(url, str) else urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ShapeDefinitionError(f"the Electric URL must be an http(s) URL, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/shape"):
        path += "/v1/shape"
    extra: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in SECRET_PARAMS:
            raise ShapeDefinitionError(
                f"the Electric URL carries a secret ({name}=...): set it in the "
                "ELECTRIC_SECRET environment variable instead, where it stays out of "
                "process arguments, replica.toml and logs"
            )
        extra[name] = value
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), extra


@functools.cache
def _kinds() -> tuple[frozenset[Any], frozenset[Any], frozenset[Any]]:
    """sqlglot's integer, float and JSON type kinds (imported on first use: a sync of
    Trigger.dev feeds alone never loads sqlglot)."""
    from sqlglot import exp

    t = exp.DataType.Type
    integers = exp.DataType.INTEGER_TYPES | {t.SERIAL, t.BIGSERIAL, t.SMALLSERIAL, t.BOOLEAN}
    return frozenset(integers), frozenset({t.FLOAT, t.DOUBLE}), frozenset({t.JSON, t.JSONB})


def local_table_name(table: str) -> str:
    """The local name of an Electric `table` parameter: `public.items` → `items`,
    `"My"."Items"` → `Items`."""
    text = table.strip()
    parts, current, quoted, i = [], "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and i + 1 < len(text) and text[i + 1] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch if quoted else ch.lower()
        i += 1
    parts.append(current)
    name = parts[-1]
    if not name or quoted:
        raise ShapeDefinitionError(f"cannot read a table name from {table!r}")
    return name


def column_type(info: Mapping[str, Any]) -> tuple[str, bool]:
    """(SQLite type, holds JSON) for one `electric-schema` entry."""
    if info.get("dims"):
        return "TEXT", True
    from sqlglot import exp
    from sqlglot.errors import ParseError

    try:
        kind = exp.DataType.build(str(info.get("type", "text")), dialect="postgres").this
    except (ParseError, ValueError):
        return "TEXT", False  # enums and other user-defined types print as text
    integers, floats, json_kinds = _kinds()
    if kind in integers:
        return "INTEGER", False
    if kind in floats:
        return "REAL", False
    if kind in json_kinds:
        return "TEXT", True
    return "TEXT", False


def table_spec(
    name: str, schema: Mapping[str, Mapping[str, Any]], *, keep_detached: bool = False
) -> TableSpec:
    """The local table for a shape of `name` whose wire schema is `schema`."""
    if not schema:
        raise MalformedResponseError(f"the schema of table {name!r} has no columns")
    columns = []
    for column, info in schema.items():
        sqlite_type, is_json = column_type(info)
        columns.append(
            Column(column, sqlite_type, not_null=info.get("not_null") is True, json=is_json)
        )
    keyed = sorted(
        (info["pk_index"], column)
        for column, info in schema.items()
        if isinstance(info.get("pk_index"), int)
    )
    primary_key = tuple(column for _, column in keyed)
    if not primary_key:
        columns.append(Column(ROW_KEY_COLUMN, "TEXT", not_null=True))
        primary_key = (ROW_KEY_COLUMN,)
    elif len(primary_key) > 1:
        columns.append(Column(ROW_KEY_COLUMN, "TEXT", not_null=True))
    if keep_detached:
        columns.append(Column("detached_at", "TEXT"))
    key_column = primary_key[0] if len(primary_key) == 1 else ROW_KEY_COLUMN
    return TableSpec(name, tuple(columns), primary_key, key_column, keep_detached)


def _to_json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=_json_default).decode()
    except TypeError:  # integers beyond 64 bits
        return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _to_integer(value: Any) -> int:
    return int(value)


def _to_real(value: Any) -> float | str:
    value = float(value)
    return "NaN" if math.isnan(value) else value  # SQLite would turn NaN into NULL


def _to_text(value: Any) -> Any:
    if isinstance(value, str | bytes):
        return value
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


class ElectricMapper:
    """Turns change messages of one plain shape into `RowChange`s for its table."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        converters: dict[str, Callable[[Any], Any]] = {}
        for column in spec.columns:
            if column.json:
                converters[column.name] = _to_json
            elif column.type == "INTEGER":
                converters[column.name] = _to_integer
            elif column.type == "REAL":
                converters[column.name] = _to_real
            else:
                converters[column.name] = _to_text
        self._converters = converters
        real_pk = [c for c in spec.primary_key if c != ROW_KEY_COLUMN]
        self._pk = real_pk

    def map(self, changes: Sequence[ChangeMessage]) -> list[RowChange]:
        """Convert messages in order; unknown columns (not in the table yet) are dropped."""
        out = []
        converters = self._converters
        for change in changes:
            values = {}
            for column, value in change.value.items():
                convert = converters.get(column)
                if convert is None:
                    continue
                values[column] = None if value is None else convert(value)
            key = self._key(change, values)
            if self.spec.key_column == ROW_KEY_COLUMN:
                values[ROW_KEY_COLUMN] = key
            out.append(RowChange(change.operation, key, values))  # type: ignore[arg-type]
        return out

    def _key(self, change: ChangeMessage, values: dict[str, Any]) -> Any:
        if not self._pk:
            return change.key  # no primary key: the upstream's key is the identity
        try:
            parts = [values[c] for c in self._pk]
        except KeyError as missing:
            raise MalformedResponseError(
                f"change for key {change.key[:80]!r} lacks primary key column {missing}"
            ) from None
        if len(parts) == 1:
            return parts[0]
        return _to_json(parts)


class ElectricSource:
    """A plain Electric shape materialised into a local table of the same name."""

    kind = "electric"
    stops_on_completion = False
    windowed = False

    def __init__(
        self, shape: ShapeDefinition, label: str, keep_detached: bool | None = None
    ) -> None:
        if not shape.table:
            raise ShapeDefinitionError("a plain Electric shape needs a table")
        self.shape = shape
        self.table_name = local_table_name(shape.table)
        self.keep_detached = keep_detached  # None: the table's policy (rows are deleted)
        self.key = shape.key
        self.label = label
        self._mapper: ElectricMapper | None = None

    def table(self, schema: Mapping[str, Mapping[str, Any]] | None) -> TableSpec:
        """The local table for the wire schema."""
        if schema is None:
            raise MalformedResponseError(f"no schema received for table {self.table_name!r}")
        return table_spec(self.table_name, schema, keep_detached=bool(self.keep_detached))

    async def rows(
        self,
        changes: Sequence[ChangeMessage],
        table: TableSpec,
        lookup: Any,
        pending: list[asyncio.Task[None]],
    ) -> list[RowChange]:
        """Wire changes as rows of `table` (complete at once: `pending` gets nothing)."""
        if self._mapper is None or self._mapper.spec is not table:
            self._mapper = ElectricMapper(table)
        return self._mapper.map(changes)

    def done_polling_at(self) -> float | None:
        """A shape is followed for as long as the sync runs."""
        return None

    def left_behind(self, handle: str | None, handle_since: float) -> tuple[str, str] | None:
        """Electric says when a row leaves a shape: none is ever left behind."""
        return None
