"""`replica status`: the shapes and consumers of a replica, read without writing it."""

from __future__ import annotations

import json

import click

from replica.commands.common import db_option, logging_options, render_json, render_table
from replica.commands.consumer_status import consumer_entries, consumer_table
from replica.errors import DatabaseError
from replica.store.database import WriterLock, schema_version
from replica.store.readonly import open_readonly

STATUS_COLUMNS = (
    "id",
    "kind",
    "shape",
    "state",
    "rows",
    "handle",
    "offset",
    "last_up_to_date",
    "last_error",
    "next_retry_at",
)


@click.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@logging_options
def status(db_path: str, as_json: bool) -> None:
    """Show shapes and change consumers: state, position, last error.

    Shapes: kind, state, rows held, handle and offset. Durable consumers (callbacks with a
    consumer name, `replica watch --consumer`): cursor, how far behind, state (ok,
    retrying, parked) and last error."""
    conn = open_readonly(db_path)
    if schema_version(conn) == 0:
        raise DatabaseError(f"{db_path} is not a replica database")
    rows = conn.execute(
        "SELECT id, kind, json_extract(definition, '$.label'), state, rows, handle, \"offset\", "
        "last_up_to_date, last_error, next_retry_at FROM _replica_shapes ORDER BY id"
    ).fetchall()
    if WriterLock.holder(db_path) is None:
        # Nobody follows these shapes right now: say so rather than show a stale "live".
        kept = ("failed", "complete")  # states that stay true without a sync running
        rows = [(*row[:3], row[3] if row[3] in kept else "stopped", *row[4:]) for row in rows]
    consumers = consumer_entries(conn)
    if as_json:
        # One array: the shapes as before, then the durable consumers (kind "consumer").
        shapes = json.loads(render_json(STATUS_COLUMNS, rows))
        click.echo(json.dumps(shapes + consumers, indent=2, default=str, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"no shapes in {db_path} yet; start one with: replica sync --tag TAG")
    else:
        click.echo(render_table(STATUS_COLUMNS, rows))
    if consumers:
        click.echo("\n" + consumer_table(consumers))


__all__ = ["status"]
