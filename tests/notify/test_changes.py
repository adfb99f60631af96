"""Reading the change log back: rows as of each change, previous values, typed runs."""

from __future__ import annotations

from pathlib import Path

import pytest

import replica
from replica.notify.changes import LogReader
from replica.store import Store, connect
from replica.tables import Column, RowChange, TableSpec
from tests.support.task_models import Email, EmailRun, ReportRun

from .helpers import Writer, log_entries, run, update


def read_all(db_path: Path, after: int = 0, **kwargs):
    conn = connect(db_path, readonly=True)
    try:
        reader = LogReader(conn)
        batch = reader.read(after, **kwargs)
        return batch, [reader.to_change(c) for c in batch.changes]
    finally:
        conn.close()


def test_each_change_carries_the_row_as_of_that_change(db_path: Path, writer: Writer) -> None:
    writer.commit(run(1))
    writer.commit(update(1, status="EXECUTING", metadata='{"progress": 0.1}'))
    writer.commit(update(1, status="COMPLETED", metadata='{"progress": 1}'))
    batch, changes = read_all(db_path)
    assert [c.op for c in changes] == ["insert", "update", "update"]
    assert [c.row["status"] for c in changes] == ["QUEUED", "EXECUTING", "COMPLETED"]
    # JSON columns are decoded, in rows and in previous values.
    assert changes[1].row["metadata"] == {"progress": 0.1}
    assert changes[2].old == {"status": "EXECUTING", "metadata": {"progress": 0.1}}
    assert set(changes[2].changed) == {"status", "metadata"}
    assert changes[1].previous["status"] == "QUEUED"
    assert changes[0].old is None and changes[0].changed == () and changes[0].previous is None
    assert all(c.key == "run_1" and c.table == "runs" for c in changes)
    assert [c.seq for c in changes] == [e["seq"] for e in log_entries(db_path)]
    assert batch.through == changes[-1].seq and batch.reset is None


def test_shape_and_commit_time_come_from_the_log(db_path: Path, writer: Writer) -> None:
    writer.commit(run(1))
    _, [change] = read_all(db_path)
    entry = log_entries(db_path)[0]
    assert change.shape_id == writer.shape and change.shape == "tag:a"
    assert change.committed_at == entry["committed_at"]


def test_reading_after_a_cursor_and_by_table_and_op(db_path: Path, writer: Writer) -> None:
    writer.commit(run(1), run(2))
    writer.commit(update(2, status="EXECUTING"))
    _, after = read_all(db_path, after=1)
    assert [(c.key, c.op) for c in after] == [("run_2", "insert"), ("run_2", "update")]
    _, updates = read_all(db_path, ops=["update"])
    assert [c.op for c in updates] == ["update"]
    batch, none = read_all(db_path, table="items")
    assert none == [] and batch.through == 3  # nothing of items, yet the cursor may move on


def test_a_limited_read_moves_the_cursor_only_as_far_as_it_read(
    db_path: Path, writer: Writer
) -> None:
    writer.commit(*(run(n) for n in range(5)))
    batch, changes = read_all(db_path, limit=2)
    assert [c.seq for c in changes] == [1, 2] and batch.through == 2


def test_deletes_carry_the_whole_previous_row(db_path: Path, store: Store) -> None:
    spec = TableSpec(
        name="items",
        columns=(
            Column("id", "INTEGER", not_null=True),
            Column("title"),
            Column("doc", json=True),
        ),
        primary_key=("id",),
        key_column="id",
    )
    store.ensure_table(spec)
    shape = store.register_shape("items", kind="electric", target="items").id
    position = {"handle": "h", "offset": "1_0"}
    store.apply(
        shape,
        [RowChange("insert", 7, {"title": "seven", "doc": '{"a": 1}'})],
        position=position,
        up_to_date=True,
    )
    store.apply(
        shape, [RowChange("update", 7, {"title": "SEVEN"})], position=position, up_to_date=True
    )
    store.apply(shape, [RowChange("delete", 7, {})], position=position, up_to_date=True)
    _, changes = read_all(db_path)
    insert, upd, delete = changes
    assert insert.row == {"id": 7, "title": "seven", "doc": {"a": 1}}  # typed key, JSON decoded
    assert upd.row["title"] == "SEVEN" and upd.old == {"title": "seven"}
    assert delete.row is None and delete.old == {"id": 7, "title": "SEVEN", "doc": {"a": 1}}
    assert delete.key == "7"  # keys are text, as logged


def test_composite_keys(db_path: Path, store: Store) -> None:
    # Keyed upstream by `v`; the primary key users see (and the log reports) is (a, b).
    spec = TableSpec(
        name="pairs",
        columns=(Column("a", "INTEGER", not_null=True), Column("b"), Column("v")),
        primary_key=("a", "b"),
        key_column="v",
    )
    store.ensure_table(spec)
    shape = store.register_shape("pairs", kind="electric", target="pairs").id
    position = {"handle": "h", "offset": "1_0"}
    store.apply(
        shape, [RowChange("insert", "x", {"a": 1, "b": "k"})], position=position, up_to_date=True
    )
    _, [change] = read_all(db_path)
    assert change.key == '[1,"k"]' and change.row == {"a": 1, "b": "k", "v": "x"}


def test_a_row_changed_again_later_is_rewound(db_path: Path, writer: Writer) -> None:
    writer.commit(run(1))
    writer.commit(update(1, status="EXECUTING"))
    # Read only the first change while later ones exist: the row is as of the insert.
    _, [first] = read_all(db_path, limit=1)
    assert first.row["status"] == "QUEUED"


def test_change_as_a_run_and_as_json(db_path: Path, writer: Writer) -> None:
    writer.commit(run(1, metadata='{"progress": 0.5}', tags='["a","b"]'))
    _, [change] = read_all(db_path)
    typed = change.run()
    assert typed is not None and typed.id == "run_1" and typed.tags == ["a", "b"]
    assert typed.metadata == {"progress": 0.5} and typed.is_queued
    data = change.to_dict()
    assert data["seq"] == 1 and data["table"] == "runs" and data["row"]["tags"] == ["a", "b"]
    assert set(data) >= {"seq", "op", "table", "key", "row", "changed", "old", "committed_at"}


def test_change_run_with_a_model_per_task(db_path: Path, writer: Writer) -> None:
    writer.commit(
        run(1, task_identifier="send-email", payload='{"to": "a@example.com"}'),
        run(2, task_identifier="render-video"),
    )
    writer.commit(RowChange("delete", "int_1", {}))
    _, [email, video, deleted] = read_all(db_path)
    both = EmailRun | ReportRun
    typed = email.run(model=both)
    assert type(typed) is EmailRun and typed.payload == Email(to="a@example.com")
    assert type(deleted.run(model=both)) is EmailRun  # as it was before the delete
    assert type(email.run(models={"send-email": EmailRun})) is EmailRun
    assert type(video.run(model=both)) is replica.Run
    assert video.run(model=both, other="skip") is None
    with pytest.raises(replica.ReplicaError, match="run run_2 is of task 'render-video'"):
        video.run(model=both, other="error")


def test_the_reader_never_leaves_a_transaction_open(db_path: Path, writer: Writer) -> None:
    writer.commit(run(1))
    conn = connect(db_path, readonly=True)
    try:
        LogReader(conn).read(0)
        assert not conn.in_transaction
    finally:
        conn.close()
