"""replica asks for a position with the very URL the official client uses, so that a shared
cache (a CDN, a caching proxy) answers replicas and browsers from the same entries.

Both clients follow the same scripted server: a two-chunk snapshot, a live request answered
with a 409 that names a new handle, the new snapshot, then a live long-poll. The requests
they make are compared target for target (the random cache-buster aside).
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from replica.protocol import ShapeDefinition, ShapeStream
from tests.protocol.helpers import FAST
from tests.support.scripted_server import Reply, Script, ScriptedServer, change, shape_reply

from .node_clients import NodeScript, ensure_node_modules

pytestmark = pytest.mark.anyio

WHERE = "title <> 'x y' AND id > 0"


def _script() -> Script:
    return Script(
        shape_reply([change(1, id="1", title="a")], handle="h1", offset="0_0"),
        shape_reply([change(2, id="2", title="b")], handle="h1", offset="0_1", done=True),
        Reply(409, {"electric-handle": "h2"}, [{"headers": {"control": "must-refetch"}}]),
        shape_reply([change(1, id="1", title="a")], handle="h2", offset="0_0", done=True),
    )


def _comparable(target: str) -> str:
    parts = urlsplit(target)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return f"{parts.path}?{urlencode([(k, v) for k, v in query if k != 'cache-buster'])}"


async def _wait_for_requests(server: ScriptedServer, count: int) -> None:
    async def enough() -> None:
        while len(server.requests) < count:  # noqa: ASYNC110 - the server keeps a list
            await asyncio.sleep(0.05)

    await asyncio.wait_for(enough(), 120)


async def test_requests_are_those_of_the_official_client() -> None:
    ensure_node_modules()
    async with ScriptedServer(_script()) as server:
        node = NodeScript("electric-shape.mjs", server.url, "items", WHERE, "id,title")
        try:
            await _wait_for_requests(server, 5)  # the fifth is the live long-poll that hangs
        finally:
            node.stop()
        official = [_comparable(r.target) for r in server.requests[:5]]

    async with ScriptedServer(_script()) as server, httpx.AsyncClient() as client:
        shape = ShapeDefinition(
            f"{server.url}/v1/shape", table="items", where=WHERE, columns=["id", "title"]
        )
        stream = ShapeStream(shape, client, options=FAST)

        async def follow() -> None:
            async for _ in stream.pages():
                pass

        task = asyncio.create_task(follow())
        try:
            await _wait_for_requests(server, 5)
        finally:
            task.cancel()
        ours = [_comparable(r.target) for r in server.requests[:5]]

    assert ours == official
