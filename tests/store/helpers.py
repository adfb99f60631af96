"""Building blocks for store tests: runs, positions, and reading the file back."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from replica.tables import Column, RowChange, TableSpec


def pos(offset: str, handle: str = "h1") -> dict[str, Any]:
    return {"handle": handle, "offset": offset, "cursor": None, "schema": None}


def run_insert(n: int, status: str = "QUEUED", **extra: Any) -> RowChange:
    values = {
        "id": f"run_{n}",
        "task_identifier": "task",
        "status": status,
        "tags": '["a"]',
        "updated_at": f"2026-01-01T00:00:{n % 60:02d}.000Z",
        **extra,
    }
    return RowChange("insert", f"int_{n}", values)


def _rows(db_path: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def run_rows(db_path: Path) -> list[dict[str, Any]]:
    return _rows(db_path, "SELECT * FROM runs ORDER BY id")


def changes_log(db_path: Path) -> list[dict[str, Any]]:
    return _rows(db_path, "SELECT * FROM _replica_changes ORDER BY seq")


def electric_items() -> TableSpec:
    return TableSpec(
        name="items",
        columns=(Column("id", "INTEGER", not_null=True), Column("title", "TEXT")),
        primary_key=("id",),
        key_column="id",
    )
