"""Property tests of the shape stream: random server behaviour never makes the client send a
protocol-violating request, and a stream stopped mid-shape resumes exactly where it was.

These drive the real ShapeStream through httpx.MockTransport (a pure protocol unit test);
the resume test runs over real sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replica.errors import ReplicaError
from replica.protocol import (
    Backoff,
    ErrorRecovery,
    Position,
    ShapeDefinition,
    ShapeRows,
    ShapeStream,
    StreamOptions,
)
from tests.protocol.helpers import take
from tests.support.scripted_server import ITEMS_SCHEMA, Reply, Request, ScriptedServer, change

BEHAVIOURS = [
    "ok",
    "ok",
    "ok",
    "ok-up-to-date",
    "ok-up-to-date",
    "409",
    "409-no-handle",
    "must-refetch-body",
    "out-of-bounds",
    "stale",
    "503",
    "429",
    "network-error",
    "read-timeout",
    "204",
    "malformed",
    "forbidden",
]


class RandomServer:
    """An Electric-like server whose every reply is drawn by Hypothesis, and a checker of
    every request the client sends against what the server told it so far."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.handle_seq = 1
        self.handle = "h1"
        self.expired: list[str] = []
        self.announced: set[str] = set()
        self.tx = 100
        # What the client may legitimately use, reset whenever the server resets it.
        self.offsets: dict[str, str] = {}  # offset -> handle it was sent with
        self.up_to_date_offsets: set[str] = set()
        self.urls: set[str] = set()
        self.after_reset = False
        self.stale_in_a_row = 0
        self.violations: list[str] = []
        self.requests = 0

    def _reset_epoch(self) -> None:
        self.offsets.clear()
        self.up_to_date_offsets.clear()
        self.after_reset = True

    def _rotate(self) -> None:
        # Only a handle the client has adopted can be recognised as expired when replayed.
        if self.handle in self.announced:
            self.expired.append(self.handle)
        self.handle_seq += 1
        self.handle = f"h{self.handle_seq}"

    def check(self, url: str, params: dict[str, str]) -> None:
        offset = params["offset"]
        if params.get("live") == "true":
            if offset not in self.up_to_date_offsets:
                self.violations.append(f"live=true at {offset} before an up-to-date: {url}")
            if "cursor" not in params:
                self.violations.append(f"live request without cursor: {url}")
        if offset != "-1":
            if offset not in self.offsets:
                self.violations.append(f"offset {offset} was never sent in this epoch: {url}")
            elif params.get("handle") != self.offsets[offset]:
                self.violations.append(f"handle does not match offset {offset}: {url}")
        if self.after_reset and url in self.urls:
            self.violations.append(f"URL reused after a reset: {url}")
        self.after_reset = False
        self.urls.add(url)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        url = str(request.url)
        params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        self.check(url, params)
        behaviour = self.draw(st.sampled_from(BEHAVIOURS))
        if behaviour == "stale" and (not self.expired or self.stale_in_a_row >= 2):
            behaviour = "ok"
        self.stale_in_a_row = self.stale_in_a_row + 1 if behaviour == "stale" else 0
        offset, live = params["offset"], params.get("live") == "true"
        if behaviour == "network-error":
            raise httpx.ConnectError("connection refused", request=request)
        if behaviour == "read-timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if behaviour in ("503", "429"):
            return httpx.Response(int(behaviour), json={"message": "busy"})
        if behaviour == "forbidden":
            return httpx.Response(403, json={"error": "Unauthorized"})
        if behaviour == "409" or (
            offset != "-1" and params.get("handle") != self.handle and behaviour.startswith("ok")
        ):
            self._rotate()
            self._reset_epoch()
            self.announced.add(self.handle)
            return httpx.Response(
                409, headers={"electric-handle": self.handle}, json=[_control("must-refetch")]
            )
        if behaviour == "409-no-handle":
            self._rotate()
            self._reset_epoch()
            return httpx.Response(409, json=[_control("must-refetch")])
        if behaviour == "out-of-bounds" and offset != "-1":
            self._reset_epoch()
            return httpx.Response(
                400,
                json={
                    "message": "Invalid request",
                    "errors": {"offset": ["out of bounds for this shape"]},
                },
            )
        if behaviour == "204" and live:
            self.up_to_date_offsets.add(offset)
            return httpx.Response(204)
        if behaviour == "stale":
            # A cache replaying an old reply of a dead handle: the client must not adopt it.
            headers = self._headers(self.expired[-1], "999999_9", live, up_to_date=True)
            return httpx.Response(
                200, headers=headers, json=[change(1, id="1"), _control("up-to-date")]
            )
        if behaviour == "malformed":
            headers = self._headers(self.handle, self._next_offset(offset), live, False)
            return httpx.Response(200, headers=headers, content=b"[{not json")
        if behaviour == "must-refetch-body":
            # The handle this reply carries is the one that just died.
            dead = self.handle
            self.announced.add(dead)
            self._rotate()
            self._reset_epoch()
            headers = self._headers(dead, self._next_offset(offset), live, False)
            return httpx.Response(200, headers=headers, json=[_control("must-refetch")])
        return self._ok(offset, live, up_to_date=behaviour == "ok-up-to-date")

    def _next_offset(self, offset: str) -> str:
        if offset == "-1":
            return "0_0"
        self.tx += 1
        return f"{self.tx}_0"

    def _ok(self, offset: str, live: bool, up_to_date: bool) -> httpx.Response:
        new_offset = self._next_offset(offset)
        self.offsets[new_offset] = self.handle
        self.announced.add(self.handle)  # a reply the client accepts teaches it the handle
        if up_to_date:
            self.up_to_date_offsets.add(new_offset)
        body: list[dict[str, Any]] = [change(self.tx, id=str(self.tx))]
        if up_to_date:
            body.append(_control("up-to-date"))
        return httpx.Response(
            200, headers=self._headers(self.handle, new_offset, live, up_to_date), json=body
        )

    @staticmethod
    def _headers(handle: str, offset: str, live: bool, up_to_date: bool) -> dict[str, str]:
        headers = {"electric-handle": handle, "electric-offset": offset}
        if live:
            headers["electric-cursor"] = "1"
        else:
            headers["electric-schema"] = orjson.dumps(ITEMS_SCHEMA).decode()
        if up_to_date:
            headers["electric-up-to-date"] = ""
        return headers


