"""`replica reset`: forget sync positions so the next sync fetches shapes from scratch."""

from __future__ import annotations

import click

from replica.commands.common import db_option, logging_options
from replica.errors import DatabaseError
from replica.store import Store
from replica.store.readonly import open_readonly


@click.command()
@db_option
@click.option(
    "--shape",
    "shape_ref",
    metavar="KEY",
    help="The shape to reset: its id, label (e.g. 'tag user:1234') or key (see replica status).",
)
@click.option("--all", "reset_all", is_flag=True, help="Reset every shape.")
@logging_options
def reset(db_path: str, shape_ref: str | None, reset_all: bool) -> None:
    """Forget positions: the next `replica sync` re-snapshots the shape(s).

    Rows stay in place until the new snapshot replaces them (no rows vanish in between).
    Stop `replica sync` first: only one process may write the database.
    """
    if bool(shape_ref) == reset_all:
        raise click.UsageError("give either --shape KEY or --all")
    open_readonly(db_path).close()  # a clear error when the file does not exist
    with Store(db_path) as store:
        if reset_all:
            count = store.forget_position()
            click.echo(f"reset {count} shape(s); the next sync fetches them from scratch")
            return
        assert shape_ref is not None
        matches = [
            s for s in store.shapes() if shape_ref in (str(s.id), s.key, s.definition.get("label"))
        ]
        if not matches:
            known = ", ".join(repr(s.definition.get("label", s.key)) for s in store.shapes())
            raise DatabaseError(
                f"no shape {shape_ref!r} in {db_path}",
                hint=f"known shapes: {known}" if known else "this database has no shapes yet",
            )
        for shape in matches:
            store.forget_position(shape.id)
            label = shape.definition.get("label", shape.key)
            click.echo(f"reset {label}; the next sync fetches it from scratch")
