"""A shape's stored status follows it back from a failed request, even when nothing changes.

A live shape that hits a 503 shows `backing-off`; once its next live request succeeds it
must show `live` again, also when that reply is an empty keep-alive that the engine does
not write as a position (tests/engine/test_keep_alive.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

import replica
from replica.engine import Engine
from replica.protocol import Backoff, StreamOptions
from replica.sources.subscriptions import sources_for
from replica.store import Store
from tests.support.scripted_server import Reply, Request, ScriptedServer, change, shape_reply
from tests.support.waiting import wait_for_async


class Upstream:
    """A one-page snapshot, then live: one 503, then empty keep-alives (a little apart).

    The retry after the 503 is held until `resume` is set, so the test sees `backing-off`
    however slowly it looks.
    """

    def __init__(self) -> None:
        self.live_requests = 0
        self.resume = asyncio.Event()

    async def __call__(self, request: Request) -> Reply:
        if request.params.get("live") != "true":
            return shape_reply([change(1, id="1", title="a", done="f")], done=True)
        self.live_requests += 1
        if self.live_requests == 2:
            return Reply(status=503, headers={"retry-after": "0"}, body=b"busy")
        if self.live_requests == 3:
            await self.resume.wait()
        await asyncio.sleep(0.02)
        return shape_reply(cursor=str(self.live_requests), done=True)


async def _states(db: Path) -> list[str]:
    """The stored states seen while the shape goes live, fails once and recovers."""
    upstream = Upstream()
    seen: list[str] = []
    async with ScriptedServer(upstream) as server, httpx.AsyncClient() as client:
        with Store(db) as store:
            options = StreamOptions(backoff=Backoff(initial=0.01, maximum=0.02))
            engine = Engine(store, client, options=options)
            task = asyncio.create_task(
                engine.run(sources_for([replica.electric(server.url, "items")], client))
            )

            def live_again() -> bool:
                """Notes each new stored state; true once the shape is live again after a
                few keep-alives past the failure."""
                shapes = store.shapes()
                if shapes and (not seen or seen[-1] != shapes[0].state):
                    seen.append(shapes[0].state)
                if "backing-off" in seen:
                    upstream.resume.set()
                return upstream.live_requests >= 6 and seen[-1:] == ["live"]

            try:
                await wait_for_async(live_again, what="the shape to be live again")
            finally:
                engine.stop()
                await task
    return seen


def test_a_shape_is_live_again_after_a_failed_request(tmp_path: Path) -> None:
    seen = asyncio.run(_states(tmp_path / "replica.db"))
    assert "backing-off" in seen, seen
    assert seen[-1] == "live", seen
    assert seen.index("backing-off") < len(seen) - 1