def _control(name: str) -> dict[str, Any]:
    return {"headers": {"control": name}}


async def _no_sleep(delay: float) -> None:
    await asyncio.sleep(0)


async def _drive(server: RandomServer, max_requests: int) -> None:
    options = StreamOptions(backoff=Backoff(initial=0.0001, maximum=0.0001))
    transport = httpx.MockTransport(server)
    async with httpx.AsyncClient(transport=transport) as client:
        stream = ShapeStream(
            ShapeDefinition("http://electric.test/v1/shape", table="items"),
            client,
            options=options,
            on_error=lambda error: ErrorRecovery(),
            sleep=_no_sleep,
        )
        try:
            async for _ in stream.pages():
                if server.requests >= max_requests:
                    break
        except ReplicaError:
            pass  # a typed, deliberate stop (e.g. the fast-loop guard) is a valid outcome


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_server_behaviour_never_yields_a_protocol_violation(data: st.DataObject) -> None:
    server = RandomServer(data.draw)
    asyncio.run(_drive(server, max_requests=40))
    assert server.violations == []


# -- resume -------------------------------------------------------------------------------


class LogServer:
    """A consistent shape log served in pages of `page_size` messages (like Electric)."""

    def __init__(self, total: int, page_size: int, handle: str = "h1") -> None:
        self.handle = handle
        self.page_size = page_size
        self.messages = [change(i, id=str(i), title=f"row {i}") for i in range(total)]
        self.pages = [self.messages[i : i + page_size] for i in range(0, total, page_size)]

    def offset_of(self, page: int) -> str:
        return f"0_{page}" if page < len(self.pages) - 1 else "0_inf"

    def __call__(self, request: Request) -> Reply:
        params = request.params
        offset = params["offset"]
        if params.get("live") == "true":
            return Reply(hang=True)
        if offset == "-1":
            page = 0
        else:
            served = [self.offset_of(p) for p in range(len(self.pages))]
            page = served.index(offset) + 1
            if page >= len(self.pages):
                page = len(self.pages)  # nothing more: up to date at the end
        headers = {
            "electric-handle": self.handle,
            "electric-schema": orjson.dumps(ITEMS_SCHEMA).decode(),
        }
        if page >= len(self.pages):
            headers["electric-offset"] = offset
            headers["electric-up-to-date"] = ""
            return Reply(200, headers, [_control("up-to-date")])
        headers["electric-offset"] = self.offset_of(page)
        body = list(self.pages[page])
        if page == len(self.pages) - 1 and offset != "-1":
            body.append(_control("up-to-date"))
            headers["electric-up-to-date"] = ""
        return Reply(200, headers, body)


def _keys(pages: Iterator[Any]) -> list[str]:
    return [c.key for p in pages for c in p.changes]


@pytest.mark.anyio
@pytest.mark.parametrize("stop_after", [1, 2, 4])
async def test_resume_mid_shape_receives_exactly_the_remaining_messages(stop_after: int) -> None:
    log = LogServer(total=50, page_size=10)
    async with ScriptedServer(log) as server:
        first = await take(server.url, stop_after, pages=True)
        saved = first[-1].position
        assert saved.offset != "-1"
        # A new stream from the saved position (as a store would reload it) reads the rest.
        remaining = []
        async with httpx.AsyncClient() as client:
            stream = ShapeStream(
                ShapeDefinition(f"{server.url}/v1/shape", table="items"),
                client,
                position=Position.from_dict(saved.to_dict()),
            )
            async for page in stream.pages():
                remaining.append(page)
                if page.up_to_date:
                    break
    everything = [m["key"] for m in log.messages]
    received_first = _keys(iter(first))
    received_rest = _keys(iter(remaining))
    assert received_first + received_rest == everything
    assert not set(received_first) & set(received_rest)
    rows = ShapeRows()
    for page in [*first, *remaining]:
        rows.apply_batch(page)
    assert len(rows) == 50
