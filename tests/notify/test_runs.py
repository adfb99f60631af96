"""The SDK's stream calls served from the local replica, synced from the emulator over
real HTTP: subscribe_to_run (stopping once finished), runs with a tag, a batch; typed runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import replica
from replica import Replica, Run
from replica.devserver import DevServer
from replica.engine import Engine
from replica.sources.subscriptions import sources_for
from replica.store import Store
from tests.support.task_models import EmailRun, ReportRun
from tests.support.waiting import PATIENCE

from .helpers import Writer, run, update


@contextlib.asynccontextmanager
async def syncing(
    server: DevServer, store: Store, db: Replica, **feeds: Any
) -> AsyncIterator[None]:
    """The engine following `feeds` (tags=[...], runs=[...], batches=[...]) in this loop."""
    connection = {"token": server.secret_key, "api_url": server.url}
    wanted = [
        *(replica.tag(tag, **connection) for tag in feeds.get("tags", ())),
        *(replica.run_feed(run_id, **connection) for run_id in feeds.get("runs", ())),
        *(replica.batch(batch_id, **connection) for batch_id in feeds.get("batches", ())),
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        sources = sources_for(wanted, client)
        engine = Engine(store, client, on_commit=db.notify_committed)
        task = asyncio.create_task(engine.run(sources))
        try:
            yield
        finally:
            engine.stop()
            await task


class Email(BaseModel):
    to: str


class Sent(BaseModel):
    ok: bool


@pytest.mark.anyio
async def test_subscribe_to_run_ends_after_yielding_the_finished_run(
    devserver: DevServer, store: Store, db: Replica
) -> None:
    run_id = devserver.trigger("send-email", {"to": "a@b.c"}, tags=["user:1"])
    async with syncing(devserver, store, db, runs=[run_id]):
        stream = db.subscribe_to_run(run_id, model=Run[Email, Sent])
        first = await asyncio.wait_for(stream.__anext__(), PATIENCE)
        assert first.status == "QUEUED" and first.is_queued and not first.is_finished
        assert first.payload == Email(to="a@b.c") and first.tags == ["user:1"]
        devserver.start_run(run_id)
        devserver.complete_run(run_id, {"ok": True})
        rest = [run async for run in stream]  # ends by itself
    assert rest[-1].status == "COMPLETED" and rest[-1].is_success and rest[-1].is_completed
    assert rest[-1].is_finished and rest[-1].output == Sent(ok=True)
    assert all(not r.is_finished for r in rest[:-1])


@pytest.mark.anyio
async def test_subscribe_to_run_can_keep_following_a_finished_run(
    devserver: DevServer, store: Store, db: Replica
) -> None:
    run_id = devserver.trigger("t", {}, tags=["user:1"])
    devserver.start_run(run_id)
    devserver.cancel_run(run_id)
    async with syncing(devserver, store, db, runs=[run_id]):
        stream = db.subscribe_to_run(run_id, stop_on_completion=False)
        first = await asyncio.wait_for(stream.__anext__(), PATIENCE)
        assert first.is_cancelled and first.is_finished and not first.is_completed
        # e.g. a child task updating its parent's metadata after the parent finished
        devserver.update_run(run_id, metadata='{"late": true}', metadataType="application/json")
        later = await asyncio.wait_for(stream.__anext__(), PATIENCE)
        assert later.metadata == {"late": True}
        await stream.aclose()


@pytest.mark.anyio
async def test_subscribe_to_runs_with_tag(devserver: DevServer, store: Store, db: Replica) -> None:
    a = devserver.trigger("t", {}, tags=["user:1", "org:x"])
    b = devserver.trigger("t", {}, tags=["user:1"])
    devserver.trigger("t", {}, tags=["user:2"])
    async with syncing(devserver, store, db, tags=["user:1", "user:2"]):
        stream = db.subscribe_to_runs_with_tag("user:1")
        initial = [await asyncio.wait_for(stream.__anext__(), PATIENCE) for _ in range(2)]
        assert {r.id for r in initial} == {a, b}
        devserver.start_run(b)
        changed = await asyncio.wait_for(stream.__anext__(), PATIENCE)
        assert (changed.id, changed.status) == (b, "EXECUTING")
        await stream.aclose()
        both = db.subscribe_to_runs_with_tag(["user:1", "org:x"])  # all of several tags
        assert [r.id for r in [await asyncio.wait_for(both.__anext__(), PATIENCE)]] == [a]
        await both.aclose()


@pytest.mark.anyio
async def test_subscribe_to_batch(devserver: DevServer, store: Store, db: Replica) -> None:
    batch_id, run_ids = devserver.batch_trigger(
        [{"task": "t", "payload": {"n": n}} for n in range(3)]
    )
    outsider = devserver.trigger("t", {}, tags=["user:1"])
    async with syncing(devserver, store, db, batches=[batch_id], tags=["user:1"]):
        stream = db.subscribe_to_batch(batch_id)
        initial = [await asyncio.wait_for(stream.__anext__(), PATIENCE) for _ in range(3)]
        assert sorted(r.id for r in initial) == sorted(run_ids)
        devserver.start_run(outsider)  # not in the batch: not yielded
        devserver.fail_run(run_ids[1], {"message": "boom"})
        failed = await asyncio.wait_for(stream.__anext__(), PATIENCE)
        assert failed.id == run_ids[1] and failed.is_failed and failed.error is not None
        assert failed.error.message == "boom"
        await stream.aclose()


def test_run_and_runs_lookups(db_path: Path, store: Store, db: Replica) -> None:
    writer = Writer(store)
    writer.commit(
        run(1, status="FAILED", tags='["user:1","org:x"]', error='{"message": "m", "name": "E"}'),
        run(2, status="COMPLETED", tags='["user:1"]', task_identifier="other"),
        run(3, tags='["user:2"]'),
    )
    one = db.run("run_1")
    assert one is not None and one.is_failed and one.error is not None and one.error.name == "E"
    assert db.run("run_nope") is None
    assert [r.id for r in db.runs(tag="user:1")] == ["run_2", "run_1"]  # newest first
    assert [r.id for r in db.runs(tag=["user:1", "org:x"])] == ["run_1"]
    assert [r.id for r in db.runs(status=["FAILED", "QUEUED"])] == ["run_3", "run_1"]
    assert [r.id for r in db.runs(task="other")] == ["run_2"]
    assert len(db.runs(limit=2)) == 2


@pytest.mark.anyio
async def test_streams_read_each_run_with_the_model_of_its_task(
    db: Replica, writer: Writer
) -> None:
    writer.commit(
        run(1, task_identifier="send-email", payload='{"to": "a@example.com"}'),
        run(2, task_identifier="render-video"),
        run(3, task_identifier="generate-report", payload='{"reportId": "rep_1"}'),
    )
    stream = db.subscribe_to_runs_with_tag("a", model=EmailRun | ReportRun, other="skip")
    initial = [await asyncio.wait_for(stream.__anext__(), PATIENCE) for _ in range(2)]
    assert {(r.id, type(r)) for r in initial} == {("run_1", EmailRun), ("run_3", ReportRun)}
    writer.commit(update(2, status="EXECUTING"))  # a task without a model: not yielded
    writer.commit(update(1, status="EXECUTING"))
    changed = await asyncio.wait_for(stream.__anext__(), PATIENCE)
    assert (changed.id, type(changed), changed.status) == ("run_1", EmailRun, "EXECUTING")
    await stream.aclose()

    untyped = db.subscribe_to_runs_with_tag("a", models={"send-email": EmailRun})
    kinds = {(r.id, type(r)) for r in [await untyped.__anext__() for _ in range(3)]}
    assert kinds == {("run_1", EmailRun), ("run_2", Run), ("run_3", Run)}
    await untyped.aclose()


@pytest.mark.anyio
async def test_a_skipped_run_still_ends_its_stream_and_a_refused_one_raises(
    db: Replica, writer: Writer
) -> None:
    writer.commit(run(2, task_identifier="render-video"))
    writer.commit(update(2, status="COMPLETED", finished_at="2026-01-01T00:01:00.000Z"))
    skipped = db.subscribe_to_run("run_2", model=EmailRun, other="skip")
    assert await asyncio.wait_for(_all(skipped), PATIENCE) == []
    refused = db.subscribe_to_run("run_2", model=EmailRun, other="error")
    with pytest.raises(replica.ReplicaError, match="run run_2 is of task 'render-video'"):
        await asyncio.wait_for(refused.__anext__(), PATIENCE)


async def _all(stream: AsyncIterator[Run[Any, Any]]) -> list[Run[Any, Any]]:
    return [r async for r in stream]
