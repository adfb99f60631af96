"""A tag feed's window survives a long stop: Trigger.dev forgets a handle's created-at window
about a week after making it, and a request with a forgotten handle gets every run with the
tags, ever. So a tag feed whose handle is older than --resume-within starts over with a
fresh window instead of resuming, and rows stay in place meanwhile (no flicker)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx

import replica
from replica.devserver import DevServer
from replica.engine import Engine
from replica.sources.subscriptions import sources_for
from replica.store import Store

from .conftest import Replica

LONG_AGO = "2020-01-01T00:00:00.000Z"


def _shape(db: Path) -> tuple[str | None, str | None, int]:
    conn = sqlite3.connect(db)
    try:
        found = conn.execute("SELECT handle, handle_since, generation FROM _replica_shapes")
        return found.fetchone() or (None, None, 0)
    finally:
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
    # ...and started over once older than --resume-within (3 days by default).
    conn = sqlite3.connect(replica_cli.db)
    with conn:
        conn.execute("UPDATE _replica_shapes SET handle_since = ?", (LONG_AGO,))
    conn.close()
    again = replica_cli.run("sync", "--tag", "user:1", "--once")
    assert again.returncode == 0, again.stderr
    assert "more than 3 days old; starting over with a fresh window" in again.stderr
    _, since_now, generation_now = _shape(replica_cli.db)
    assert since_now is not None and since_now > LONG_AGO and generation_now == generation + 1
    # The run was never let go of: the new snapshot replaced it in place.
    rows = replica_cli.query("SELECT id, detached_at FROM runs")
    assert rows == [(run_id, None)]
    changes = replica_cli.query("SELECT op FROM _replica_changes")
    assert changes == [("insert",)]


def test_a_feed_that_keeps_its_handle_too_long_starts_over_while_live(
    tmp_path: Path, devserver: DevServer
) -> None:
    devserver.trigger("send-email", {}, tags=["user:1"])
    feed = replica.tag("user:1", token=devserver.secret_key, api_url=devserver.url)
    db = tmp_path / "r.db"

    async def main() -> None:
        async with httpx.AsyncClient() as client:
            with Store(db) as store:
                engine = Engine(store, client, resume_within=1.0)
                syncing = asyncio.create_task(engine.run(sources_for([feed], client)))
                try:
                    # Each start over bumps the shape's generation; two prove it repeats.
                    while _shape(db)[2] < 2:  # noqa: ASYNC110 - another connection's view
                        await asyncio.sleep(0.1)
                finally:
                    engine.stop()
                    await syncing

    asyncio.run(asyncio.wait_for(main(), 120))
    assert _shape(db)[2] >= 2
