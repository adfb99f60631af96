"""A tag feed's window survives a long stop: Trigger.dev forgets a handle's created-at window
two weeks after its last use, and a request with a forgotten handle gets every run with the
tags, ever. So a tag feed whose handle was not used for longer than --resume-within starts
over with a fresh window instead of resuming, and rows stay in place meanwhile (no flicker)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from replica.devserver import DevServer

from .conftest import Replica

LONG_AGO = "2020-01-01T00:00:00.000Z"


def _shape(db: Path) -> tuple[str | None, str | None, int]:
    conn = sqlite3.connect(db)
    try:
        found = conn.execute("SELECT handle, handle_since, generation FROM _replica_shapes")
        return found.fetchone() or (None, None, 0)
    finally:
        conn.close()


def _set_times(db: Path, **times: str) -> None:
    conn = sqlite3.connect(db)
    with conn:
        for column, value in times.items():
            conn.execute(f"UPDATE _replica_shapes SET {column} = ?", (value,))
    conn.close()


def test_an_old_position_is_not_resumed(replica_cli: Replica) -> None:
    run_id = replica_cli.server.trigger("send-email", {}, tags=["user:1"])
    assert replica_cli.run("sync", "--tag", "user:1", "--once").returncode == 0
    handle, since, generation = _shape(replica_cli.db)
    assert handle and since and since > LONG_AGO
    # A restart days later: the same position is resumed while young enough...
    kept = replica_cli.run("sync", "--tag", "user:1", "--once")
    assert kept.returncode == 0 and "starting over" not in kept.stderr
    assert _shape(replica_cli.db) == (handle, since, generation)
    # A handle made long ago but used lately (a sync that ran all along) is resumed...
    _set_times(replica_cli.db, handle_since=LONG_AGO)
    used = replica_cli.run("sync", "--tag", "user:1", "--once")
    assert used.returncode == 0 and "starting over" not in used.stderr
    # ...and one not used for longer than --resume-within (3 days by default) starts over.
    _set_times(replica_cli.db, handle_since=LONG_AGO, last_up_to_date=LONG_AGO)
    again = replica_cli.run("sync", "--tag", "user:1", "--once")
    assert again.returncode == 0, again.stderr
    assert "last used more than 3 days ago; starting over with a fresh window" in again.stderr
    _, since_now, generation_now = _shape(replica_cli.db)
    assert since_now is not None and since_now > LONG_AGO and generation_now == generation + 1
    # The run was never let go of: the new snapshot replaced it in place.
    rows = replica_cli.query("SELECT id, detached_at FROM runs")
    assert rows == [(run_id, None)]
    changes = replica_cli.query("SELECT op FROM _replica_changes")
    assert changes == [("insert",)]


def test_a_forgotten_window_is_never_adopted(replica_cli: Replica, devserver_factory) -> None:
    server: DevServer = devserver_factory()
    replica_cli.env.update(TRIGGER_SECRET_KEY=server.secret_key, TRIGGER_API_URL=server.url)
    old = server.trigger("send-email", {}, tags=["user:1"])
    server.advance_clock(3 * 24 * 3600)  # three days later
    new = server.trigger("send-email", {}, tags=["user:1"])
    sync = ("sync", "--tag", "user:1", "--created-at", "1h", "--once")
    assert replica_cli.run(*sync).returncode == 0
    assert replica_cli.query("SELECT id FROM runs") == [(new,)]
    # Weeks pass: the server forgets the handle's window, and the stored position ages.
    server.forget_handle_windows()
    _set_times(replica_cli.db, handle_since=LONG_AGO, last_up_to_date=LONG_AGO)
    again = replica_cli.run(*sync)
    assert again.returncode == 0, again.stderr
    # Resuming would have adopted a feed of every run with the tag, ever (`old` too).
    assert replica_cli.query("SELECT id FROM runs") == [(new,)]
    assert old not in again.stdout + again.stderr
