"""`GET /v1/shape`: Electric's HTTP shape API over the emulator's shape registry.

Validation and error bodies follow `params.ex` / `response.ex` (electric-protocol.md §1),
headers and the cache-control matrix §2, sequencing §4, long-poll and cursors §5. The
Trigger.dev realtime routes call `serve_shape` with a definition of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from replica.devserver.offsets import BEFORE_ALL, Offset
from replica.devserver.responses import (
    CACHE_409_HANDLE,
    CACHE_409_NO_HANDLE,
    CACHE_INITIAL,
    CACHE_LIVE,
    CACHE_OTHER,
    ELECTRIC_SERVER,
    cache_live_sse,
    cors_headers,
    electric_error,
    electric_headers,
    invalid_request,
)
from replica.devserver.shape_params import (
    ShapeQuery,
    ShapeRequestError,
    build_definition,
    validate_query,
)
from replica.devserver.shapes import Shape, ShapeDefinition
from replica.protocol.deadline import within

if TYPE_CHECKING:
    from replica.devserver.emulator import Emulator

#: The cursor epoch of `plug/utils.ex` (2024-10-09T00:00:00Z).
_CURSOR_EPOCH = 1728432000


def next_cursor(long_poll_timeout: float, client_cursor: str | None) -> str:
    """§5.2: seconds since the epoch rounded up to the timeout; always > the client's."""
    interval = max(1, round(long_poll_timeout))
    value = math.ceil((time.time() - _CURSOR_EPOCH) / interval) * interval
    try:
        previous = int(client_cursor or 0)
    except ValueError:
        previous = 0
    if value <= previous:
        value = previous + random.randint(1, 3600)
    return str(value)


class InitialResponseCache:
    """The last `offset=-1` response per definition, for replaying stale ones (a fault)."""

    def __init__(self, size: int = 128, max_body: int = 4 * 1024 * 1024) -> None:
        self._items: OrderedDict[tuple[Any, ...], tuple[str, dict[str, str], bytes]] = OrderedDict()
        self.size = size
        self.max_body = max_body

    def remember(
        self, identity: tuple[Any, ...], handle: str, headers: dict[str, str], body: bytes
    ) -> None:
        if len(body) > self.max_body:
            return
        existing = self._items.get(identity)
        if existing is not None and existing[0] != handle:
            # Keep the oldest handle's response: that is what a stale cache would hold.
            return
        self._items[identity] = (handle, headers, body)
        self._items.move_to_end(identity)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def stale(
        self, identity: tuple[Any, ...], is_expired: Any
    ) -> tuple[str, dict[str, str], bytes] | None:
        found = self._items.get(identity)
        if found is not None and is_expired(found[0]):
            return found
        return None

    def forget(self, identity: tuple[Any, ...]) -> None:
        self._items.pop(identity, None)


def _up_to_date(lsn: int) -> bytes:
    return orjson.dumps({"headers": {"control": "up-to-date", "global_last_seen_lsn": str(lsn)}})


def _conflict(shape: Shape | None, origin: str | None) -> Response:
    headers = {
        **electric_headers(origin),
        "cache-control": CACHE_409_HANDLE if shape else CACHE_409_NO_HANDLE,
        "content-type": "application/json",
    }
    if shape is not None:
        headers["electric-handle"] = shape.handle
        # Electric's etag of an error reply: the handle, then no request or reply offset.
        headers["etag"] = f'"{shape.handle}::"'
    return Response(b'[{"headers":{"control":"must-refetch"}}]', 409, headers)


async def _wait(shape: Shape, event: asyncio.Event, timeout: float) -> None:
    if timeout <= 0:
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await within(event.wait(), timeout)


async def serve_shape(
    emu: Emulator, q: ShapeQuery, definition: ShapeDefinition | None = None
) -> Response:
    """Answer one shape request (validation, 409s, snapshot chunks, log, long-poll)."""
    if emu.config.electric_secret and q.secret != emu.config.electric_secret:
        return electric_error(401, {"message": "Unauthorized - Invalid API secret"}, q.origin)
    errors = validate_query(q)
    if errors:
        return invalid_request(errors, q.origin)
    if definition is None:
        try:
            definition = build_definition(emu, q)
        except ShapeRequestError as exc:
            return invalid_request(exc.errors, q.origin)
    registry = emu.registry
    offset_text = q.offset or "-1"

    if offset_text in ("-1", "now"):
        stale = emu.faults.take_stale(definition.identity, emu)
        if stale is not None and offset_text == "-1":
            _handle, headers, body = stale
            return Response(body, 200, headers)
        shape = registry.get_or_create(definition)
    else:
        shape = registry.by_handle(q.handle or "")
        if shape is None or shape.definition.identity != definition.identity:
            # A retired handle or one of another definition: start over with the current.
            return _conflict(registry.get_or_create(definition), q.origin)

    if offset_text == "now":
        return _respond(emu, q, shape, [], shape.latest, False, True, "now")
    offset = BEFORE_ALL if offset_text == "-1" else Offset.parse(offset_text)
    timeout = emu.config.long_poll_timeout

    # Wait for the snapshot chunk (it is rendered in the background) and check bounds.
    deadline = time.monotonic() + max(timeout / 2, 0.0)
    while True:
        event = shape.event
        if shape.rotated:
            return _conflict(
                registry.current(definition) or registry.get_or_create(definition), q.origin
            )
        if registry.snapshot_ready(shape, offset):
            if not registry.out_of_bounds(shape, offset):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return invalid_request({"offset": ["out of bounds for this shape"]}, q.origin)
            await _wait(shape, event, remaining)
        else:
            await _wait(shape, event, 5.0)

    if q.live and q.live_sse:
        return _sse(emu, q, shape, offset)

    deadline = time.monotonic() + timeout
    while True:
        event = shape.event
        if shape.rotated:
            return _conflict(registry.get_or_create(definition), q.origin)
        result = registry.read(shape, offset)
        remaining = deadline - time.monotonic()
        if result.has_data or not q.live or remaining <= 0 or emu.closing:
            break
        await _wait(shape, event, remaining)

    up_to_date = result.up_to_date and offset != BEFORE_ALL
    return _respond(
        emu, q, shape, result.parts, result.end, result.has_data, up_to_date, offset_text
    )


