"""`replica watch`: every committed change as one JSON line, following new commits."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from replica.api import Replica
from replica.commands.common import db_option, logging_options
from replica.errors import DatabaseError, ReplicaError
from replica.notify.changes import Change, TableSpecs
from replica.notify.filters import parse_filter
from replica.notify.subscriptions import StopDelivery
from replica.store.database import connect, schema_version

log = logging.getLogger(__name__)


@click.command()
@db_option
@click.option(
    "--consumer",
    metavar="NAME",
    help="Durable consumer: resume after its last acknowledged change (each printed "
    "change is acknowledged).",
)
@click.option("--table", metavar="TABLE", help="Only changes to this table (default: all).")
@click.option(
    "--where",
    metavar="SQL",
    help="Only changes whose row matches this SQL condition (the previous row for a "
    "delete); implies --table runs unless --table is given.",
)
@click.option(
    "--ops",
    metavar="OP[,OP]",
    help="Only these operations: insert, update, delete (comma-separated).",
)
@click.option(
    "--since",
    type=click.IntRange(min=0),
    metavar="SEQ",
    help="Start after change SEQ (0: the oldest retained) instead of at new commits; for a "
    "new --consumer, where it starts.",
)
@logging_options
def watch(
    db_path: str,
    consumer: str | None,
    table: str | None,
    where: str | None,
    ops: str | None,
    since: int | None,
) -> None:
    """Print each committed change as one JSON line, following new commits by any process.

    \b
    Each line has seq, op (insert, update, delete, or reset when changes were pruned
    before they could be read), table, key, row (JSON columns decoded; null for a delete),
    changed (column names), old (their previous values), shape and committed_at.

    \b
    Examples:
      replica watch
      replica watch --where "status = 'FAILED'"
      replica watch --consumer alerts --table runs --ops update | my-alerter
    """
    if where is not None and table is None:
        table = "runs"
    chosen_ops = [o.strip() for o in ops.split(",") if o.strip()] if ops else None
    _check_database(db_path)
    _check_arguments(db_path, table, where)
    try:
        db = Replica(db_path)
    except ReplicaError as exc:
        raise DatabaseError(str(exc)) from None
    with db:
        if consumer is not None and since is not None and _consumer_exists(db, consumer):
            click.echo(
                f"replica watch: consumer {consumer!r} exists; resuming after its last "
                "acknowledged change (--since ignored)",
                err=True,
            )
        try:
            db.on_change(
                table,
                where=where,
                ops=chosen_ops,
                consumer=consumer,
                start=since if since is not None else "end",
            )(_print_change)
        except ReplicaError as exc:
            raise click.UsageError(str(exc)) from None
        previous = {sig: signal.signal(sig, lambda *_: db.stop()) for sig in _SIGNALS}
        try:
            db.listen()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _print_change(change: Change) -> None:
    line = orjson.dumps(change.to_dict(), default=_jsonable) + b"\n"
    try:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, this change unacknowledged.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise StopDelivery from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot print a {type(value).__name__}")


def _check_database(db_path: str) -> None:
    path = Path(db_path)
    if not path.exists():
        raise DatabaseError(
            f"database {path} does not exist", hint="run replica sync first, or pass --db"
        )


def _check_arguments(db_path: str, table: str | None, where: str | None) -> None:
    """Usage errors before anything starts: unknown table, bad filter."""
    conn = connect(db_path, readonly=True)
    try:
        if schema_version(conn) == 0:
            raise DatabaseError(f"{db_path} is not a replica database")
        spec = None
        if table is not None:
            specs = TableSpecs(conn)
            spec = specs.get(table)
            if spec is None:
                known = ", ".join(sorted(specs.names()))
                raise click.UsageError(
                    f"{table!r} is not a replicated table in {db_path} (replicated: {known})"
                )
        if where is not None:
            assert table is not None
            try:
                parse_filter(where, table, spec)
            except ReplicaError as exc:
                raise click.UsageError(str(exc)) from None
    finally:
        conn.close()


def _consumer_exists(db: Replica, name: str) -> bool:
    return any(c.name == name for c in db.consumers())


__all__ = ["watch"]
