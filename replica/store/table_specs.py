"""Table specs as stored in `_replica_tables`, and how a table follows a growing schema."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from replica.tables import Column, TableSpec

if TYPE_CHECKING:
    import sqlite_utils


def spec_to_json(spec: TableSpec) -> str:
    """A JSON form of a spec (see `spec_from_json`)."""
    return orjson.dumps(
        {
            "name": spec.name,
            "columns": [
                {
                    "name": c.name,
                    "type": c.type,
                    "not_null": c.not_null,
                    "default": c.default,
                    "json": c.json,
                }
                for c in spec.columns
            ],
            "primary_key": list(spec.primary_key),
            "key_column": spec.key_column,
            "keep_detached": spec.keep_detached,
        }
    ).decode()


def spec_from_json(text: str) -> TableSpec:
    """Rebuild a spec saved with `spec_to_json`."""
    data: dict[str, Any] = orjson.loads(text)
    return TableSpec(
        name=data["name"],
        columns=tuple(Column(**c) for c in data["columns"]),
        primary_key=tuple(data["primary_key"]),
        key_column=data["key_column"],
        keep_detached=bool(data.get("keep_detached", False)),
    )


def create_table(conn: sqlite3.Connection, spec: TableSpec) -> None:
    """Create the table of a plain Electric shape (`runs` is made by schema/), with a unique
    index on its key column when that is not the primary key itself."""
    table = _database(conn)[spec.name]
    if any(c.default is not None for c in spec.columns):
        raise ValueError(f"{spec.name}: column defaults are for schema/ tables only")
    table.create(
        {c.name: c.type for c in spec.columns},
        pk=spec.primary_key[0] if len(spec.primary_key) == 1 else spec.primary_key,
        not_null={c.name for c in spec.columns if c.not_null},
    )
    if spec.primary_key != (spec.key_column,):
        table.create_index(
            [spec.key_column], index_name=f"{spec.name}_{spec.key_column}_key", unique=True
        )


def grow_table(conn: sqlite3.Connection, current: TableSpec, wanted: TableSpec) -> TableSpec:
    """Add `wanted`'s new columns to the table of `current`; the spec in effect after.

    Columns are only ever added (nullable: existing rows have no value); dropped or retyped
    upstream columns keep their local definition, so nothing users stored is lost.
    """
    have = set(current.column_names)
    added = [
        Column(c.name, c.type, not_null=False, json=c.json)
        for c in wanted.columns
        if c.name not in have
    ]
    table = _database(conn)[current.name]
    for column in added:
        table.add_column(column.name, column.type)
    # keep_detached is a policy, set with Store.set_keep_detached
    return replace(current, columns=(*current.columns, *added))


def _database(conn: sqlite3.Connection) -> sqlite_utils.Database:
    """sqlite-utils over the writer's connection, changing none of its settings. Its DDL
    joins the caller's transaction (as a savepoint)."""
    import sqlite_utils  # only when a plain Electric table is made or grows

    return sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
