"""Live queries: a fresh result when a table the query reads changes, and only then;
bursts coalesced into one re-run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from replica import Replica
from replica.notify.live import QueryError, query_tables
from replica.store import Store
from replica.tables import Column, RowChange, TableSpec
from tests.support.waiting import PATIENCE

from .helpers import Writer, run, update


class Items:
    """A plain Electric table beside `runs`, to change something the query does not read."""

    def __init__(self, store: Store) -> None:
        spec = TableSpec(
            name="items",
            columns=(Column("id", "INTEGER", not_null=True), Column("title")),
            primary_key=("id",),
            key_column="id",
        )
        store.ensure_table(spec)
        self.store = store
        self.shape = store.register_shape("items", kind="electric", target="items").id
        self.n = 0

    def insert(self) -> None:
        self.n += 1
        self.store.apply(
            self.shape,
            [RowChange("insert", self.n, {"title": f"item {self.n}"})],
            position={"handle": "h", "offset": f"{self.n}_0"},
            up_to_date=True,
        )


async def next_result(results):
    return await asyncio.wait_for(results.__anext__(), PATIENCE)


@pytest.mark.anyio
async def test_reruns_on_changes_to_tables_it_reads_only(
    db: Replica, writer: Writer, store: Store
) -> None:
    items = Items(store)
    live = db.watch_query("SELECT id, status FROM runs ORDER BY id", debounce=0.01)
    assert live.tables == {"runs"} and not live.every_commit
    results = live.__aiter__()
    assert await next_result(results) == []
    writer.commit(run(1))
    assert await next_result(results) == [{"id": "run_1", "status": "QUEUED"}]
    # The query waits for its next result while items change: it must not re-run (a re-run
    # would answer at once, with the same rows). Nothing happening has no state to wait
    # for, so this gives it a moment; a slow machine can only make the check weaker.
    pending = asyncio.ensure_future(next_result(results))
    items.insert()
    items.insert()
    answered, _ = await asyncio.wait({pending}, timeout=0.4)
    assert not answered and live.executions == 2  # items changed, runs did not: no re-run
    writer.commit(update(1, status="EXECUTING"))
    assert await pending == [{"id": "run_1", "status": "EXECUTING"}]
    assert live.executions == 3
    await results.aclose()


@pytest.mark.anyio
async def test_bursts_are_coalesced(db: Replica, writer: Writer) -> None:
    live = db.watch_query("SELECT count(*) AS n FROM runs", debounce=0.2)
    results = live.__aiter__()
    assert await next_result(results) == [{"n": 0}]
    for n in range(20):
        writer.commit(run(n))
    assert await next_result(results) == [{"n": 20}]
    assert live.executions == 2  # one re-run for twenty commits
    await results.aclose()


def test_dependencies(db: Replica) -> None:
    tags = db.watch_query("SELECT tag, count(*) FROM run_tags GROUP BY tag")
    assert tags.tables == {"runs"} and not tags.every_commit  # run_tags follows runs
    cte = db.watch_query(
        "WITH failed AS (SELECT * FROM runs WHERE status = 'FAILED') SELECT count(*) FROM failed"
    )
    assert cte.tables == {"runs"} and not cte.every_commit
    shapes = db.watch_query("SELECT state FROM _replica_shapes")
    assert shapes.every_commit  # not in the change log: any commit re-runs it
    assert query_tables("SELECT * FROM json_each('[1]')") == set()


def test_bad_queries_are_refused_at_once(db: Replica) -> None:
    with pytest.raises(QueryError, match="no such table"):
        db.watch_query("SELECT * FROM nowhere")
    with pytest.raises(QueryError, match="SELECT"):
        db.watch_query("DELETE FROM runs")
    with pytest.raises(QueryError, match="one statement"):
        db.watch_query("SELECT 1; SELECT 2")


def test_plain_iteration_outside_async_code(db: Replica, writer: Writer, db_path: Path) -> None:
    import threading
    import time

    def later() -> None:
        time.sleep(0.3)
        writer.commit(run(1))

    thread = threading.Thread(target=later)
    thread.start()
    seen = []
    for rows in db.watch_query("SELECT id FROM runs", debounce=0.01):
        seen.append(rows)
        if len(seen) == 2:
            break
    thread.join()
    assert seen == [[], [{"id": "run_1"}]]
