"""Offloaded packets off the critical path: a page's downloads start as its rows are mapped
(every slice at once) and the next page is read while they run, yet pages are committed in
order, each whole (no packet missing that is still coming) with its position.

The scripted upstream holds downloads until a state is reached (so many in flight, the next
page asked for); a sync that waited for each slice's or page's packets would never reach it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

import replica
from replica.engine import MAP_SLICE, Engine
from replica.protocol.backoff import Backoff
from replica.sources.subscriptions import sources_for, sync_clients
from replica.store import Store
from tests.sources.helpers import DATA
from tests.support.scripted_server import Reply, Request, ScriptedServer, shape_reply
from tests.support.waiting import PATIENCE

pytestmark = pytest.mark.anyio

SCHEMA = json.loads((DATA / "electric_schema.json").read_text())
TAG = "t"


def run_row(i: int, *, offloaded: bool = False) -> dict[str, Any]:
    """A TaskRun insert as the feed sends it; an offloaded payload holds its object path."""
    payload = f"run_{i}/payload.json" if offloaded else json.dumps({"n": i})
    value = {
        "id": f"c{i}",
        "friendlyId": f"run_{i}",
        "taskIdentifier": "task",
        "status": "PENDING",
        "createdAt": "2026-08-20 09:14:03.512",
        "updatedAt": "2026-08-20 09:14:03.512",
        "payload": payload,
        "payloadType": "application/store" if offloaded else "application/json",
        "runTags": "{t}",
    }
    return {"key": f'"public"."TaskRun"/"c{i}"', "value": value, "headers": {"operation": "insert"}}


class Upstream:
    """A tag feed served in `pages` (the last one up to date) and the packets of its
    offloaded payloads (`{"n": i}` for run i). `on_download(request)` runs before each
    download is answered (to hold it); a path in `missing` answers 404."""

    def __init__(
        self,
        pages: list[list[dict[str, Any]]],
        on_download: Callable[[Request], Awaitable[None]],
        missing: frozenset[str] = frozenset(),
    ) -> None:
        self.pages = pages
        self.on_download = on_download
        self.missing = missing
        self.base = ""
        self.page_requests: list[int] = []  # index of each page asked for, in order
        self.page_asked = asyncio.Event()

    async def __call__(self, request: Request) -> Reply:
        path = request.path
        if path == "/realtime/v1/runs":
            offset = request.params["offset"]
            index = 0 if offset == "-1" else int(offset.split("_")[0])
            self.page_requests.append(index)
            self.page_asked.set()
            last = index == len(self.pages) - 1
            return shape_reply(
                self.pages[index], handle="h", offset=f"{index + 1}_0", schema=SCHEMA, done=last
            )
        if path.startswith("/api/v1/runs/"):  # presign: /api/v1/runs/{id}/packets/payload
            run_id = path.split("/")[4]
            url = f"{self.base}/objects/{quote(run_id)}/payload.json?signature=s3cr3t"
            return Reply(body={"presignedUrl": url})
        if path.startswith("/objects/"):
            object_path = unquote(path[len("/objects/") :])
            await self.on_download(request)
            if object_path in self.missing:
                return Reply(404, body="no such object")
            n = int(object_path.split("/")[0].removeprefix("run_"))
            return Reply(body=json.dumps({"n": n}))
        return Reply(404, body={"error": "Not found"})

    def packet_requests(self, server: ScriptedServer) -> list[Request]:
        return [r for r in server.requests if r.path.startswith(("/api/", "/objects/"))]


def stored(db: Path) -> tuple[str | None, dict[str, tuple[Any, Any]]]:
    """The shape's stored offset and every run's (payload, payload_ref)."""
    conn = sqlite3.connect(db)
    try:
        offset = conn.execute('SELECT "offset" FROM _replica_shapes').fetchone()
        rows = conn.execute("SELECT id, payload, payload_ref FROM runs").fetchall()
    finally:
        conn.close()
    return (offset[0] if offset else None), {r[0]: (r[1], r[2]) for r in rows}


def downloads_running() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "PacketLoader._download"
    ]


async def sync_once(server: ScriptedServer, db: Path) -> bool:
    """`replica sync --once` of the tag feed, packets through their own warm pool."""
    feed = replica.tag(TAG, token="tr_dev_x", api_url=server.url)
    async with sync_clients() as (client, packets):
        with Store(db) as store:
            engine = Engine(store, client, once=True)
            return await engine.run(sources_for([feed], client, packets=packets))


async def test_downloads_of_every_slice_of_a_page_run_at_once(tmp_path: Path) -> None:
    """A page of two slices: the packets of the second start while the first's are held."""
    offloaded = {0, 1, 2, 3, MAP_SLICE, MAP_SLICE + 1, MAP_SLICE + 2, MAP_SLICE + 3}
    page = [run_row(i, offloaded=i in offloaded) for i in range(MAP_SLICE + 10)]
    in_flight = peak = 0
    all_in = asyncio.Event()

    async def hold(request: Request) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == len(offloaded):
            all_in.set()
        await asyncio.wait_for(all_in.wait(), PATIENCE)
        in_flight -= 1

    upstream = Upstream([page], hold)
    async with ScriptedServer(upstream) as server:
        upstream.base = server.url
        assert await asyncio.wait_for(sync_once(server, tmp_path / "r.db"), PATIENCE)
        packet_requests = upstream.packet_requests(server)
    assert peak == len(offloaded)
    offset, runs = stored(tmp_path / "r.db")
    assert offset == "1_0" and len(runs) == len(page)
    for i in offloaded:
        assert runs[f"run_{i}"] == ('{"n":' + str(i) + "}", None)
    # Presign and download of a fetch share a warm connection: one per fetch at once.
    assert len(packet_requests) == 2 * len(offloaded)
    assert len({r.connection for r in packet_requests}) == len(offloaded)


