"""ShardedTransport: a shape's requests keep to one connection pool; shapes spread over many.
LaneTransport: requests at once get a warm connection each, reused by the next ones."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from replica.devserver import DevServer
from replica.protocol.transport import LaneTransport, ShardedTransport, shape_identity
from tests.support.scripted_server import Reply, Request, ScriptedServer
from tests.support.waiting import PATIENCE

BASE = "http://127.0.0.1:3030/realtime/v1/runs"


def test_position_parameters_do_not_change_the_identity() -> None:
    first = httpx.URL(BASE, params={"tags": "a", "offset": "-1"})
    later = httpx.URL(
        BASE, params={"offset": "5_0", "tags": "a", "handle": "h", "cursor": "9", "live": "true"}
    )
    assert shape_identity(first) == shape_identity(later)
    assert shape_identity(first) != shape_identity(httpx.URL(BASE, params={"tags": "b"}))


def test_shapes_spread_over_the_shards() -> None:
    transport = ShardedTransport(shards=8)
    used = {
        id(transport._shard(httpx.Request("GET", httpx.URL(BASE, params={"tags": f"t{i}"}))))
        for i in range(200)
    }
    assert len(used) == 8


def test_shards_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ShardedTransport(shards=0)


@pytest.mark.anyio
async def test_requests_go_through() -> None:
    transport = ShardedTransport(shards=4)
    with DevServer(long_poll_timeout=0.5) as server:
        headers = {
            "Authorization": f"Bearer {server.secret_key}",
            "x-trigger-electric-version": "1.0.0-beta.1",
        }
        async with httpx.AsyncClient(transport=transport, headers=headers) as client:
            for tag in ("a", "b", "c"):
                reply = await client.get(
                    f"{server.url}/realtime/v1/runs", params={"tags": tag, "offset": "-1"}
                )
                assert reply.status_code == 200
                assert reply.headers["electric-handle"]


# -- LaneTransport --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_lanes_keep_one_warm_connection_per_request_at_once() -> None:
    """Rounds of requests at once: the first opens a connection per request, the later ones
    reuse them all (no new TCP connection), and each lane holds one."""
    at_once, rounds = 12, 3
    arrived = 0
    all_in = asyncio.Event()

    async def handler(request: Request) -> Reply:
        nonlocal arrived
        arrived += 1
        if arrived % at_once == 0:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), PATIENCE)  # every request of the round is in
        return Reply(body=request.path)

    transport = LaneTransport()
    async with ScriptedServer(handler) as server, httpx.AsyncClient(transport=transport) as client:
        for round_ in range(rounds):
            all_in.clear()
            replies = await asyncio.gather(
                *(client.get(f"{server.url}/r{round_}/{i}") for i in range(at_once))
            )
            assert [r.text for r in replies] == [f"/r{round_}/{i}" for i in range(at_once)]
        assert len(server.requests) == at_once * rounds
        assert server.connections == at_once
        assert transport.lanes == at_once


@pytest.mark.anyio
async def test_a_lane_serves_one_origin_and_comes_back_after_a_failure() -> None:
    async with (
        ScriptedServer(lambda request: Reply(body="a")) as first,
        ScriptedServer(lambda request: Reply(500, body="b")) as second,
    ):
        transport = LaneTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(3):  # one after the other: one lane, one connection per origin
                assert (await client.get(first.url)).text == "a"
                assert (await client.get(second.url)).status_code == 500
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:1/")
            assert (await client.get(first.url)).text == "a"
            assert transport.lanes == 3  # one per origin, the refused one's included
        assert (first.connections, second.connections) == (1, 1)
        assert transport.lanes == 0  # closed with the client
