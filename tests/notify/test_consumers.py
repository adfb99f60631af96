"""Durable consumers: cursors that survive restarts, retries and parking, exactly-once
delivery in the callback's own transaction, one listener per consumer name."""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from replica import Change, Replica, ReplicaError
from replica.notify.consumers import RetryPolicy
from tests.support.waiting import PATIENCE, alisten_until, listen_until, wait_for

from .helpers import Writer, run, update

FAST = RetryPolicy(attempts=3, initial=0.05, factor=2.0)


def listen_in_thread(db: Replica) -> threading.Thread:
    """`db.listen()` on a thread of its own, until `db.stop()` (or `PATIENCE`)."""
    thread = threading.Thread(target=db.listen, kwargs={"timeout": PATIENCE}, daemon=True)
    thread.start()
    return thread


def test_a_consumer_resumes_after_its_last_acknowledged_change(
    db_path: Path, writer: Writer
) -> None:
    seen: list[int] = []
    writer.commit(run(1), run(2))
    with Replica(db_path, poll_interval=0.05) as first:
        first.on_change("runs", consumer="c", start="beginning")(lambda ch: seen.append(ch.seq))
        listen_until(first, lambda: len(seen) == 2, what="the first two changes")
        assert [c.last_seq for c in first.consumers()] == [2]
    writer.commit(update(1, status="EXECUTING"))  # nobody listening
    writer.commit(run(3))
    with Replica(db_path, poll_interval=0.05) as second:
        # "beginning" only places a new consumer; this one continues where it stopped.
        second.on_change("runs", consumer="c", start="beginning")(lambda ch: seen.append(ch.seq))
        listen_until(second, lambda: len(seen) == 4, what="the two new changes")
    assert seen == [1, 2, 3, 4]


def test_filtered_out_changes_move_the_cursor_too(db_path: Path, writer: Writer) -> None:
    seen: list[str] = []
    with Replica(db_path, poll_interval=0.05) as db:
        db.on_change("runs", where="status = 'FAILED'", consumer="f", start="beginning")(
            lambda ch: seen.append(ch.key)
        )
        writer.commit(run(1), run(2), run(3, status="FAILED"), run(4), run(5))
        listen_until(db, lambda: seen, what="the failed run")
        assert seen == ["run_3"]
        assert db.consumers()[0].last_seq == 5


def test_a_failing_callback_is_retried_then_parked_and_others_go_on(
    db_path: Path, writer: Writer, db: Replica
) -> None:
    attempts: list[float] = []
    healthy: list[int] = []

    @db.on_change("runs", consumer="flaky", retry=FAST)
    def flaky(change: Change) -> None:
        if change.key == "run_2":
            attempts.append(time.monotonic())
            raise RuntimeError("mail server down")

    db.on_change("runs", consumer="healthy")(lambda ch: healthy.append(ch.seq))
    thread = listen_in_thread(db)
    writer.commit(run(1))
    writer.commit(run(2))
    status = wait_for(
        lambda: [c for c in db.consumers() if c.name == "flaky" and c.state == "parked"],
        what="the consumer to be parked",
    )[0]
    # The sync is unaffected, and so is the other consumer: it gets every later change.
    writer.commit(run(3))
    wait_for(lambda: healthy == [1, 2, 3], what="the healthy consumer")
    db.stop()
    thread.join()
    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09  # back-off: 0.05 s, then 0.1 s
    assert status.last_seq == 1 and status.failed_seq == 2 and status.attempts == 3
    assert status.last_error == "RuntimeError: mail server down"

    # replica status shows it, as a table and in --json.
    table = replica_cli("status", "--db", str(db_path))
    assert "flaky" in table and "parked" in table and "mail server down" in table
    entries = json.loads(replica_cli("status", "--db", str(db_path), "--json"))
    parked = [e for e in entries if e.get("consumer") == "flaky"]
    assert parked and parked[0]["kind"] == "consumer" and parked[0]["state"] == "parked"
    assert parked[0]["last_error"] == "RuntimeError: mail server down"
    assert parked[0]["failed_seq"] == 2 and parked[0]["last_seq"] == 1
    assert entries[0]["kind"] == "tag"  # shapes first, as before


def replica_cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "replica", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_parked_consumer_resumes_when_told(db_path: Path, writer: Writer, db: Replica) -> None:
    broken = {"run_2"}
    seen: list[str] = []

    @db.on_change("runs", consumer="c", retry=RetryPolicy(attempts=1))
    def handle(change: Change) -> None:
        if change.key in broken:
            raise ValueError("bad")
        seen.append(change.key)

    thread = listen_in_thread(db)
    writer.commit(run(1))
    writer.commit(run(2))
    writer.commit(run(3))
    wait_for(lambda: db.consumers()[0].state == "parked", what="parking")
    assert seen == ["run_1"]
    broken.clear()  # "the fix is deployed"
    with Replica(db_path) as other:  # resuming works from any process
        other.resume_consumer("c")
    wait_for(lambda: seen == ["run_1", "run_2", "run_3"], what="delivery after resume")
    db.stop()
    thread.join()


def test_resume_with_skip_passes_over_the_failing_change(
    db_path: Path, writer: Writer, db: Replica
) -> None:
    seen: list[str] = []

    @db.on_change("runs", consumer="c", retry=RetryPolicy(attempts=1))
    def handle(change: Change) -> None:
        if change.key == "run_2":
            raise ValueError("poison")
        seen.append(change.key)

    writer.commit(run(1))
    writer.commit(run(2))
    writer.commit(run(3))
    thread = listen_in_thread(db)
    # start="end" was taken at registration, before these commits: all three are new.
    wait_for(lambda: db.consumers()[0].state == "parked", what="parking")
    db.resume_consumer("c", skip=True)
    wait_for(lambda: seen == ["run_1", "run_3"], what="delivery after skipping")
    db.stop()
    thread.join()


