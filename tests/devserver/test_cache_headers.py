"""The caching headers a shared cache acts on, as Electric and Trigger.dev's proxy send them.

Electric: the `cache-control` matrix of `put_cache_headers/2` (electric-protocol.md §2.1),
`etag` and `If-None-Match`, `electric-cursor` on live replies, and the `vary: accept-encoding`
its HTTP server (Bandit) adds to every reply but a 204. Trigger.dev's Electric backend passes
Electric's reply headers through (trigger-realtime.md §1.5) but never forwards the caller's
request headers, so a revalidation there is answered in full; its own errors carry no caching
headers at all.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from replica.devserver import DevServer

from .helpers import headers, sync

ITEMS = {"table": "items"}
INITIAL = "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746"
CATCH_UP = "public, max-age=60, stale-while-revalidate=300"
LIVE = "public, max-age=5, stale-while-revalidate=5"


@pytest.fixture
def chunked(devserver_factory: Callable[..., DevServer]) -> DevServer:
    """A server whose `items` snapshot comes in three one-row chunks."""
    server = devserver_factory(chunk_rows=1)
    server.define_table("items", {"id": "int4", "title": "text"}, primary_key="id")
    server.insert(
        "items", {"id": 1, "title": "a"}, {"id": 2, "title": "b"}, {"id": 3, "title": "c"}
    )
    return server


def test_every_shape_reply_varies_on_accept_encoding(chunked: DevServer) -> None:
    with httpx.Client(base_url=chunked.url, timeout=15) as client:
        first = client.get("/v1/shape", params={**ITEMS, "offset": "-1"})
        last, _ = sync(client, ITEMS)
        handle = last.headers["electric-handle"]
        live = client.get(
            "/v1/shape",
            params={**ITEMS, "offset": last.headers["electric-offset"], "handle": handle}
            | {"live": "true", "cursor": ""},
        )
        not_modified = client.get(
            "/v1/shape",
            params={**ITEMS, "offset": "-1"},
            headers={"if-none-match": first.headers["etag"]},
        )
        invalid = client.get("/v1/shape", params={**ITEMS, "offset": "bad"})
        chunked.rotate(handle=handle)
        conflict = client.get("/v1/shape", params={**ITEMS, "offset": "0_0", "handle": handle})
        preflight = client.options("/v1/shape")
    replies = [first, last, live, not_modified, invalid, conflict]
    assert [r.status_code for r in replies] == [200, 200, 200, 304, 400, 409]
    assert all(r.headers["vary"] == "accept-encoding" for r in replies)
    assert preflight.status_code == 204
    assert "vary" not in preflight.headers


def test_cache_control_follows_electrics_matrix(chunked: DevServer) -> None:
    with httpx.Client(base_url=chunked.url, timeout=15) as client:
        first = client.get("/v1/shape", params={**ITEMS, "offset": "-1"})
        handle = first.headers["electric-handle"]
        second = client.get(
            "/v1/shape",
            params={**ITEMS, "offset": first.headers["electric-offset"], "handle": handle},
        )
        last, _ = sync(client, ITEMS)
        live_params = {**ITEMS, "offset": last.headers["electric-offset"], "handle": handle}
        live = client.get("/v1/shape", params={**live_params, "live": "true", "cursor": ""})
        with client.stream(
            "GET", "/v1/shape", params={**live_params, "live": "true", "live_sse": "true"}
        ) as sse:
            sse_headers = sse.headers
    assert first.headers["cache-control"] == INITIAL
    assert "electric-up-to-date" not in second.headers  # a later snapshot chunk
    assert second.headers["cache-control"] == CATCH_UP
    assert last.headers["cache-control"] == CATCH_UP
    assert live.headers["cache-control"] == LIVE
    # A live reply carries the cursor that makes the next live URL new (§5.2).
    assert live.headers["electric-cursor"].isdigit()
    assert "electric-cursor" not in last.headers
    # SSE: cacheable for just under the time the stream stays open (at least a second).
    assert sse_headers["cache-control"].startswith("public, max-age=")
    assert int(sse_headers["cache-control"].rsplit("=", 1)[1]) >= 1


def test_conflicts_are_briefly_cacheable_redirects_with_an_etag(chunked: DevServer) -> None:
    with httpx.Client(base_url=chunked.url, timeout=15) as client:
        last, _ = sync(client, ITEMS)
        old = last.headers["electric-handle"]
        chunked.rotate(handle=old)
        conflict = client.get(
            "/v1/shape",
            params={**ITEMS, "offset": last.headers["electric-offset"], "handle": old},
        )
    assert conflict.status_code == 409
    new = conflict.headers["electric-handle"]
    assert new != old
    assert conflict.headers["cache-control"] == "public, max-age=60, must-revalidate"
    assert conflict.headers["etag"] == f'"{new}::"'
    assert "surrogate-control" not in conflict.headers


def test_trigger_routes_pass_electrics_caching_headers_through(
    devserver: DevServer, client: httpx.Client
) -> None:
    devserver.trigger("t", {}, tags=["cache:1"])
    h = headers(devserver.secret_key)
    params = {"tags": "cache:1", "offset": "-1"}
    first = client.get("/realtime/v1/runs", params=params, headers=h)
    assert first.status_code == 200
    assert first.headers["cache-control"] == INITIAL
    assert first.headers["vary"] == "accept-encoding"
    etag = first.headers["etag"]
    assert etag.startswith(f'"{first.headers["electric-handle"]}:-1:')
    # The webapp fetches Electric without the caller's headers: a revalidation gets it all.
    again = client.get("/realtime/v1/runs", params=params, headers={**h, "if-none-match": etag})
    assert again.status_code == 200
    assert again.content == first.content
    last, _ = sync(client, {"tags": "cache:1"}, "/realtime/v1/runs", headers=h)
    live = client.get(
        "/realtime/v1/runs",
        params={"tags": "cache:1", "offset": last.headers["electric-offset"]}
        | {"handle": last.headers["electric-handle"], "live": "true", "cursor": ""},
        headers=h,
    )
    assert live.headers["cache-control"] == LIVE
    assert live.headers["electric-cursor"].isdigit()


def test_trigger_errors_carry_no_caching_headers(
    devserver_factory: Callable[..., DevServer],
) -> None:
    server = devserver_factory(live_concurrency_limit=0)
    server.trigger("t", {}, tags=["cache:2"])
    token = server.public_token(["read:tags:other"])
    with httpx.Client(base_url=server.url, timeout=15) as client:
        last, _ = sync(
            client, {"tags": "cache:2"}, "/realtime/v1/runs", headers=headers(server.secret_key)
        )
        too_many = client.get(
            "/realtime/v1/runs",
            params={"tags": "cache:2", "offset": last.headers["electric-offset"]}
            | {"handle": last.headers["electric-handle"], "live": "true", "cursor": ""},
            headers=headers(server.secret_key),
        )
        denied = client.get(
            "/realtime/v1/runs", params={"tags": "cache:2", "offset": "-1"}, headers=headers(token)
        )
        unauthenticated = client.get("/realtime/v1/runs", params={"offset": "-1"})
    assert [too_many.status_code, denied.status_code, unauthenticated.status_code] == [
        429,
        403,
        401,
    ]
    for r in (too_many, denied, unauthenticated):
        # Nothing says a cache may keep them: nginx and CDNs pass them on uncached.
        assert "cache-control" not in r.headers
        assert "etag" not in r.headers
        assert r.headers["vary"] == "accept-encoding"