async def test_the_next_page_is_read_while_packets_download_and_pages_commit_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Page 1's packet is held until page 2 was asked for and its own packets were served:
    page 1 is still not written then (a packet of it is coming), and in the end both are,
    in order, with every packet; a download that fails leaves its path in payload_ref."""
    db = tmp_path / "r.db"
    pages = [
        [run_row(0, offloaded=True), run_row(1), run_row(2)],
        [run_row(3, offloaded=True), run_row(4), run_row(5, offloaded=True)],
    ]
    page_two_served = asyncio.Event()
    seen_while_held: list[tuple[str | None, int]] = []

    async def hold(request: Request) -> None:
        if request.path.startswith("/objects/run_0/"):
            await asyncio.wait_for(page_two_served.wait(), PATIENCE)
            offset, runs = stored(db)
            seen_while_held.append((offset, len(runs)))
        elif request.path.startswith(("/objects/run_3/", "/objects/run_5/")):
            done = [r for r in server.requests if r.path.startswith("/objects/run_")]
            if {r.path.split("/")[2] for r in done} >= {"run_3", "run_5"}:
                page_two_served.set()

    upstream = Upstream(pages, hold, missing=frozenset({"run_5/payload.json"}))
    async with ScriptedServer(upstream) as server:
        upstream.base = server.url
        with caplog.at_level(logging.WARNING):
            assert await asyncio.wait_for(sync_once(server, db), PATIENCE)
    assert upstream.page_requests == [0, 1]
    # While page 1 waited for its packet, nothing of it was written: no position, no run.
    assert seen_while_held == [("-1", 0)]
    offset, runs = stored(db)
    assert offset == "2_0"
    assert runs["run_0"] == ('{"n":0}', None)
    assert runs["run_3"] == ('{"n":3}', None)
    assert runs["run_5"] == (None, "run_5/payload.json")
    assert {runs[f"run_{i}"][0] for i in (1, 2, 4)} == {'{"n":1}', '{"n":2}', '{"n":4}'}
    assert "run_5: offloaded payload 'run_5/payload.json' not fetched" in caplog.text


async def test_stopping_while_two_pages_wait_for_packets_writes_nothing(tmp_path: Path) -> None:
    """Stopped with page 1 and page 2 (read ahead) both waiting for downloads that never
    come: the sync ends, nothing is written, and no download is left running."""
    db = tmp_path / "r.db"
    pages = [[run_row(0, offloaded=True)], [run_row(1, offloaded=True)]]
    both_waiting = asyncio.Event()

    async def hang(request: Request) -> None:
        if request.path.startswith("/objects/run_1/"):
            both_waiting.set()
        await asyncio.Event().wait()

    upstream = Upstream(pages, hang)
    async with ScriptedServer(upstream) as server:
        upstream.base = server.url
        feed = replica.tag(TAG, token="tr_dev_x", api_url=server.url)
        async with httpx.AsyncClient() as client:
            with Store(db) as store:
                engine = Engine(store, client)
                syncing = asyncio.create_task(engine.run(sources_for([feed], client)))
                await asyncio.wait_for(both_waiting.wait(), PATIENCE)
                engine.stop()
                assert await asyncio.wait_for(syncing, PATIENCE)
            assert downloads_running() == []
    assert stored(db) == ("-1", {})


async def test_a_page_that_does_not_map_cancels_the_downloads_it_started(tmp_path: Path) -> None:
    """A row that does not map (an insert without its task) after one whose download was
    started: nothing is written, the shape fails after its retries, and no download is
    left running (without the clean-up, the one started is still there)."""
    db = tmp_path / "r.db"
    broken = run_row(1)
    del broken["value"]["taskIdentifier"]

    async def hang(request: Request) -> None:
        await asyncio.Event().wait()

    upstream = Upstream([[run_row(0, offloaded=True), broken]], hang)
    async with ScriptedServer(upstream) as server:
        upstream.base = server.url
        feed = replica.tag(TAG, token="tr_dev_x", api_url=server.url)
        async with httpx.AsyncClient() as client:
            with Store(db) as store:
                retry = Backoff(initial=0.001, maximum=0.001, max_retries=2)
                engine = Engine(store, client, once=True, retry=retry)
                ok = await asyncio.wait_for(engine.run(sources_for([feed], client)), PATIENCE)
            assert not ok
            [error] = engine.failed.values()
            assert "taskIdentifier" in str(error)
            assert downloads_running() == []
    assert stored(db) == ("-1", {})
