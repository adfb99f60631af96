"""In-process syncing through the Python API, against the emulator."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import replica
from replica.devserver import DevServer
from replica.devserver.testing import devserver, devserver_factory  # noqa: F401
from replica.errors import ShapeDefinitionError
from replica.settings import MissingTokenError
from tests.support.waiting import PATIENCE, wait_for


def test_sync_once_fills_the_database_and_returns_true(
    tmp_path: Path,
    devserver: DevServer,  # noqa: F811
) -> None:
    ids = {devserver.trigger("send-email", {"n": i}, tags=["user:1"]) for i in range(3)}
    devserver.define_table("items", {"id": "int4", "title": "text"}, primary_key="id")
    devserver.insert("items", {"id": 1, "title": "a"})
    feeds = [
        replica.tag("user:1", token=devserver.secret_key, api_url=devserver.url),
        replica.electric(devserver.url, "items"),
    ]
    with replica.Replica(tmp_path / "r.db") as db:
        assert db.sync(*feeds, once=True) is True
        assert {r.id for r in db.runs(tag="user:1")} == ids
        assert db.query("select title from items") == [{"title": "a"}]


def test_async_sync_wakes_callbacks_in_the_same_process(
    tmp_path: Path,
    devserver: DevServer,  # noqa: F811
) -> None:
    run_id = devserver.trigger("send-email", {}, tags=["t"])
    seen: list[tuple[str, str]] = []
    inserted = threading.Event()

    async def main() -> None:
        with replica.Replica(tmp_path / "r.db") as db:

            @db.on_change("runs", start="beginning")
            def record(change: replica.Change) -> None:
                seen.append((change.op, change.row["status"] if change.row else ""))
                inserted.set()
                if change.row and change.row["status"] == "EXECUTING":
                    db.stop()
                    db.stop_sync()

            feed = replica.tag("t", token=devserver.secret_key, api_url=devserver.url)
            syncing = asyncio.create_task(db.async_sync(feed))
            listening = asyncio.create_task(db.alisten(timeout=PATIENCE))
            # The run as the snapshot has it first, then the change.
            assert await asyncio.to_thread(inserted.wait, PATIENCE), "no snapshot"
            await asyncio.to_thread(devserver.set_status, run_id, "EXECUTING")
            await asyncio.wait_for(asyncio.gather(syncing, listening), PATIENCE)

    asyncio.run(main())
    assert seen[0] == ("insert", "QUEUED")
    assert seen[-1] == ("update", "EXECUTING")


def test_stop_sync_from_another_thread(tmp_path: Path, devserver: DevServer) -> None:  # noqa: F811
    devserver.trigger("send-email", {}, tags=["t"])
    with replica.Replica(tmp_path / "r.db") as db:

        def stop_once_synced() -> None:
            try:
                wait_for(lambda: db.query("SELECT count(*) AS n FROM runs")[0]["n"], what="the run")
            finally:
                db.stop_sync()

        stopper = threading.Thread(target=stop_once_synced)
        stopper.start()
        assert db.sync(replica.tag("t", token=devserver.secret_key, api_url=devserver.url))
        stopper.join()
        assert len(db.runs()) == 1


def test_feeds_check_their_input_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIGGER_SECRET_KEY", raising=False)
    monkeypatch.delenv("TRIGGER_ACCESS_TOKEN", raising=False)
    with pytest.raises(MissingTokenError):
        replica.tag("user:1")
    with pytest.raises(ShapeDefinitionError):
        replica.run_feed("not-a-run", token="tr_dev_x")
    with pytest.raises(ShapeDefinitionError):
        replica.electric("http://localhost:3000", "items", where="id >")
    feed = replica.batch("batch_abc", token="tr_dev_secret")
    assert "tr_dev_secret" not in repr(feed)


def test_column_names_that_look_like_sql_are_only_names(
    tmp_path: Path,
    devserver: DevServer,  # noqa: F811
) -> None:
    # Statements are built from structures: a quoted column name holding SQL text (here the
    # very text a statement used to be split on) is a name like any other, on the set-based
    # path (many inserts), the row-by-row path (a few) and for updates.
    odd = ['note") VALUES (', 'say "hi"', "it's"]
    devserver.define_table("odd", {"id": "int4", **dict.fromkeys(odd, "text")}, "id")
    devserver.insert("odd", *({"id": i, **{c: f"{c}{i}" for c in odd}} for i in range(40)))
    feed = replica.electric(devserver.url, "odd")
    with replica.Replica(tmp_path / "r.db") as db:
        assert db.sync(feed, once=True) is True
        devserver.update("odd", {"id": 3}, {odd[0]: "changed"})
        devserver.insert("odd", {"id": 99, **dict.fromkeys(odd, "new")})
        assert db.sync(feed, once=True) is True
        rows = {row["id"]: row for row in db.query("select * from odd")}
    assert len(rows) == 41
    assert rows[5] == {"id": 5, **{c: f"{c}5" for c in odd}}
    assert rows[3][odd[0]] == "changed" and rows[3][odd[1]] == f"{odd[1]}3"
    assert rows[99] == {"id": 99, **dict.fromkeys(odd, "new")}