def _respond(
    emu: Emulator,
    q: ShapeQuery,
    shape: Shape,
    parts: list[bytes],
    end: Offset,
    has_data: bool,
    up_to_date: bool,
    offset_text: str,
) -> Response:
    lsn = emu.db.lsn
    if up_to_date:
        lsn = end.tx or lsn if q.live and has_data else max(lsn, end.tx)
        parts = [*parts, _up_to_date(lsn)]
    body = b"[" + b",".join(parts) + b"]"
    etag = f'"{shape.handle}:{offset_text}:{end}'
    if not has_data:
        # A no-change response must never revalidate (Electric appends a timestamp).
        etag += f":{time.monotonic_ns()}"
    etag += '"'
    headers = {
        **electric_headers(q.origin),
        "electric-handle": shape.handle,
        "electric-offset": str(end),
        "electric-has-data": "true" if has_data else "false",
        "etag": etag,
        "content-type": "application/json",
    }
    if offset_text == "-1":
        headers["cache-control"] = CACHE_INITIAL
    elif q.live:
        headers["cache-control"] = CACHE_LIVE
    else:
        headers["cache-control"] = CACHE_OTHER
    if up_to_date:
        headers["electric-up-to-date"] = ""
    if q.live:
        headers["electric-cursor"] = next_cursor(emu.config.long_poll_timeout, q.cursor)
    else:
        headers["electric-schema"] = orjson.dumps(
            shape.definition.table.electric_schema(shape.definition.columns)
        ).decode()
    if q.if_none_match and q.if_none_match == etag:
        return Response(b"", 304, {k: v for k, v in headers.items() if k != "content-type"})
    if offset_text == "-1":
        emu.initial_responses.remember(shape.definition.identity, shape.handle, headers, body)
    return Response(body, 200, headers)


def _sse(emu: Emulator, q: ShapeQuery, shape: Shape, offset: Offset) -> Response:
    """Live updates as Server-Sent Events: one `data:` event per message (§5.3)."""
    registry = emu.registry
    sse_timeout = max(emu.config.long_poll_timeout * 3, 1.0)

    async def events() -> Any:
        position = offset
        deadline = time.monotonic() + sse_timeout
        last_sent = time.monotonic()
        while not emu.closing and not shape.rotated:
            event = shape.event
            result = registry.read(shape, position)
            if result.has_data:
                chunk = b"".join(b"data: " + p + b"\n\n" for p in result.parts)
                position = result.end
                if result.up_to_date:
                    lsn = result.end.tx or emu.db.lsn
                    chunk += b"data: " + _up_to_date(lsn) + b"\n\n"
                last_sent = time.monotonic()
                yield chunk
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await _wait(shape, event, min(remaining, 21.0))
            if time.monotonic() - last_sent >= 21.0:
                last_sent = time.monotonic()
                yield b": keep-alive\n\n"

    headers = {
        **electric_headers(q.origin),
        "electric-handle": shape.handle,
        "electric-offset": str(offset),
        "electric-cursor": next_cursor(emu.config.long_poll_timeout, q.cursor),
        "cache-control": cache_live_sse(sse_timeout),
        "connection": "keep-alive",
    }
    return StreamingResponse(events(), 200, headers, media_type="text/event-stream")


async def shape_endpoint(request: Request) -> Response:
    """Starlette endpoint of `GET /v1/shape` (HEAD is handled as GET)."""
    emu: Emulator = request.app.state.emulator
    return await serve_shape(emu, ShapeQuery.from_request(request))


async def shape_options(request: Request) -> Response:
    """CORS preflight of `/v1/shape` (`shapes/api/options.ex`)."""
    headers = {
        **cors_headers(request.headers.get("origin")),
        "access-control-max-age": "86400",
        "access-control-allow-headers": "if-none-match, traceparent",
        "electric-server": ELECTRIC_SERVER,
    }
    return Response(b"", 204, headers)


async def shape_delete(request: Request) -> Response:
    """`DELETE /v1/shape`: refused, as on an Electric without `allow_shape_deletion`."""
    return electric_error(405, {"message": "DELETE not allowed"}, request.headers.get("origin"))
