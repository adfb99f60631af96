"""The set-based bulk insert path writes exactly what the per-row path writes.

Each scenario is applied twice, once with set-based bulk inserts and once with them turned
off (per-row triggers do the logging), and the tables and change logs are compared.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from replica.store import Store
from replica.store.apply import BULK_THRESHOLD, TableWriter
from replica.tables import Column, RowChange, TableSpec

from .helpers import _rows, pos

Scenario = list[tuple[int, list[RowChange]]]  # (shape index, page published at once)


_STAMP = re.compile(r'"detached_at":"[^"]*"')


def _snapshot(db: Path) -> dict[str, Any]:
    # Detachment times differ between the two plays; whether a row is detached does not.
    runs = _rows(db, "SELECT * FROM runs ORDER BY internal_id")
    for row in runs:
        row["detached_at"] = row["detached_at"] is not None
    log = _rows(
        db, "SELECT tbl, key, op, shape_id, changed, old FROM _replica_changes ORDER BY seq"
    )
    for entry in log:
        entry["old"] = entry["old"] and _STAMP.sub('"detached_at":"(time)"', entry["old"])
    return {
        "runs": runs,
        "tags": _rows(db, "SELECT tag, run_id FROM run_tags ORDER BY tag, run_id"),
        "history": _rows(
            db, "SELECT run_id, status, previous_status, at FROM run_history ORDER BY run_id, id"
        ),
        "log": log,
        "items": _rows(db, "SELECT * FROM items ORDER BY a, b")
        if _rows(db, "SELECT name FROM sqlite_master WHERE name = 'items'")
        else [],
    }


def _play(
    db: Path,
    scenario: Scenario,
    set_based: bool,
    monkeypatch: pytest.MonkeyPatch,
    staged: bool = False,
) -> Any:
    """Apply the scenario's pages, each published at once, or with `staged` staged first
    (as a snapshot's pages are) and published when the next page is another shape's."""
    if not set_based:
        monkeypatch.setattr(TableWriter, "_set_based", lambda self, names, batch: False)
    with Store(db) as store:
        store.ensure_table(ITEMS)
        shapes = [
            store.register_shape("tag:a", kind="tag", target="runs").id,
            store.register_shape("tag:b", kind="tag", target="runs").id,
            store.register_shape("items", kind="electric", target="items").id,
        ]
        store.set_keep_detached("items", True)
        for n, (index, page) in enumerate(scenario):
            store.apply(shapes[index], page, position=pos(f"{n}_0"), up_to_date=not staged)
            last_of_run = n + 1 == len(scenario) or scenario[n + 1][0] != index
            if staged and last_of_run:
                store.apply(shapes[index], [], position=pos(f"{n}_1"), up_to_date=True)
        leftovers = [
            name
            for (name,) in store.conn.execute(
                "SELECT name FROM sqlite_master WHERE name LIKE '\\_replica\\_staged\\_%' "
                "ESCAPE '\\'"
            )
            if store.conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
        ]
        assert leftovers == [], "published pages left staged rows behind"
        assert store.conn.execute("SELECT count(*) FROM _replica_pending").fetchone()[0] == 0
    monkeypatch.undo()
    return _snapshot(db)


ITEMS = TableSpec(
    name="items",
    columns=(
        Column("a", "INTEGER", not_null=True),
        Column("b", "TEXT", not_null=True),
        Column("k", "TEXT", not_null=True),
        Column("v", "REAL"),
    ),
    primary_key=("a", "b"),
    key_column="k",
)


def run(n: int, status: str = "QUEUED", tags: str = '["x"]', **extra: Any) -> RowChange:
    values = {
        "id": f"run_{n}",
        "internal_id": f"int_{n}",
        "task_identifier": "task",
        "status": status,
        "tags": tags,
        "updated_at": f"2026-01-01T00:00:{n % 60:02d}.000Z",
        **extra,
    }
    return RowChange("insert", f"int_{n}", values)


def item(n: int, v: float | int | None) -> RowChange:
    return RowChange("insert", f"k{n}", {"a": n, "b": str(n % 3), "k": f"k{n}", "v": v})


SIZE = BULK_THRESHOLD + 4

SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "new rows": lambda: [(0, [run(i) for i in range(SIZE)])],
    "identical, changed and new rows": lambda: [
        (0, [run(i) for i in range(SIZE)]),
        (0, [run(i, "EXECUTING" if i % 2 else "QUEUED") for i in range(5, SIZE + 5)]),
    ],
    "tags and partial columns": lambda: [
        (0, [run(i, tags='["x","y"]', number=i) for i in range(SIZE)]),
        (1, [run(i, tags='["y"]') for i in range(SIZE)]),  # another shape, no `number`
    ],
    "detached rows come back": lambda: [
        (0, [run(i) for i in range(SIZE)]),
        (0, [RowChange("delete", f"int_{i}") for i in range(3)]),
        (1, [run(i) for i in range(SIZE)]),
    ],
    "a key twice in one run of inserts": lambda: [
        (0, [*[run(i) for i in range(SIZE)], run(2, "EXECUTING")]),
    ],
    "electric table with a composite key and REAL affinity": lambda: [
        (2, [item(i, i) for i in range(SIZE)]),
        (2, [item(i, float(i) if i % 2 else i + 0.5) for i in range(SIZE)]),
        (2, [RowChange("delete", "k1")]),
        (2, [item(i, None) for i in range(SIZE)]),
    ],
}


@pytest.mark.parametrize("staged", [False, True], ids=["published at once", "staged first"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_bulk_path_writes_what_the_per_row_path_writes(
    name: str, staged: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = SCENARIOS[name]()
    per_row = _play(tmp_path / "per_row.db", scenario, False, monkeypatch, staged)
    bulk = _play(tmp_path / "bulk.db", scenario, True, monkeypatch, staged)
    assert bulk == per_row
    assert per_row["log"]  # the scenario did something


_statuses = st.sampled_from(["QUEUED", "EXECUTING", "COMPLETED"])
_tags = st.sampled_from(['["x"]', '["x","y"]', "[]"])
_page = st.lists(
    st.tuples(st.integers(0, 40), _statuses, _tags, st.sampled_from([None, 1, 2])),
    min_size=BULK_THRESHOLD,
    max_size=60,
)


@given(
    pages=st.lists(st.tuples(st.integers(0, 1), _page), min_size=1, max_size=4),
    staged=st.booleans(),
)
@hsettings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_bulk_path_matches_on_random_pages(
    pages: list[tuple[int, list[tuple[int, str, str, int | None]]]],
    staged: bool,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario: Scenario = [
        (shape, [run(n, status, tags, number=number) for n, status, tags, number in page])
        for shape, page in pages
    ]
    tmp = tmp_path_factory.mktemp("bulk")
    per_row = _play(tmp / "per_row.db", scenario, False, monkeypatch, staged)
    bulk = _play(tmp / "bulk.db", scenario, True, monkeypatch, staged)
    assert bulk == per_row


def _staged_rows(db: Path) -> int:
    return _rows(db, "SELECT count(*) AS n FROM _replica_staged_runs")[0]["n"]


def _page_of(first: int, count: int = BULK_THRESHOLD) -> list[RowChange]:
    return [run(n, "QUEUED", '["x"]') for n in range(first, first + count)]


def test_staged_rows_survive_a_crash_and_go_with_reset_forget_and_remove(
    tmp_path: Path,
) -> None:
    db = tmp_path / "staged.db"
    size = BULK_THRESHOLD
    with Store(db) as store:
        shape = store.register_shape("tag:a", kind="tag", target="runs").id
        store.apply(shape, _page_of(0), position=pos("0_0"), up_to_date=False)
        store.apply(shape, _page_of(size), position=pos("0_1"), up_to_date=False)
        # the process dies here: two pages staged as rows, nothing published
    assert _staged_rows(db) == 2 * size
    assert _rows(db, "SELECT count(*) AS n FROM runs")[0]["n"] == 0
    with Store(db) as store:
        store.apply(shape, _page_of(2 * size), position=pos("0_inf"), up_to_date=True)
        assert store.shape("tag:a").rows == 3 * size  # type: ignore[union-attr]
        assert _staged_rows(db) == 0

        # A must-refetch drops what the interrupted new snapshot had staged.
        store.apply(shape, _page_of(0), position=pos("1_0", "h2"), up_to_date=False, reset=True)
        store.apply(shape, _page_of(size), position=pos("1_1", "h2"), up_to_date=False)
        assert _staged_rows(db) == 2 * size
        store.apply(shape, [], position=pos("-1", "h3"), up_to_date=False, reset=True)
        assert _staged_rows(db) == 0

        store.apply(shape, _page_of(0), position=pos("2_0", "h3"), up_to_date=False)
        other = store.register_shape("tag:b", kind="tag", target="runs").id
        store.apply(other, _page_of(size), position=pos("0_0"), up_to_date=False)
        store.forget_position(shape)  # only this shape's staged rows go
        assert _staged_rows(db) == size
        store.remove_shape(other)
        assert _staged_rows(db) == 0
        third = store.register_shape("tag:c", kind="tag", target="runs").id
        store.apply(third, _page_of(0), position=pos("0_0"), up_to_date=False)
        store.forget_position()  # every shape's
        assert _staged_rows(db) == 0
        assert _rows(db, "SELECT count(*) AS n FROM _replica_pending")[0]["n"] == 0


def test_long_pages_go_in_statements_of_a_few_lengths(tmp_path: Path) -> None:
    """Rows left over after the full statements go in statements of 2^k rows: whatever the
    page lengths, a table's inserts come in a few statement shapes that are prepared once
    (not one new, large statement per page)."""
    statements: list[str] = []
    with Store(tmp_path / "r.db") as store:
        shape = store.register_shape("tag:a", kind="tag", target="runs").id
        store.conn.set_trace_callback(statements.append)
        first = 0
        for n, count in enumerate([1_303, 1_037, 999, 17]):
            store.apply(shape, _page_of(first, count), position=pos(f"{n}_0"), up_to_date=False)
            first += count
        store.apply(shape, [], position=pos("9_0"), up_to_date=True)
        store.conn.set_trace_callback(None)
        assert store.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == first
    lengths = {
        text.count("), (") + 1
        for text in statements
        if text.startswith('INSERT INTO main."_replica_staged_runs"')
    }
    assert lengths <= {500, 256, 128, 64, 32, 16, 8, 4, 2, 1}
    assert 500 in lengths