def test_a_new_listener_retries_a_parked_consumer(db_path: Path, writer: Writer) -> None:
    with Replica(db_path, poll_interval=0.05) as first:

        @first.on_change("runs", consumer="c", retry=RetryPolicy(attempts=1))
        def broken(change: Change) -> None:
            raise RuntimeError("bug")

        writer.commit(run(1))
        listen_until(first, lambda: first.consumers()[0].state == "parked", what="parking")
    fixed: list[int] = []
    with Replica(db_path, poll_interval=0.05) as second:
        second.on_change("runs", consumer="c")(lambda ch: fixed.append(ch.seq))
        listen_until(second, lambda: fixed, what="the retried change")
        assert fixed == [1] and second.consumers()[0].state == "ok"


def test_anonymous_callbacks_are_retried_then_parked_in_memory(
    db: Replica, writer: Writer, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    others: list[int] = []

    @db.on_change("runs", retry=FAST)
    def failing(change: Change) -> None:
        calls.append(change.seq)
        raise RuntimeError("nope")

    db.on_change("runs")(lambda ch: others.append(ch.seq))
    writer.commit(run(1))
    writer.commit(run(2))
    parked = "(3 attempts), parked"  # the error it logs
    listen_until(db, lambda: others == [1, 2] and parked in caplog.text, what="parking")
    assert calls == [1, 1, 1]  # parked on the first change: three attempts, then nothing
    assert others == [1, 2]


def test_transactional_callbacks_commit_with_the_acknowledgement(
    db_path: Path, writer: Writer, db: Replica
) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE alerts (seq INTEGER PRIMARY KEY, run_id TEXT)")
    conn.commit()
    conn.close()
    failures = {"left": 1}

    @db.on_change("runs", consumer="alerts", transactional=True, retry=FAST)
    def alert(change: Change, tx: sqlite3.Connection) -> None:
        tx.execute("INSERT INTO alerts (seq, run_id) VALUES (?, ?)", (change.seq, change.key))
        if change.key == "run_2" and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("after writing: must roll back")  # the insert goes too

    writer.commit(run(1))
    writer.commit(run(2))
    writer.commit(run(3))
    listen_until(db, lambda: db.consumers()[0].last_seq == 3, what="the third change")
    rows = db.query("SELECT seq, run_id FROM alerts ORDER BY seq")
    assert rows == [
        {"seq": 1, "run_id": "run_1"},
        {"seq": 2, "run_id": "run_2"},
        {"seq": 3, "run_id": "run_3"},
    ]
    assert db.consumers()[0].last_seq == 3


@pytest.mark.anyio
async def test_async_transactional_callbacks(db_path: Path, writer: Writer, db: Replica) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE seen (seq INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()

    @db.on_change("runs", consumer="a", transactional=True)
    async def record(change: Change, tx: sqlite3.Connection) -> None:
        tx.execute("INSERT INTO seen VALUES (?)", (change.seq,))

    @db.on_change("runs", consumer="b", transactional=True, retry=RetryPolicy(attempts=1))
    def commits_itself(change: Change, tx: sqlite3.Connection) -> None:
        tx.execute("COMMIT")  # not allowed: replica commits, with the acknowledgement

    writer.commit(run(1), run(2))
    await alisten_until(
        db,
        lambda: (
            {(c.name, c.state, c.last_seq) for c in db.consumers()}
            == {("a", "ok", 2), ("b", "parked", 0)}
        ),
        what="one consumer through, the other parked",
    )
    assert db.query("SELECT seq FROM seen") == [{"seq": 1}, {"seq": 2}]
    status = {c.name: c for c in db.consumers()}
    assert status["a"].last_seq == 2
    assert status["b"].state == "parked" and "must not commit" in (status["b"].last_error or "")


def test_one_listener_per_consumer_name(db_path: Path, writer: Writer) -> None:
    first_seen: list[int] = []
    second_seen: list[int] = []
    first = Replica(db_path, poll_interval=0.05)
    second = Replica(db_path, poll_interval=0.05)
    first.on_change("runs", consumer="c")(lambda ch: first_seen.append(ch.seq))
    second.on_change("runs", consumer="c")(lambda ch: second_seen.append(ch.seq))
    one = listen_in_thread(first)
    wait_for(lambda: first.consumers()[0].owner, what="the first listener's lease")
    two = listen_in_thread(second)
    writer.commit(run(1))
    writer.commit(run(2))
    wait_for(lambda: first_seen == [1, 2], what="the first listener")
    assert second_seen == []  # standing by
    first.stop()  # releases the lease: the second takes over where the first stopped
    one.join()
    writer.commit(run(3))
    wait_for(lambda: second_seen == [3], what="the second listener to take over")
    second.stop()
    two.join()
    first.close()
    second.close()


def test_consumer_admin(db: Replica) -> None:
    db.on_change("runs", consumer="gone")(print)
    assert [c.name for c in db.consumers()] == ["gone"]
    assert db.drop_consumer("gone") and db.consumers() == []
    with pytest.raises(ReplicaError, match="no consumer"):
        db.resume_consumer("gone")
