"""Run feeds stop when their run is done, as the SDK's `subscribeToRun` does: 30 s after the
run finished nothing more is polled (no realtime slot held), `status` says `complete`, and a
restart does not subscribe again. `--no-stop-on-completion` keeps following."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import httpx
import pytest

import replica
from replica.devserver import DevServer
from replica.engine import Engine
from replica.sources import subscriptions
from replica.sources.subscriptions import sources_for
from replica.store import Store

from .conftest import Replica


def _long_ago() -> str:
    """A finish time whose 30 s grace period is over."""
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _states(replica_cli: Replica) -> list[str]:
    status = replica_cli.run("status", "--json")
    if status.returncode != 0:
        return []  # no database yet
    return [s["state"] for s in json.loads(status.stdout)]


def test_a_finished_run_is_complete_and_never_polled_again(
    replica_cli: Replica, devserver_factory
) -> None:
    server: DevServer = devserver_factory()
    replica_cli.env.update(TRIGGER_SECRET_KEY=server.secret_key, TRIGGER_API_URL=server.url)
    run_id = server.trigger("send-email", {})
    server.set_status(run_id, "COMPLETED_SUCCESSFULLY", completedAt=_long_ago())
    # Without --once the sync ends by itself: its only feed is done.
    sync = replica_cli.start("sync", "--run", run_id)
    assert sync.wait(120) == 0, sync.stderr.read() if sync.stderr else ""
    assert _states(replica_cli) == ["complete"]
    assert replica_cli.query("SELECT status FROM runs") == [("COMPLETED",)]
    # A restart asks nothing of the server (it is gone) and is done at once.
    server.stop()
    again = replica_cli.run("sync", "--run", run_id, "--once")
    assert again.returncode == 0, again.stderr
    assert "complete; not polled again" in again.stderr
    assert _states(replica_cli) == ["complete"]


def test_no_stop_on_completion_keeps_following(replica_cli: Replica) -> None:
    server = replica_cli.server
    run_id = server.trigger("send-email", {})
    server.set_status(run_id, "COMPLETED_SUCCESSFULLY", completedAt=_long_ago())
    replica_cli.start("sync", "--run", run_id, "--no-stop-on-completion")
    replica_cli.wait_for(lambda: _states(replica_cli) == ["live"], what="the feed live")
    # Late writes to a finished run (its cost, say) still arrive.
    server.update_run(run_id, costInCents=12.5)
    replica_cli.wait_for(
        lambda: replica_cli.query("SELECT cost_in_cents FROM runs") == [(12.5,)],
        what="the late write",
    )
    assert _states(replica_cli) == ["live"]


def test_the_feed_ends_when_the_grace_period_does_even_mid_long_poll(
    tmp_path: Path, devserver_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long-polls that outlast the test: only ending one midway can complete the feed.
    server: DevServer = devserver_factory(long_poll_timeout=600)
    monkeypatch.setattr(subscriptions, "COMPLETION_GRACE", 1.0)
    run_id = server.trigger("send-email", {})
    feed = replica.run_feed(run_id, token=server.secret_key, api_url=server.url)

    async def main() -> Engine:
        async with httpx.AsyncClient() as client:
            with Store(tmp_path / "r.db") as store:
                engine = Engine(store, client)
                changed = asyncio.Event()
                engine.on_state = changed.set  # the first change: the feed is live
                syncing = asyncio.create_task(engine.run(sources_for([feed], client)))
                await asyncio.wait_for(changed.wait(), 120)
                assert next(iter(engine.progress.values())).state == "live"
                await asyncio.to_thread(server.set_status, run_id, "COMPLETED_SUCCESSFULLY")
                assert await asyncio.wait_for(syncing, 120) is True
                return engine

    engine = asyncio.run(main())
    [progress] = engine.progress.values()
    assert (progress.state, progress.done) == ("complete", True)
