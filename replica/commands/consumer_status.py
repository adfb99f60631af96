"""Durable consumers as `replica status` shows them (a table, or entries of `--json`)."""

from __future__ import annotations

import sqlite3
from typing import Any

from replica.commands.common import render_table
from replica.notify.changes import head_seq
from replica.notify.consumers import ConsumerCursors
from replica.store.database import schema_version

TABLE_COLUMNS = (
    "consumer",
    "table",
    "where",
    "state",
    "last_seq",
    "behind",
    "attempts",
    "last_error",
    "retry_at",
    "listener",
)


def consumer_entries(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """One JSON-ready entry per durable consumer.

    Entries sit in `status --json`'s array after the shapes, so they carry the shape
    entries' keys too (`kind` is "consumer", `shape` is "consumer NAME", `offset` the
    cursor), plus their own.
    """
    if schema_version(conn) < 2:
        return []
    head = head_seq(conn)
    entries = []
    for c in ConsumerCursors(conn, owner="status").all():
        entries.append(
            {
                "id": None,
                "kind": "consumer",
                "shape": f"consumer {c.name}",
                "state": c.state,
                "rows": None,
                "handle": None,
                "offset": str(c.last_seq),
                "last_up_to_date": None,
                "last_error": c.last_error,
                "next_retry_at": c.retry_at,
                "consumer": c.name,
                "table": c.table,
                "where": c.where,
                "ops": list(c.ops) if c.ops is not None else None,
                "last_seq": c.last_seq,
                "behind": max(0, head - c.last_seq),
                "attempts": c.attempts,
                "failed_seq": c.failed_seq,
                "listener": c.owner if c.active else None,
                "updated_at": c.updated_at,
            }
        )
    return entries


def consumer_table(entries: list[dict[str, Any]]) -> str:
    """The consumers as an aligned text table with a title line."""
    rows = [
        [
            e["consumer"],
            e["table"] or "*",
            e["where"],
            e["state"],
            e["last_seq"],
            e["behind"],
            e["attempts"],
            e["last_error"],
            e["next_retry_at"],
            e["listener"],
        ]
        for e in entries
    ]
    return "consumers:\n" + render_table(TABLE_COLUMNS, rows)


__all__ = ["consumer_entries", "consumer_table"]
