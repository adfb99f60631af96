"""httpx transports that keep httpcore's connection pools small.

httpcore's connection pool re-examines every connection it holds each time a request
starts or a response closes (idle ones with a system call each, and with a count of all
connections for each idle one), so a pool of n connections spends O(n) to O(n²) per
request.

- `ShardedTransport`, for many long-polls at once: one pool holding the long-polls of 1,000
  shapes spends most of a core for a quiet replica. It keeps `shards` pools and sends each
  shape's requests to one of them (chosen by the URL without its position parameters), so
  each pool holds a few dozen connections and a shape keeps reusing its own.
- `LaneTransport`, for many short requests at once (offloaded packets): each request takes
  a free *lane*, a pool of one connection to its origin, and gives it back when its
  response is closed; the lanes used last are taken first, so the busiest connections stay
  warm and the rest expire.
"""

from __future__ import annotations

import logging
import ssl
import zlib
from collections.abc import AsyncIterator, Callable
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
        _share_tls_context(options)
        self._shards = [httpx.AsyncHTTPTransport(**options) for _ in range(shards)]

    def _shard(self, request: httpx.Request) -> httpx.AsyncHTTPTransport:
        index = zlib.crc32(shape_identity(request.url)) % len(self._shards)
        return self._shards[index]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._shard(request).handle_async_request(request)

    async def aclose(self) -> None:
        await _close_all(self._shards)


def _share_tls_context(options: dict[str, Any]) -> None:
    """Make the transport options' `verify` one TLS context for all the pools built from
    them: building one loads the CA bundle, ~45 ms each, so 64 of them made every
    `replica sync` start 3 s late."""
    verify = options.get("verify", True)
    if not isinstance(verify, ssl.SSLContext):
        options["verify"] = httpx.create_ssl_context(
            verify=verify,
            cert=options.pop("cert", None),
            trust_env=options.get("trust_env", True),
        )


async def _close_all(pools: list[httpx.AsyncHTTPTransport]) -> None:
    for pool in pools:
        try:
            await pool.aclose()
        except Exception as exc:  # closing must go on with the other pools
            log.debug("closing a connection pool failed: %s", exc)


Origin = tuple[bytes, bytes, int | None]


class LaneTransport(httpx.AsyncBaseTransport):
    """Requests on lanes: pools (`httpx.AsyncHTTPTransport`s) of one connection to one
    origin, each serving one request at a time. A request takes the free lane of its origin
    that was given back last, or a new lane if none is free; so there are as many lanes per
    origin as requests ever ran at once there, and each request costs O(1) in its pool.

    Keyword arguments (`verify`, ...) go to each lane. An idle lane's connection is closed
    after `keepalive_expiry` seconds (when the lane is next used, or at `aclose`).
    """

    def __init__(self, *, keepalive_expiry: float = 30.0, **options: Any) -> None:
        options["limits"] = httpx.Limits(
            max_connections=1, max_keepalive_connections=1, keepalive_expiry=keepalive_expiry
        )
        _share_tls_context(options)
        self._options = options
        self._free: dict[Origin, list[httpx.AsyncHTTPTransport]] = {}
        self._lanes: list[httpx.AsyncHTTPTransport] = []

    @property
    def lanes(self) -> int:
        """The lanes made so far (each holds at most one connection)."""
        return len(self._lanes)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port)
        free = self._free.setdefault(origin, [])
        if free:
            lane = free.pop()
        else:
            lane = httpx.AsyncHTTPTransport(**self._options)
            self._lanes.append(lane)
        try:
            response = await lane.handle_async_request(request)
        except BaseException:
            free.append(lane)
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _Returning(stream, lambda: free.append(lane))
        return response

    async def aclose(self) -> None:
        await _close_all(self._lanes)
        self._lanes.clear()
        self._free.clear()


class _Returning(httpx.AsyncByteStream):
    """A response body that gives its lane back once closed (once only)."""

    def __init__(self, stream: httpx.AsyncByteStream, give_back: Callable[[], None]) -> None:
        self._stream = stream
        self._give_back: Callable[[], None] | None = give_back

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._give_back is not None:
                self._give_back()
                self._give_back = None
