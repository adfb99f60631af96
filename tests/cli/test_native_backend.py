"""replica against Trigger.dev's native realtime backend (the emulator's `native` mode):
its snapshot is downloaded once, and runs that age out of its moving window are let go of
instead of staying in the replica as they were last seen."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import replica
from replica import engine
from replica.devserver import DevServer
from replica.engine import Engine
from replica.sources import subscriptions
from replica.sources.subscriptions import sources_for
from replica.store import Store

from .conftest import Replica


def test_the_snapshot_is_downloaded_once(replica_cli: Replica, devserver_factory) -> None:
    server: DevServer = devserver_factory(realtime_backend="native")
    replica_cli.env.update(TRIGGER_SECRET_KEY=server.secret_key, TRIGGER_API_URL=server.url)
    runs = {server.trigger("send-email", {}, tags=["user:1"]) for _ in range(3)}
    log = replica_cli.cwd / "sync.log"
    with log.open("w") as stderr:
        sync = subprocess.Popen(
            [sys.executable, "-m", "replica", "sync", "--tag", "user:1", "--debug"],
            cwd=replica_cli.cwd,
            env=replica_cli.env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        replica_cli.wait_for(lambda: "live=true" in log.read_text(), what="a live poll")
    finally:
        sync.terminate()
        sync.wait(60)
    assert {r for (r,) in replica_cli.query("SELECT id FROM runs")} == runs
    # Its offset=-1 reply ends up to date: the next request is live, not one more non-live
    # request, which the native backend would answer with the whole snapshot again.
    requests = [line for line in log.read_text().splitlines() if "GET http" in line]
    assert "live=true" not in requests[0] and "live=true" in requests[1], requests[:2]


def test_runs_that_age_out_of_the_moving_window_are_let_go_of(
    tmp_path: Path, devserver_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window of 2 s (the server's max age) that moves on every poll, and a client that
    # looks often and allows no slack: the run ages out in seconds instead of a day.
    server: DevServer = devserver_factory(
        realtime_backend="native",
        created_at_max_age=2.0,
        created_at_bucket=0,
        long_poll_timeout=0.5,
    )
    monkeypatch.setattr(engine, "LEFT_BEHIND_EVERY", 0.1)
    monkeypatch.setattr(subscriptions, "WINDOW_SLACK", 0.0)
    run_id = server.trigger("send-email", {}, tags=["user:1"])
    feed = replica.tag("user:1", token=server.secret_key, api_url=server.url)
    db = tmp_path / "r.db"

    def detached() -> str | None:
        conn = sqlite3.connect(db)
        try:
            row = conn.execute("SELECT detached_at FROM runs WHERE id = ?", (run_id,)).fetchone()
            return row[0] if row else None
        finally:
            conn.close()

    async def main() -> None:
        async with httpx.AsyncClient() as client:
            with Store(db) as store:
                sync = Engine(store, client)
                syncing = asyncio.create_task(sync.run(sources_for([feed], client)))
                try:
                    while detached() is None:  # noqa: ASYNC110 - another connection's view
                        await asyncio.sleep(0.1)
                finally:
                    sync.stop()
                    await syncing

    asyncio.run(asyncio.wait_for(main(), 120))
    assert detached() is not None
