"""`replica reset` and `replica forget`: forget where shapes stand, or the shapes themselves.

`reset` keeps a shape and its rows but forgets its position, so the next sync fetches it
from scratch; `forget` lets go of a shape's rows and removes it, as a sync does at start
for shapes it no longer names.
"""

from __future__ import annotations

import click

from replica.commands.common import db_option, logging_options
from replica.errors import DatabaseError
from replica.store import Store
from replica.store.readonly import open_readonly
from replica.store.store import ShapeRecord


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
        for shape in _matching(store, shape_ref, db_path):
            store.forget_position(shape.id)
            label = shape.definition.get("label", shape.key)
            click.echo(f"reset {label}; the next sync fetches it from scratch")


@click.command()
@db_option
@click.argument("shape_ref", metavar="SHAPE")
@logging_options
def forget(db_path: str, shape_ref: str) -> None:
    """Stop keeping a shape: let go of its rows and remove it from status.

    SHAPE is its id, label (e.g. 'tag user:1234') or key, as `replica status` shows them.
    Its runs get detached_at (rows of Electric tables are deleted), except those another
    shape still holds. Stop `replica sync` first: only one process may write the database.
    """
    open_readonly(db_path).close()  # a clear error when the file does not exist
    with Store(db_path) as store:
        for shape in _matching(store, shape_ref, db_path):
            store.remove_shape(shape.id)
            label = shape.definition.get("label", shape.key)
            click.echo(f"forgot {label}; its rows are let go of")


def _matching(store: Store, ref: str, db_path: str) -> list[ShapeRecord]:
    """The stored shapes `ref` names (id, label or key); an error naming the known ones if
    none."""
    shapes = store.shapes()
    matches = [s for s in shapes if ref in (str(s.id), s.key, s.definition.get("label"))]
    if not matches:
        known = ", ".join(repr(s.definition.get("label", s.key)) for s in shapes)
        raise DatabaseError(
            f"no shape {ref!r} in {db_path}",
            hint=f"known shapes: {known}" if known else "this database has no shapes yet",
        )
    return matches
