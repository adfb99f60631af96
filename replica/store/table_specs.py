"""Table specs as stored in `_replica_tables`, and how a table follows a growing schema."""

from __future__ import annotations

from typing import Any

import orjson

from replica.store import sql
from replica.tables import Column, TableSpec


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


def alter_for(current: TableSpec, wanted: TableSpec) -> tuple[TableSpec, list[str]]:
    """The spec after adding `wanted`'s new columns to `current`, and the ALTERs to get there.

    Columns are only ever added (nullable: existing rows have no value); dropped or retyped
    upstream columns keep their local definition, so nothing users stored is lost.
    """
    have = set(current.column_names)
    added = [c for c in wanted.columns if c.name not in have]
    statements = []
    columns = list(current.columns)
    for column in added:
        loose = Column(column.name, column.type, not_null=False, json=column.json)
        statements.append(
            f"ALTER TABLE {sql.ident(current.name)} ADD COLUMN {sql.ident(loose.name)} {loose.type}"
        )
        columns.append(loose)
    merged = TableSpec(
        name=current.name,
        columns=tuple(columns),
        primary_key=current.primary_key,
        key_column=current.key_column,
        keep_detached=current.keep_detached,  # a policy, set with Store.set_keep_detached
    )
    return merged, statements
