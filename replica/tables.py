"""Local tables and the neutral row changes applied to them.

Shared by the sources layer (which turns wire messages into `RowChange`s for a `TableSpec`)
and the store (which applies them); neither needs to know how the other works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Op = Literal["insert", "update", "delete"]


@dataclass(slots=True)
class RowChange:
    """One change to one local row.

    `key` is the value of the table's `key_column` (the identity the upstream keys on).
    `values` maps local column names to SQLite-ready values (str, int, float, bytes or None;
    JSON columns hold JSON text): the full row for `insert`, only the changed columns for
    `update`, anything (usually nothing) for `delete`.
    """

    op: Op
    key: Any
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Column:
    """A local column: its SQLite type and whether it holds JSON text."""

    name: str
    type: str = "TEXT"
    not_null: bool = False
    default: str | None = None  # an SQL literal, e.g. "'[]'"
    json: bool = False


@dataclass(frozen=True)
class TableSpec:
    """A replicated local table.

    `primary_key` is the key users see (and the change log reports); `key_column` is the
    column `RowChange.key` refers to (runs are keyed upstream by an internal id, not by the
    public `id`). With `keep_detached`, a row that leaves every shape stays, with
    `detached_at` set; otherwise it is deleted.
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    key_column: str
    keep_detached: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def json_columns(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns if c.json)


def _c(name: str, type_: str = "TEXT", **kwargs: Any) -> Column:
    return Column(name, type_, **kwargs)


#: The `runs` table: one row per Trigger.dev run, named after the public run object.
#: The first 23 columns are the public contract (docs/tables); the rest serve replica.
RUNS = TableSpec(
    name="runs",
    columns=(
        _c("id", not_null=True),
        _c("task_identifier", not_null=True),
        _c("status", not_null=True),
        _c("payload", json=True),
        _c("output", json=True),
        _c("metadata", json=True),
        _c("error", json=True),
        _c("tags", not_null=True, default="'[]'", json=True),
        _c("number", "INTEGER"),
        _c("is_test", "INTEGER"),
        _c("duration_ms", "INTEGER"),
        _c("cost_in_cents", "REAL"),
        _c("base_cost_in_cents", "REAL"),
        _c("idempotency_key"),
        _c("ttl"),
        _c("created_at"),
        _c("updated_at"),
        _c("started_at"),
        _c("finished_at"),
        _c("queued_at"),
        _c("delayed_until"),
        _c("expired_at"),
        _c("detached_at"),
        # -- what the implementation needs ------------------------------------------------
        _c("internal_id", not_null=True),  # TaskRun.id: what Electric keys on
        _c("db_status"),  # the raw TaskRunStatus (e.g. COMPLETED_WITH_ERRORS)
        _c("realtime_streams", not_null=True, default="'[]'", json=True),
        _c("payload_type"),  # packet types as last received
        _c("output_type"),
        _c("metadata_type"),
        _c("payload_ref"),  # object-store path of an offloaded packet not (yet) fetched
        _c("output_ref"),
    ),
    primary_key=("id",),
    key_column="internal_id",
    keep_detached=True,
)
