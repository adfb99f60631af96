"""Empty polls that only move the offset (Trigger.dev's native backend gives each one a new
offset) cost no write: the position is kept in memory and stored with the next change."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx

import replica
from replica.engine import Engine
from replica.protocol import StreamOptions
from replica.sources.subscriptions import sources_for
from replica.store import Store
from tests.support.scripted_server import Reply, Request, ScriptedServer, change, shape_reply

EMPTY_POLLS = 8
RELEASED = {"change": False}  # the change is served only once the test has looked


def _native_like(request: Request) -> Reply:
    params = request.params
    if params["offset"] == "-1":  # a snapshot that ends up to date, as the native one does
        return shape_reply([change(1, id="1")], handle="h", offset="100_0", done=True)
    polled = int(params["offset"].split("_")[0]) - 100
    if polled < EMPTY_POLLS:
        return shape_reply(handle="h", offset=f"{101 + polled}_0", cursor=str(polled), done=True)
    if polled == EMPTY_POLLS and RELEASED["change"]:
        return shape_reply([change(2, id="2")], handle="h", offset="200_0", cursor="x", done=True)
    return Reply(hang=True)


def _stored(db: Path) -> tuple[str, int]:
    conn = sqlite3.connect(db)
    try:
        offset = conn.execute('SELECT "offset" FROM _replica_shapes').fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        return offset, rows
    finally:
        conn.close()


def test_empty_polls_are_not_written_and_the_next_change_carries_the_position(
    tmp_path: Path,
) -> None:
    db = tmp_path / "r.db"
    RELEASED["change"] = False

    async def main() -> list[tuple[str, int]]:
        seen = []
        async with ScriptedServer(_native_like) as server, httpx.AsyncClient() as client:
            with Store(db) as store:
                # A short watchdog re-asks for the held poll once the change is released.
                engine = Engine(store, client, options=StreamOptions(live_timeout=0.5))
                feed = replica.electric(server.url, "items")
                syncing = asyncio.create_task(engine.run(sources_for([feed], client)))
                try:
                    while len(server.requests) < 1 + EMPTY_POLLS:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                    seen.append(_stored(db))  # after the empty polls
                    RELEASED["change"] = True
                    while _stored(db)[1] < 2:  # noqa: ASYNC110 - another connection's view
                        await asyncio.sleep(0.02)
                    seen.append(_stored(db))  # after the change
                finally:
                    engine.stop()
                    await syncing
        return seen

    after_empty, after_change = asyncio.run(asyncio.wait_for(main(), 120))
    assert after_empty == ("100_0", 1)  # every empty poll moved the offset; none was written
    assert after_change == ("200_0", 2)
