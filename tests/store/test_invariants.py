"""The store's invariants (design.md 1-8), each on real SQLite files."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from replica.errors import ApplyError, DatabaseLockedError
from replica.store import Store
from replica.store.database import connect, migrations, schema_version
from replica.tables import RowChange

from .helpers import changes_log, electric_items, pos, run_insert, run_rows


def publish(
    store: Store, shape_id: int, changes: list[RowChange], offset: str = "1_0", **kw: Any
) -> Any:
    return store.apply(shape_id, changes, position=pos(offset), up_to_date=True, **kw)


# -- 1. atomic position -------------------------------------------------------------------


def test_invariant_1_position_commits_with_its_rows(
    store: Store, tag_shape: int, db_path: Path
) -> None:
    publish(store, tag_shape, [run_insert(1), run_insert(2)], "0_inf")
    before = (run_rows(db_path), changes_log(db_path), store.shape("tag:a").position)  # type: ignore[union-attr]
    bad = RowChange("insert", "int_9", {"id": "run_9", "task_identifier": "t"})  # no status
    with pytest.raises(ApplyError, match="NOT NULL"):
        publish(store, tag_shape, [run_insert(3), bad], "5_0")
    after = (run_rows(db_path), changes_log(db_path), store.shape("tag:a").position)  # type: ignore[union-attr]
    assert after == before
    assert before[2]["offset"] == "0_inf"


def test_invariant_1_reopening_resumes_from_the_last_commit(db_path: Path) -> None:
    with Store(db_path) as store:
        shape = store.register_shape("tag:a", kind="tag", target="runs")
        publish(store, shape.id, [run_insert(1)], "7_3")
    with Store(db_path) as store:
        again = store.shape("tag:a")
        assert again is not None
        assert again.position == pos("7_3")
        assert (again.handle, again.offset, again.phase) == ("h1", "7_3", "live")


# -- 2. consistent reads ------------------------------------------------------------------


def test_invariant_2_a_staged_snapshot_is_published_whole(
    store: Store, tag_shape: int, db_path: Path
) -> None:
    reader = connect(db_path, readonly=True)
    for page in range(5):
        rows = [run_insert(page * 10 + i) for i in range(10)]
        store.apply(tag_shape, rows, position=pos(f"0_{page}"), up_to_date=False)
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    assert store.shape("tag:a").offset == "0_4"  # type: ignore[union-attr]
    publish(store, tag_shape, [], "0_inf")
    assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 50
    assert reader.execute("SELECT count(*) FROM _replica_pending").fetchone()[0] == 0


def test_invariant_2_a_live_transaction_split_across_pages_is_applied_at_once(
    store: Store, tag_shape: int, db_path: Path
) -> None:
    publish(store, tag_shape, [run_insert(1)], "0_inf")
    store.apply(
        tag_shape,
        [RowChange("update", "int_1", {"status": "EXECUTING"})],
        position=pos("9_0"),
        up_to_date=False,
    )
    assert run_rows(db_path)[0]["status"] == "QUEUED"
    publish(store, tag_shape, [RowChange("update", "int_1", {"duration_ms": 5})], "9_2")
    row = run_rows(db_path)[0]
    assert (row["status"], row["duration_ms"]) == ("EXECUTING", 5)


def test_invariant_2_a_crash_mid_snapshot_resumes_from_the_last_page(db_path: Path) -> None:
    with Store(db_path) as store:
        shape = store.register_shape("tag:a", kind="tag", target="runs")
        store.apply(shape.id, [run_insert(1)], position=pos("0_0"), up_to_date=False)
        store.apply(shape.id, [run_insert(2)], position=pos("0_1"), up_to_date=False)
        # the process dies here: nothing published
    with Store(db_path) as store:
        shape = store.shape("tag:a")
        assert shape is not None and shape.offset == "0_1" and shape.phase == "snapshot"
        assert run_rows(db_path) == []
        store.apply(shape.id, [run_insert(3)], position=pos("0_inf"), up_to_date=True)
    assert [r["id"] for r in run_rows(db_path)] == ["run_1", "run_2", "run_3"]


# -- 3. bounded memory --------------------------------------------------------------------


def _peak_staging(db_path: Path, pages: int) -> int:
    with Store(db_path) as store:
        shape = store.register_shape("tag:a", kind="tag", target="runs")
        tracemalloc.start()
        for page in range(pages):
            rows = [run_insert(page * 500 + i, payload="x" * 500) for i in range(500)]
            store.apply(shape.id, rows, position=pos(f"0_{page}"), up_to_date=False)
            del rows
        tracemalloc.reset_peak()
        store.apply(shape.id, [], position=pos("0_inf"), up_to_date=True)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert store.shape("tag:a").rows == pages * 500  # type: ignore[union-attr]
    return peak


def test_invariant_3_publishing_memory_does_not_grow_with_the_shape(tmp_path: Path) -> None:
    small = _peak_staging(tmp_path / "small.db", 4)
    large = _peak_staging(tmp_path / "large.db", 16)
    # Four times the rows, about the same peak: one staged page is in memory at a time.
    assert large < small * 1.5 + 256 * 1024


# -- 4. exact change log ------------------------------------------------------------------


def test_invariant_4_every_real_change_is_logged_once_in_order(
    store: Store, tag_shape: int, db_path: Path
) -> None:
    publish(store, tag_shape, [run_insert(1), run_insert(2)], "0_inf")
    publish(
        store,
        tag_shape,
        [
            RowChange("update", "int_1", {"status": "EXECUTING"}),
            RowChange("update", "int_1", {"status": "EXECUTING"}),  # no difference: not logged
            RowChange("insert", "int_2", run_insert(2).values),  # identical row: not logged
            RowChange("update", "int_2", {"status": "COMPLETED", "duration_ms": 9}),
        ],
        "5_0",
    )
    log = changes_log(db_path)
    assert [(c["key"], c["op"], c["changed"]) for c in log] == [
        ("run_1", "insert", None),
        ("run_2", "insert", None),
        ("run_1", "update", '["status"]'),
        ("run_2", "update", '["status","duration_ms"]'),
    ]
    assert log[3]["old"] == '{"status":"QUEUED","duration_ms":null}'
    assert [c["seq"] for c in log] == sorted({c["seq"] for c in log})


def test_invariant_4_sequence_numbers_are_never_reused(
    store: Store, tag_shape: int, db_path: Path
) -> None:
    publish(store, tag_shape, [run_insert(1), run_insert(2)], "0_inf")
    highest = changes_log(db_path)[-1]["seq"]
    store.conn.execute("DELETE FROM _replica_changes")  # retention pruning everything
    publish(store, tag_shape, [RowChange("update", "int_1", {"status": "EXECUTING"})], "6_0")
    assert changes_log(db_path)[0]["seq"] == highest + 1


# -- 5. overlapping shapes ----------------------------------------------------------------


def test_invariant_5_a_row_stays_until_the_last_shape_lets_go(store: Store, db_path: Path) -> None:
    a = store.register_shape("tag:a", kind="tag", target="runs").id
    b = store.register_shape("tag:b", kind="tag", target="runs").id
    publish(store, a, [run_insert(1)], "0_inf")
    publish(store, b, [run_insert(1)], "0_inf")
    publish(store, a, [RowChange("delete", "int_1", {})], "5_0")
    assert run_rows(db_path)[0]["detached_at"] is None
    publish(store, b, [RowChange("delete", "int_1", {})], "5_0")
    assert run_rows(db_path)[0]["detached_at"] is not None
    # A shape that takes the run back re-attaches it.
    publish(store, a, [run_insert(1)], "6_0")
    assert run_rows(db_path)[0]["detached_at"] is None


def test_invariant_5_plain_rows_are_deleted_when_the_last_shape_lets_go(
    store: Store, db_path: Path
) -> None:
    spec = store.ensure_table(electric_items())
    a = store.register_shape("items:a", kind="electric", target=spec.name).id
    b = store.register_shape("items:b", kind="electric", target=spec.name).id
    row = RowChange("insert", 1, {"id": 1, "title": "x"})
    publish(store, a, [row], "0_inf")
    publish(store, b, [row], "0_inf")
    publish(store, a, [RowChange("delete", 1, {})], "5_0")
    assert store.conn.execute("SELECT count(*) FROM items").fetchone()[0] == 1
    publish(store, b, [RowChange("delete", 1, {})], "5_0")
    assert store.conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0
    assert changes_log(db_path)[-1]["op"] == "delete"


# -- 6. no flicker on refetch -------------------------------------------------------------


def test_invariant_6_refetch_reconciles_without_flicker(
    store: Store, tag_shape: int, db_path: Path
) -> None:
    publish(store, tag_shape, [run_insert(i) for i in range(1, 5)], "0_inf")
    seen_before = changes_log(db_path)[-1]["seq"]
    reader = connect(db_path, readonly=True)
    # 409: the shape starts over; its new snapshot arrives in two pages.
    store.apply(tag_shape, [], position=pos("-1", handle="h2"), up_to_date=False, reset=True)
    store.apply(
        tag_shape,
        [run_insert(1), run_insert(2, status="EXECUTING")],
        position=pos("0_0", handle="h2"),
        up_to_date=False,
    )
    assert reader.execute("SELECT count(*) FROM runs WHERE detached_at IS NULL").fetchone()[0] == 4
    store.apply(
        tag_shape,
        [run_insert(3), run_insert(5)],
        position=pos("0_inf", handle="h2"),
        up_to_date=True,
    )
    current = {r["id"]: r for r in run_rows(db_path)}
    assert current["run_4"]["detached_at"] is not None  # not in the new snapshot
    assert current["run_5"]["detached_at"] is None
    new = [
        (c["key"], c["op"], c["changed"]) for c in changes_log(db_path) if c["seq"] > seen_before
    ]
    assert sorted(new) == [
        ("run_2", "update", '["status"]'),
        ("run_4", "update", '["detached_at"]'),
        ("run_5", "insert", None),
    ]
    assert store.shape("tag:a").rows == 4  # type: ignore[union-attr]


# -- 7. one writer, many readers ----------------------------------------------------------


def test_invariant_7_a_second_writer_is_refused(store: Store, db_path: Path) -> None:
    with pytest.raises(DatabaseLockedError, match=f"pid {os.getpid()}"):
        Store(db_path)


def test_invariant_7_readers_never_see_database_is_locked(
    store: Store, tag_shape: int, db_path: Path
) -> None:
    errors: list[Exception] = []
    stop = threading.Event()

    def read() -> None:
        conn = connect(db_path, readonly=True)
        while not stop.is_set():
            try:
                conn.execute("SELECT count(*), max(status) FROM runs").fetchone()
            except sqlite3.Error as exc:
                errors.append(exc)
        conn.close()

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for batch in range(30):
        publish(store, tag_shape, [run_insert(batch * 50 + i) for i in range(50)], f"{batch}_0")
    stop.set()
    for thread in readers:
        thread.join()
    assert errors == []


# -- 8. bad input changes nothing ---------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        RowChange("insert", "int_9", {"id": "run_9", "task_identifier": "t"}),
        RowChange(
            "insert",
            "int_9",
            {"id": "run_9", "task_identifier": "t", "status": "Q", "tags": "not json"},
        ),
    ],
)
def test_invariant_8_a_bad_change_rolls_the_whole_batch_back(
    store: Store, tag_shape: int, db_path: Path, bad: RowChange
) -> None:
    publish(store, tag_shape, [run_insert(1)], "0_inf")
    store.apply(tag_shape, [run_insert(2)], position=pos("3_0"), up_to_date=False)
    snapshot = (run_rows(db_path), changes_log(db_path), store.shape("tag:a"))
    with pytest.raises(ApplyError):
        publish(store, tag_shape, [RowChange("update", "int_1", {"status": "X"}), bad], "4_0")
    assert (run_rows(db_path), changes_log(db_path), store.shape("tag:a")) == snapshot
    pending = store.conn.execute("SELECT count(*) FROM _replica_pending").fetchone()[0]
    assert pending == 1  # the staged page is still there for the retry


# -- the file -------------------------------------------------------------------------------


def test_database_file_is_private_and_migrated_once(db_path: Path) -> None:
    with Store(db_path):
        pass
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    with Store(db_path) as store:
        assert schema_version(store.conn) == migrations()[-1][0]
        applied = store.conn.execute("SELECT count(*) FROM _replica_migrations").fetchone()[0]
        assert applied == len(migrations())
