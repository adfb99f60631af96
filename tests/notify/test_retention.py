"""Change-log retention: pruned below every consumer's cursor and past the maximum age;
a reader that fell behind the retained log gets a `reset`, never a silent gap."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from replica import Change, Replica, ReplicaError
from replica.notify.retention import Retention, parse_duration
from replica.store import Store
from tests.support.waiting import listen_until, wait_for_async

from .helpers import Writer, log_entries, run, update

LATER = datetime.now(timezone.utc) + timedelta(hours=2)  # everything is past the grace hour
MUCH_LATER = datetime.now(timezone.utc) + timedelta(days=8)  # ... and past the 7 days


def seqs(db_path: Path) -> list[int]:
    return [e["seq"] for e in log_entries(db_path)]


def test_nothing_young_is_pruned(store: Store, writer: Writer, db_path: Path) -> None:
    writer.commit(run(1), run(2))
    assert Retention().prune(store.conn).deleted == 0
    assert seqs(db_path) == [1, 2]


def test_without_consumers_the_grace_period_alone_protects(
    store: Store, writer: Writer, db_path: Path
) -> None:
    writer.commit(run(1), run(2))
    result = Retention().prune(store.conn, now=LATER)
    assert (result.deleted, result.pruned_through) == (2, 2) and seqs(db_path) == []
    writer.commit(run(3))
    assert seqs(db_path) == [3]  # sequence numbers are never reused


def test_pruned_below_every_consumers_cursor(
    store: Store, writer: Writer, db_path: Path, db: Replica
) -> None:
    db.on_change("runs", consumer="fast", start="beginning")(lambda ch: None)
    with Replica(db_path) as elsewhere:  # a consumer whose listener is not running now
        elsewhere.on_change("runs", consumer="slow", start=1)(lambda ch: None)
    writer.commit(run(1), run(2), run(3))

    def cursors() -> dict[str, int]:
        return {c.name: c.last_seq for c in db.consumers()}

    listen_until(db, lambda: cursors()["fast"] == 3, what="the fast consumer")
    assert cursors() == {"fast": 3, "slow": 1}
    result = Retention().prune(store.conn, now=LATER)
    assert result.pruned_through == 1 and seqs(db_path) == [2, 3]


def test_past_the_maximum_age_consumers_do_not_matter(
    store: Store, writer: Writer, db_path: Path, db: Replica
) -> None:
    db.on_change("runs", consumer="stuck", start="beginning")(lambda ch: None)  # never runs
    writer.commit(run(1), run(2))
    assert Retention().prune(store.conn, now=LATER).deleted == 0  # held for "stuck"
    assert Retention(max_age=timedelta(days=7)).prune(store.conn, now=MUCH_LATER).deleted == 2


def test_a_consumer_that_fell_behind_gets_a_reset_then_the_rest(
    store: Store, writer: Writer, db_path: Path, db: Replica
) -> None:
    seen: list[Change] = []
    db.on_change("runs", consumer="late", start="beginning")(seen.append)
    writer.commit(run(1), run(2))
    Retention().prune(store.conn, now=MUCH_LATER)
    writer.commit(update(1, status="EXECUTING"))
    listen_until(db, lambda: len(seen) == 2, what="the reset and the update")
    assert [(c.op, c.seq) for c in seen] == [("reset", 2), ("update", 3)]
    reset = seen[0]
    assert reset.table is None and reset.key is None and reset.row is None
    assert db.consumers()[0].last_seq == 3


def test_resets_reach_filtered_and_anonymous_callbacks_too(
    store: Store, writer: Writer, db: Replica
) -> None:
    seen: list[str] = []
    db.on_change("runs", where="status = 'FAILED'", ops=["delete"], start="beginning")(
        lambda ch: seen.append(ch.op)
    )
    writer.commit(run(1))
    Retention().prune(store.conn, now=LATER)
    listen_until(db, lambda: seen, what="the reset")
    assert seen == ["reset"]


def test_pruning_is_scheduled_by_time_and_volume() -> None:
    retention = Retention(interval=3600, batch_changes=100)
    assert retention.due(1)  # the first commit after start
    retention._last_run = time.monotonic()
    assert not retention.due(50)
    assert retention.due(50)  # 100 changes since the last run


def test_large_backlogs_are_pruned_in_chunks(store: Store, writer: Writer, db_path: Path) -> None:
    writer.commit(*(run(n) for n in range(50)))
    retention = Retention(chunk=20, max_rows=40)
    first = retention.prune(store.conn, now=LATER)
    assert (first.deleted, first.pruned_through) == (40, 40)
    second = retention.prune(store.conn, now=LATER)
    assert (second.deleted, second.pruned_through) == (10, 50)


def test_durations() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    with pytest.raises(ReplicaError, match="duration"):
        parse_duration("forever")


def test_max_age_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICA_CHANGES_MAX_AGE", "2d")
    assert Retention().max_age == timedelta(days=2)


@pytest.mark.anyio
async def test_the_engine_prunes_as_it_syncs(devserver, store: Store, db_path: Path) -> None:
    import asyncio

    import httpx

    import replica
    from replica.engine import Engine
    from replica.sources.subscriptions import sources_for

    run_id = devserver.trigger("t", {}, tags=["user:1"])
    retention = Retention(min_age=timedelta(0), interval=0)  # prune after every commit
    async with httpx.AsyncClient(timeout=10) as client:
        sources = sources_for(
            [replica.tag("user:1", token=devserver.secret_key, api_url=devserver.url)], client
        )
        engine = Engine(store, client, retention=retention)
        task = asyncio.create_task(engine.run(sources))

        def pruned_through() -> int:
            # Read on a connection of its own: the store's is the engine writer's, in use on
            # its thread (a query on it from here could collide with a write).
            with contextlib.closing(sqlite3.connect(db_path)) as reader:
                rows = reader.execute("SELECT pruned_through FROM _replica_log_state")
                return rows.fetchall()[0][0]

        await wait_for_async(lambda: pruned_through() >= 1, what="the insert to be pruned")
        assert pruned_through() == 1  # the snapshot's insert, pruned after commit
        devserver.start_run(run_id)
        devserver.complete_run(run_id, {"ok": True})
        await wait_for_async(lambda: pruned_through() >= 3, what="the changes to be pruned")
        through = pruned_through()
        engine.stop()
        await task
    assert through >= 3  # the insert, the start and the completion: nobody needs them
    assert [e["seq"] for e in log_entries(db_path)] == []
