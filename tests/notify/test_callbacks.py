"""In-process callbacks: fired after commit, with the change; sync and async functions;
ops filters; start positions; the engine's on_commit hook waking listeners at once."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

import replica
from replica import Change, Replica, ReplicaError
from replica.devserver import DevServer
from replica.engine import Engine
from replica.sources.subscriptions import sources_for
from replica.store import Store
from tests.support.task_models import EmailRun, ReportRun
from tests.support.waiting import PATIENCE, alisten_until, listen_until

from .helpers import Writer, log_entries, run, update


def commit_later(
    writer: Writer, *pages, delay: float = 0.1, after: threading.Thread | None = None
) -> threading.Thread:
    """Commit pages (tuples of changes) from another thread, the way the sync would: a
    little later (once the thread `after` has finished, if given), while a listener runs."""

    def go() -> None:
        if after is not None:
            after.join()
        time.sleep(delay)
        for page in pages:
            writer.commit(*page)

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_a_sync_callback_gets_each_change_after_it_commits(
    db: Replica, writer: Writer, db_path: Path
) -> None:
    seen: list[Change] = []
    visible: list[bool] = []
    threads: list[threading.Thread] = []

    @db.on_change("runs")
    def on_run(change: Change) -> None:
        # Another connection already sees the row: the callback runs after the commit.
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        found = conn.execute("SELECT status FROM runs WHERE id = ?", (change.key,)).fetchone()
        conn.close()
        visible.append(found is not None)
        threads.append(threading.current_thread())
        seen.append(change)
        if len(seen) == 3:
            db.stop()

    thread = commit_later(writer, (run(1),), (update(1, status="EXECUTING"), run(2)))
    db.listen(timeout=PATIENCE)  # the callback stops it
    thread.join()
    assert [(c.op, c.key) for c in seen] == [
        ("insert", "run_1"),
        ("update", "run_1"),
        ("insert", "run_2"),
    ]
    assert all(visible)
    assert threads == [threading.current_thread()] * 3  # listen() runs them on its thread
    update_change = seen[1]
    assert update_change.changed == ("status",) and update_change.old == {"status": "QUEUED"}
    assert update_change.row["status"] == "EXECUTING"
    assert update_change.shape == "tag:a" and update_change.shape_id == writer.shape
    assert [c.seq for c in seen] == [e["seq"] for e in log_entries(db_path)]


@pytest.mark.anyio
async def test_async_and_sync_callbacks_under_alisten(db: Replica, writer: Writer) -> None:
    async_seen: list[tuple[str, int]] = []
    sync_seen: list[tuple[str, int]] = []

    @db.on_change("runs", ops=["update"])
    async def on_update(change: Change) -> None:
        async_seen.append((change.op, change.seq))
        await asyncio.sleep(0)

    @db.on_change(ops="insert")
    def on_insert(change: Change) -> None:
        sync_seen.append((change.op, change.seq))

    thread = commit_later(writer, (run(1),), (update(1, status="EXECUTING"),), (run(2),))
    thread2 = commit_later(writer, (update(2, status="FAILED"),), delay=0.5, after=thread)
    await alisten_until(
        db, lambda: len(async_seen) == 2 and len(sync_seen) == 2, what="both callbacks"
    )
    thread.join()
    thread2.join()
    assert async_seen == [("update", 2), ("update", 4)]
    assert sync_seen[:2] == [("insert", 1), ("insert", 3)]


def test_a_callback_reads_the_run_with_the_model_of_its_task(db: Replica, writer: Writer) -> None:
    typed: list[tuple[str, type]] = []

    @db.on_change("runs", start="beginning")
    def on_run(change: Change) -> None:
        run = change.run(model=EmailRun | ReportRun, other="skip")
        if run is not None:
            typed.append((run.id, type(run)))
        if change.key == "run_3":
            db.stop()

    writer.commit(
        run(1, task_identifier="send-email", payload='{"to": "a@example.com"}'),
        run(2, task_identifier="render-video"),  # no model: skipped
        run(3, task_identifier="generate-report", payload='{"reportId": "rep_1"}'),
    )
    db.listen(timeout=PATIENCE)  # the callback stops it
    assert typed == [("run_1", EmailRun), ("run_3", ReportRun)]


def test_start_positions(db: Replica, writer: Writer) -> None:
    writer.commit(run(1))
    writer.commit(run(2))
    everything: list[int] = []
    new_only: list[int] = []
    from_two: list[int] = []
    db.on_change("runs", start="beginning")(lambda c: everything.append(c.seq))
    db.on_change("runs")(lambda c: new_only.append(c.seq))
    db.on_change("runs", start=1)(lambda c: from_two.append(c.seq))
    thread = commit_later(writer, (run(3),))
    listen_until(db, lambda: len(everything) == 3 and new_only and len(from_two) == 2, what="seq 3")
    thread.join()
    assert everything == [1, 2, 3] and new_only == [3] and from_two == [2, 3]


def test_listen_continues_where_the_previous_call_stopped(db: Replica, writer: Writer) -> None:
    seen: list[int] = []
    db.on_change("runs")(lambda c: seen.append(c.seq))
    writer.commit(run(1))  # after registration: delivered by the first listen
    listen_until(db, lambda: len(seen) == 1, what="the first change")
    writer.commit(run(2))  # while nobody listens: delivered by the next one
    listen_until(db, lambda: len(seen) == 2, what="the second change")
    assert seen == [1, 2]


def test_registration_errors_are_immediate_and_clear(db: Replica) -> None:
    with pytest.raises(ReplicaError, match="unknown ops"):
        db.on_change("runs", ops=["upsert"])
    with pytest.raises(ReplicaError, match="needs a consumer"):
        db.on_change("runs", transactional=True)
    with pytest.raises(ReplicaError, match="needs a table"):
        db.on_change(where="status = 'FAILED'")
    with pytest.raises(ReplicaError, match="follows runs"):
        db.on_change("run_tags")
    with pytest.raises(ReplicaError, match="start="):
        db.on_change("runs", start="middle")  # type: ignore[arg-type]
    db.on_change("runs", consumer="once")(print)
    with pytest.raises(ReplicaError, match="already registered"):
        db.on_change("runs", consumer="once")(print)


def test_listen_needs_callbacks_and_no_running_loop(db: Replica) -> None:
    with pytest.raises(ReplicaError, match="nothing to listen for"):
        db.listen(timeout=0.1)
    db.on_change("runs")(print)

    async def inside() -> None:
        db.listen(timeout=0.1)

    with pytest.raises(ReplicaError, match="alisten"):
        asyncio.run(inside())


@pytest.mark.anyio
async def test_the_engine_hook_wakes_listeners_in_the_syncing_process(
    devserver: DevServer, db_path: Path, store: Store
) -> None:
    # No file events, and a poll that would not come before an hour: only the engine's
    # on_commit hook can wake us.
    db = Replica(db_path, poll_interval=3600, watch_files=False)
    seen: list[tuple[str, str]] = []
    arrived = asyncio.Event()
    run_id = devserver.trigger("email", {"to": "a@b.c"}, tags=["user:1"])

    @db.on_change("runs", start="beginning")
    async def on_run(change: Change) -> None:
        seen.append((change.op, change.row["status"]))
        arrived.set()

    async with httpx.AsyncClient(timeout=10) as client:
        sources = sources_for(
            [replica.tag("user:1", token=devserver.secret_key, api_url=devserver.url)], client
        )
        engine = Engine(store, client, on_commit=db.notify_committed)
        syncing = asyncio.create_task(engine.run(sources))
        listening = asyncio.create_task(db.alisten(timeout=PATIENCE))
        await asyncio.wait_for(arrived.wait(), PATIENCE)
        arrived.clear()
        devserver.start_run(run_id)
        await asyncio.wait_for(arrived.wait(), PATIENCE)
        engine.stop()
        db.stop()
        await asyncio.gather(syncing, listening)
    db.close()
    assert seen == [("insert", "QUEUED"), ("update", "EXECUTING")]  # woken by the hook
