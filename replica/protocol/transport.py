"""An httpx transport for many long-polls at once: one connection pool per group of shapes.

httpcore's connection pool re-examines every connection it holds each time a request
starts or a response closes, so one pool holding the long-polls of 1,000 shapes spends
O(shapes) per reply: O(shapes²) per long-poll round, most of a core for a quiet replica.
`ShardedTransport` keeps `shards` pools and sends each shape's requests to one of them
(chosen by the URL without its position parameters), so each pool holds a few dozen
connections and a shape keeps reusing its own.
"""

from __future__ import annotations

import logging
import ssl
import zlib
from typing import Any

import httpx

log = logging.getLogger(__name__)

#: Query parameters that move as a shape is followed; the rest names the shape.
_POSITION_PARAMS = frozenset(
    {
        b"offset",
        b"handle",
        b"cursor",
        b"live",
        b"live_sse",
        b"experimental_live_sse",
        b"expired_handle",
    }
)


def shape_identity(url: httpx.URL) -> bytes:
    """The part of a request URL that stays the same while one shape is followed."""
    params = sorted(
        part for part in url.query.split(b"&") if part.partition(b"=")[0] not in _POSITION_PARAMS
    )
    return b"%s://%s%s?%s" % (
        url.raw_scheme,
        url.netloc,
        url.raw_path.partition(b"?")[0],
        b"&".join(params),
    )


class ShardedTransport(httpx.AsyncBaseTransport):
    """`shards` `httpx.AsyncHTTPTransport`s; a shape's requests always use the same one.

    Keyword arguments (`verify`, `limits`, ...) go to each shard. Keep-alive connections
    are not capped by default: every live shape holds one anyway, and closing the excess
    only makes them reconnect on the next long-poll.
    """

    def __init__(self, shards: int = 64, **options: Any) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        # A shape's connection is idle only between two of its requests (milliseconds);
        # one idle for longer is a leftover, and servers close those (uvicorn after 5 s):
        # drop it first rather than send the next request into a closing socket.
        limits = httpx.Limits(
            max_connections=None, max_keepalive_connections=None, keepalive_expiry=1.0
        )
        options.setdefault("limits", limits)
        verify = options.get("verify", True)
        if not isinstance(verify, ssl.SSLContext):
            # One TLS context for all the shards: building one loads the CA bundle, ~45 ms
            # each, so 64 of them made every `replica sync` start 3 s late.
            options["verify"] = httpx.create_ssl_context(
                verify=verify,
                cert=options.pop("cert", None),
                trust_env=options.get("trust_env", True),
            )
        self._shards = [httpx.AsyncHTTPTransport(**options) for _ in range(shards)]

    def _shard(self, request: httpx.Request) -> httpx.AsyncHTTPTransport:
        index = zlib.crc32(shape_identity(request.url)) % len(self._shards)
        return self._shards[index]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._shard(request).handle_async_request(request)

    async def aclose(self) -> None:
        for shard in self._shards:
            try:
                await shard.aclose()
            except Exception as exc:  # closing must go on with the other shards
                log.debug("closing a connection pool failed: %s", exc)
