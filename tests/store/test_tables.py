"""Tables the store keeps: runs with run_tags and run_history, and plain Electric tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from replica.errors import DatabaseError
from replica.sources.electric import ElectricMapper, local_table_name, table_spec
from replica.store import Store
from replica.tables import RowChange

from .helpers import changes_log, pos, run_insert, run_rows


def test_partial_updates_merge_into_the_stored_row(
    store: Store, tag_shape: int, db_path: Path
) -> None:
    store.apply(
        tag_shape, [run_insert(1, payload='{"a":1}')], position=pos("0_inf"), up_to_date=True
    )
    store.apply(
        tag_shape,
        [RowChange("update", "int_1", {"status": "EXECUTING"})],
        position=pos("1_0"),
        up_to_date=True,
    )
    row = run_rows(db_path)[0]
    assert (row["status"], row["payload"], row["task_identifier"]) == (
        "EXECUTING",
        '{"a":1}',
        "task",
    )


def test_run_tags_follow_the_tags_column(store: Store, tag_shape: int) -> None:
    store.apply(
        tag_shape, [run_insert(1, tags='["a","b"]')], position=pos("0_inf"), up_to_date=True
    )
    store.apply(
        tag_shape,
        [RowChange("update", "int_1", {"tags": '["b","c"]'})],
        position=pos("1_0"),
        up_to_date=True,
    )
    tags = store.conn.execute("SELECT tag FROM run_tags WHERE run_id = 'run_1' ORDER BY tag")
    assert [t for (t,) in tags] == ["b", "c"]


def test_run_history_records_every_status_seen(store: Store, tag_shape: int) -> None:
    store.apply(tag_shape, [run_insert(1)], position=pos("0_inf"), up_to_date=True)
    for n, status in enumerate(["EXECUTING", "EXECUTING", "COMPLETED"], start=1):
        store.apply(
            tag_shape,
            [RowChange("update", "int_1", {"status": status, "updated_at": f"t{n}"})],
            position=pos(f"{n}_0"),
            up_to_date=True,
        )
    history = store.conn.execute(
        "SELECT status, previous_status, at FROM run_history WHERE run_id = 'run_1' ORDER BY id"
    ).fetchall()
    assert history == [
        ("QUEUED", None, "2026-01-01T00:00:01.000Z"),
        ("EXECUTING", "QUEUED", "t1"),
        ("COMPLETED", "EXECUTING", "t3"),
    ]


def test_bulk_and_single_inserts_log_the_same_way(
    store: Store, tag_shape: int, db_path: Path
) -> None:
    store.apply(
        tag_shape, [run_insert(i) for i in range(40)], position=pos("0_inf"), up_to_date=True
    )
    store.apply(
        tag_shape,
        [run_insert(i, status="EXECUTING") for i in range(20, 60)],
        position=pos("1_0"),
        up_to_date=True,
    )
    log = changes_log(db_path)
    assert len(log) == 40 + 20 + 20  # 40 inserts, 20 updates, 20 new inserts
    assert {c["op"] for c in log[40:]} == {"update", "insert"}
    assert store.shape("tag:a").rows == 60  # type: ignore[union-attr]


def test_remove_shape_lets_go_of_its_rows(store: Store, tag_shape: int, db_path: Path) -> None:
    other = store.register_shape("tag:b", kind="tag", target="runs").id
    store.apply(tag_shape, [run_insert(1), run_insert(2)], position=pos("0_inf"), up_to_date=True)
    store.apply(other, [run_insert(2)], position=pos("0_inf"), up_to_date=True)
    store.remove_shape(tag_shape)
    detached = {r["id"]: r["detached_at"] is not None for r in run_rows(db_path)}
    assert detached == {"run_1": True, "run_2": False}
    assert store.shape("tag:a") is None


def test_forget_position_refetches_without_losing_rows(
    store: Store, tag_shape: int, db_path: Path
) -> None:
    store.apply(tag_shape, [run_insert(1)], position=pos("0_inf"), up_to_date=True)
    assert store.forget_position() == 1
    shape = store.shape("tag:a")
    assert shape is not None
    assert (shape.offset, shape.position, shape.phase) == ("-1", None, "snapshot")
    assert len(run_rows(db_path)) == 1
    store.apply(tag_shape, [run_insert(1)], position=pos("0_inf", "h9"), up_to_date=True)
    assert len(changes_log(db_path)) == 1  # the same row again is no change


# -- plain Electric tables -----------------------------------------------------------------


SCHEMA = {
    "id": {"type": "int8", "pk_index": 0, "not_null": True},
    "title": {"type": "varchar"},
    "done": {"type": "bool"},
    "score": {"type": "float8"},
    "price": {"type": "numeric"},
    "tags": {"type": "text", "dims": 1},
    "meta": {"type": "jsonb"},
    "status": {"type": "my_enum"},
}


def test_electric_table_types_follow_the_schema(store: Store) -> None:
    spec = store.ensure_table(table_spec("items", SCHEMA))
    info = {
        row[1]: (row[2], row[3], row[5]) for row in store.conn.execute("PRAGMA table_info(items)")
    }
    assert info == {
        "id": ("INTEGER", 1, 1),
        "title": ("TEXT", 0, 0),
        "done": ("INTEGER", 0, 0),
        "score": ("REAL", 0, 0),
        "price": ("TEXT", 0, 0),
        "tags": ("TEXT", 0, 0),
        "meta": ("TEXT", 0, 0),
        "status": ("TEXT", 0, 0),
    }
    assert spec.json_columns == {"tags", "meta"}


def test_electric_values_are_stored_exactly(store: Store) -> None:
    from decimal import Decimal

    from replica.protocol.messages import ChangeMessage

    spec = store.ensure_table(table_spec("items", SCHEMA))
    shape = store.register_shape("items", kind="electric", target="items").id
    message = ChangeMessage(
        '"public"."items"/"1"',
        "insert",
        {
            "id": 2**62 + 1,
            "title": "a",
            "done": True,
            "score": float("nan"),
            "price": Decimal("1.50"),
            "tags": ["x", None],
            "meta": {"big": 2**70},
            "status": "on",
        },
    )
    store.apply(shape, ElectricMapper(spec).map([message]), position=pos("0_inf"), up_to_date=True)
    row = store.conn.execute("SELECT * FROM items").fetchone()
    assert row == (
        2**62 + 1,
        "a",
        1,
        "NaN",
        "1.50",
        '["x",null]',
        '{"big": 1180591620717411303424}',
        "on",
    )


def test_electric_table_grows_with_the_schema(store: Store) -> None:
    store.ensure_table(table_spec("items", {"id": {"type": "int4", "pk_index": 0}}))
    grown = store.ensure_table(
        table_spec("items", {"id": {"type": "int4", "pk_index": 0}, "title": {"type": "text"}})
    )
    assert grown.column_names == ("id", "title")
    columns = [(r[1], r[2], r[5]) for r in store.conn.execute("PRAGMA table_info(items)")]
    assert columns == [("id", "INTEGER", 1), ("title", "TEXT", 0)]
    # A column that disappears upstream stays locally.
    again = store.ensure_table(table_spec("items", {"id": {"type": "int4", "pk_index": 0}}))
    assert again.column_names == ("id", "title")


def test_composite_and_missing_primary_keys(store: Store) -> None:
    composite = table_spec(
        "pairs", {"a": {"type": "int4", "pk_index": 0}, "b": {"type": "text", "pk_index": 1}}
    )
    assert (composite.primary_key, composite.key_column) == (("a", "b"), "_replica_key")
    keyless = table_spec("loose", {"a": {"type": "int4"}})
    assert keyless.primary_key == ("_replica_key",)
    store.ensure_table(composite)
    shape = store.register_shape("pairs", kind="electric", target="pairs").id
    from replica.protocol.messages import ChangeMessage

    mapper = ElectricMapper(store.tables["pairs"])
    msgs = [ChangeMessage('"public"."pairs"/"1"/"x"', "insert", {"a": 1, "b": "x"})]
    store.apply(shape, mapper.map(msgs), position=pos("0_inf"), up_to_date=True)
    log = store.conn.execute("SELECT key FROM _replica_changes").fetchall()
    assert log == [('[1,"x"]',)]


def test_primary_key_change_is_delete_then_insert(store: Store) -> None:
    spec = store.ensure_table(table_spec("items", SCHEMA))
    shape = store.register_shape("items", kind="electric", target="items").id
    mapper = ElectricMapper(spec)
    from replica.protocol.messages import ChangeMessage

    store.apply(
        shape,
        mapper.map([ChangeMessage("k1", "insert", {"id": 1, "title": "a"})]),
        position=pos("0_inf"),
        up_to_date=True,
    )
    store.apply(
        shape,
        mapper.map(
            [
                ChangeMessage("k1", "delete", {"id": 1}),
                ChangeMessage("k7", "insert", {"id": 7, "title": "a"}),
            ]
        ),
        position=pos("1_1"),
        up_to_date=True,
    )
    assert store.conn.execute("SELECT id, title FROM items").fetchall() == [(7, "a")]


@pytest.mark.parametrize("name", ["runs", "_replica_shapes", "run_tags", "sqlite_master"])
def test_reserved_table_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(DatabaseError, match="reserved"):
        store.ensure_table(table_spec(name, {"id": {"type": "int4", "pk_index": 0}}))


def test_a_foreign_table_is_never_taken_over(store: Store) -> None:
    store.conn.execute("CREATE TABLE items (x)")
    with pytest.raises(DatabaseError, match="not created by replica"):
        store.ensure_table(table_spec("items", {"id": {"type": "int4", "pk_index": 0}}))


@pytest.mark.parametrize(
    ("given", "local"),
    [
        ("items", "items"),
        ("public.items", "items"),
        ('"My"."Items"', "Items"),
        ("Items", "items"),
        ('"we""ird"', 'we"ird'),
    ],
)
def test_local_table_names(given: str, local: str) -> None:
    assert local_table_name(given) == local


def test_detach_policy_is_configurable(store: Store, tag_shape: int, db_path: Path) -> None:
    store.set_keep_detached("runs", False)
    store.apply(tag_shape, [run_insert(1), run_insert(2)], position=pos("0_inf"), up_to_date=True)
    store.apply(tag_shape, [RowChange("delete", "int_1", {})], position=pos("1_0"), up_to_date=True)
    assert [r["id"] for r in run_rows(db_path)] == ["run_2"]
    assert changes_log(db_path)[-1]["op"] == "delete"
    # Plain tables delete by default; keeping adds a detached_at column.
    spec = store.ensure_table(table_spec("items", {"id": {"type": "int4", "pk_index": 0}}))
    assert not spec.keep_detached
    store.set_keep_detached("items", True)
    shape = store.register_shape("items", kind="electric", target="items").id
    store.apply(shape, [RowChange("insert", 1, {"id": 1})], position=pos("0_inf"), up_to_date=True)
    store.apply(shape, [RowChange("delete", 1, {})], position=pos("1_0"), up_to_date=True)
    kept = store.conn.execute("SELECT id, detached_at IS NOT NULL FROM items").fetchall()
    assert kept == [(1, 1)]
