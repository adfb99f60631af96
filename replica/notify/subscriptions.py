"""Registered callbacks: what each follows (table, ops, filter), how it is delivered to
(anonymous or durable, transactional or not), how failures are retried, and the next
batch of changes it should get."""

from __future__ import annotations

import inspect
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replica.errors import ReplicaError
from replica.notify.changes import DERIVED_TABLES, Change, LogReader, TableSpecs, reset_change
from replica.notify.consumers import RetryPolicy
from replica.notify.filters import (
    FilterError,
    FilterEvaluationError,
    FilterEvaluator,
    RowFilter,
    parse_filter,
)
from replica.store.database import connect

log = logging.getLogger(__name__)

_OPS = frozenset({"insert", "update", "delete"})


class StopDelivery(Exception):
    """Raised by a callback to end listening without acknowledging the change (e.g. the
    reader of `replica watch` went away)."""


@dataclass(eq=False)
class Subscription:
    """A registered callback (see `Replica.on_change`).

    `cursor` is where an anonymous subscription stands (in memory); a durable one
    (`consumer` set) keeps its cursor in the database. `state`/`last_error` show how an
    anonymous one is doing (durable ones: `_replica_consumers`).
    """

    callback: Callable[..., Any]
    table: str | None = None
    row_filter: RowFilter | None = None
    ops: frozenset[str] | None = None
    consumer: str | None = None
    transactional: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cursor: int = 0
    state: str = "ok"
    last_error: str | None = None
    prepared: tuple[str, ...] | None = field(default=None, repr=False)  # columns checked

    @property
    def is_async(self) -> bool:
        call = self.callback
        return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
            getattr(call, "__call__", None)  # noqa: B004 - an async __call__ counts
        )

    @property
    def label(self) -> str:
        if self.consumer:
            return f"consumer {self.consumer!r}"
        name = getattr(self.callback, "__qualname__", None) or repr(self.callback)
        return f"callback {name}"


def checked_terms(
    reader: sqlite3.Connection,
    path: Path,
    *,
    table: str | None,
    where: str | None,
    ops: Iterable[str] | str | None,
    consumer: str | None,
    transactional: bool,
) -> tuple[RowFilter | None, frozenset[str] | None]:
    """Check what a subscription is asked to follow (see `Replica.on_change`): the row
    filter and ops it stands for, or a `ReplicaError` saying what is wrong.

    `reader` reads the table specs; a filter on a table already replicated is compiled by
    SQLite now (unknown functions...), on a scratch connection to `path`."""
    spec = None
    if table is not None:
        if table in DERIVED_TABLES:
            raise ReplicaError(
                f"{table} follows {DERIVED_TABLES[table]} and has no change log of its own",
                hint=f'use on_change("{DERIVED_TABLES[table]}")',
            )
        spec = TableSpecs(reader).get(table)
        if spec is None:
            log.info("table %r is not replicated yet; its filter is checked later", table)
    chosen_ops = None
    if ops is not None:
        chosen_ops = frozenset([ops] if isinstance(ops, str) else ops)
        unknown = chosen_ops - _OPS
        if unknown or not chosen_ops:
            raise ReplicaError(
                f"unknown ops {sorted(unknown) or '(none)'}",
                hint="ops are some of insert, update, delete",
            )
    row_filter = None
    if where is not None:
        if table is None:
            raise ReplicaError("a where filter needs a table", hint='on_change("runs", ...)')
        row_filter = parse_filter(where, table, spec)
        if spec is not None:
            # The query connection is query_only, which forbids even the TEMP tables this
            # needs: a scratch connection.
            scratch = connect(path, readonly=True)
            try:
                FilterEvaluator(scratch).prepare(row_filter, spec)
            finally:
                scratch.close()
    if transactional and not consumer:
        raise ReplicaError(
            "transactional=True needs a consumer name",
            hint="exactly-once delivery needs a durable cursor: consumer='name'",
        )
    return row_filter, chosen_ops


@dataclass
class FilterFailure:
    """Stands in for a change SQLite could not evaluate a subscription's filter on."""

    seq: int
    error: FilterError | FilterEvaluationError


@dataclass
class NextBatch:
    """Changes for a subscription, and how far its cursor may move once they are handled."""

    items: list[Change | FilterFailure]
    through: int


def next_batch(
    reader: LogReader, evaluator: FilterEvaluator, sub: Subscription, cursor: int, *, limit: int
) -> NextBatch:
    """The changes after `cursor` for `sub`: its table and ops, its filter applied (a
    `reset` if the log was pruned past the cursor)."""
    batch = reader.read(cursor, limit=limit, table=sub.table, ops=sub.ops)
    if batch.reset is not None:
        return NextBatch([reset_change(batch.reset)], batch.through)
    logged = batch.changes
    failures: list[Change | FilterFailure] = []
    through = batch.through
    if sub.row_filter is not None and logged:
        spec = reader.specs.get(logged[0].table)
        try:
            assert spec is not None
            if sub.prepared != spec.column_names:
                evaluator.prepare(sub.row_filter, spec)
                sub.prepared = spec.column_names
            subjects = [(c.seq, c.subject) for c in logged if c.subject is not None]
            keep = evaluator.matching(sub.row_filter, spec, subjects)
        except FilterError as exc:
            return NextBatch([FilterFailure(logged[0].seq, exc)], logged[0].seq - 1)
        except FilterEvaluationError as exc:
            # Deliver what precedes the row it failed on; that row fails like a callback.
            keep = exc.matched
            logged = [c for c in logged if c.seq < exc.seq]
            failures.append(FilterFailure(exc.seq, exc))
            through = exc.seq - 1
        logged = [c for c in logged if c.seq in keep]
    changes: list[Change | FilterFailure] = [reader.to_change(c) for c in logged]
    return NextBatch(changes + failures, through)


__all__ = [
    "FilterFailure",
    "NextBatch",
    "StopDelivery",
    "Subscription",
    "checked_terms",
    "next_batch",
]
