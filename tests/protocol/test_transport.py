"""ShardedTransport: a shape's requests keep to one connection pool; shapes spread over many."""

from __future__ import annotations

import httpx
import pytest

from replica.devserver import DevServer
from replica.protocol.transport import ShardedTransport, shape_identity

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
