"""`where` filters: checked with sqlglot at registration, evaluated by SQLite on the row as
of each change (the previous row for a delete)."""

from __future__ import annotations

from pathlib import Path

import pytest

from replica import Change, Replica
from replica.notify.consumers import RetryPolicy
from replica.notify.filters import FilterError, parse_filter
from replica.store import Store
from replica.tables import RUNS, Column, RowChange, TableSpec
from tests.support.waiting import listen_until

from .helpers import Writer, run, update


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("status ==", "not valid SQL"),
        ("", "empty"),
        ("SELECT 1", "must be a condition"),
        ("status = 'a'; DROP TABLE runs", "single condition"),
        ("nope = 1", "has no column 'nope'"),
        ('status = "FAILED"', "strings take single quotes"),
        ("count(*) > 1", "aggregate"),
        ("row_number() OVER () = 1", "window"),
        ("status = ?", "parameter"),
        ("other.status = 'x'", "refers to other.status"),
        ("id IN (SELECT run_id FROM run_tags)", "cannot read tables"),
    ],
)
def test_bad_filters_fail_at_registration_naming_the_problem(
    db: Replica, where: str, problem: str
) -> None:
    with pytest.raises(FilterError, match=problem) as caught:
        db.on_change("runs", where=where)
    assert where.strip() in str(caught.value) or not where


def test_sqlite_checks_what_sqlglot_cannot(db: Replica) -> None:
    with pytest.raises(FilterError, match="no such function: frobnicate"):
        db.on_change("runs", where="frobnicate(status) = 1")


def test_filters_read_columns_of_their_table() -> None:
    row_filter = parse_filter(
        "json_extract(metadata, '$.progress') > 0.5 AND runs.status <> 'CANCELED'", "runs", RUNS
    )
    assert row_filter.columns == {"metadata", "status"}
    json_each = parse_filter(
        "EXISTS (SELECT 1 FROM json_each(tags) WHERE value = 'vip')", "runs", RUNS
    )
    assert json_each.columns == {"tags"}


def collect(db: Replica, where: str, table: str = "runs", **kwargs) -> list[Change]:
    seen: list[Change] = []
    db.on_change(table, where=where, start="beginning", **kwargs)(seen.append)
    return seen


def test_filters_are_evaluated_by_sqlite(db: Replica, writer: Writer) -> None:
    progress = collect(db, "json_extract(metadata, '$.progress') > 0.5")
    vip = collect(db, "EXISTS (SELECT 1 FROM json_each(tags) WHERE value = 'vip')")
    failed_updates = collect(db, "status = 'FAILED'", ops=["update"])
    numbered = collect(db, "number = '7'")  # INTEGER affinity, as in the real table
    writer.commit(run(1, metadata='{"progress": 0.2}', tags='["vip"]'))
    writer.commit(run(2, status="FAILED", number=7))
    writer.commit(update(1, metadata='{"progress": 0.7}'))
    writer.commit(update(1, status="FAILED"))
    listen_until(
        db,
        lambda: [len(progress), len(vip), len(failed_updates), len(numbered)] == [2, 3, 1, 1],
        what="every filter's changes",
    )
    assert [(c.key, c.op) for c in progress] == [("run_1", "update"), ("run_1", "update")]
    assert [c.op for c in vip] == ["insert", "update", "update"]
    assert [(c.key, c.op) for c in failed_updates] == [("run_1", "update")]
    assert [c.key for c in numbered] == ["run_2"]


def test_a_filter_sees_the_row_as_of_the_change(db: Replica, writer: Writer) -> None:
    executing = collect(db, "status = 'EXECUTING'")
    writer.commit(run(1))
    writer.commit(update(1, status="EXECUTING"))
    writer.commit(update(1, status="COMPLETED"))  # now the row is no longer EXECUTING
    listen_until(db, lambda: executing, what="the EXECUTING change")
    assert [(c.seq, c.row["status"]) for c in executing] == [(2, "EXECUTING")]


def items_spec() -> TableSpec:
    return TableSpec(
        name="items",
        columns=(Column("id", "INTEGER", not_null=True), Column("title"), Column("n", "INTEGER")),
        primary_key=("id",),
        key_column="id",
    )


def test_deletes_are_filtered_on_the_previous_row(store: Store, db_path: Path) -> None:
    store.ensure_table(items_spec())
    shape = store.register_shape("items", kind="electric", target="items").id
    position = {"handle": "h", "offset": "1_0"}
    with Replica(db_path, poll_interval=0.05) as db:
        big = collect(db, "n > 10", table="items")
        store.apply(
            shape,
            [RowChange("insert", 1, {"title": "a", "n": 5}), RowChange("insert", 2, {"n": 50})],
            position=position,
            up_to_date=True,
        )
        store.apply(
            shape,
            [RowChange("delete", 1, {}), RowChange("delete", 2, {})],
            position=position,
            up_to_date=True,
        )
        listen_until(db, lambda: len(big) == 2, what="the insert and delete of item 2")
    assert [(c.op, c.key) for c in big] == [("insert", "2"), ("delete", "2")]
    assert big[1].row is None and big[1].old == {"id": 2, "title": None, "n": 50}


def test_a_filter_sqlite_cannot_evaluate_parks_the_consumer_after_earlier_changes(
    db: Replica, writer: Writer
) -> None:
    seen: list[str] = []
    db.on_change(
        "runs",
        where="json_extract(metadata, '$.p') > 1",
        consumer="c",
        start="beginning",
        retry=RetryPolicy(attempts=2, initial=0.01),
    )(lambda ch: seen.append(ch.key))
    writer.commit(run(1, metadata='{"p": 2}'), run(2, metadata="not json"), run(3))
    listen_until(db, lambda: db.consumers()[0].state == "parked", what="parking")
    [status] = db.consumers()
    assert seen == ["run_1"]
    assert status.state == "parked" and status.failed_seq == 2 and status.last_seq == 1
    assert "failed on change 2" in (status.last_error or "")


def test_a_table_not_replicated_yet_is_checked_when_it_appears(store: Store, db_path: Path) -> None:
    with Replica(db_path, poll_interval=0.05) as db:
        seen: list[Change] = []
        # Syntax is checked now; the columns once the table exists.
        with pytest.raises(FilterError):
            db.on_change("items", where="title =")
        db.on_change("items", where="colour = 'red'", consumer="c", retry=RetryPolicy(attempts=1))(
            seen.append
        )
        store.ensure_table(items_spec())
        shape = store.register_shape("items", kind="electric", target="items").id
        store.apply(
            shape,
            [RowChange("insert", 1, {"title": "a"})],
            position={"handle": "h", "offset": "1_0"},
            up_to_date=True,
        )
        listen_until(db, lambda: db.consumers()[0].state == "parked", what="parking")
        [status] = db.consumers()
    assert seen == [] and status.state == "parked"
    assert "items has no column 'colour'" in (status.last_error or "")
