"""A tiny HTTP/1.1 server on 127.0.0.1 whose every reply is scripted by the test.

It speaks real sockets (keep-alive, content-length) so the client under test goes through
its whole HTTP stack, and it can misbehave on purpose: delay, hang, drop a connection in
the middle of a body.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

_REASONS = {
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Request:
    """A request as the server saw it."""

    method: str
    target: str
    headers: dict[str, str]
    #: Which TCP connection carried it (1 for the first the server accepted, ...).
    connection: int = 0

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    @property
    def param_names(self) -> list[str]:
        return [name for name, _ in parse_qsl(self.query, keep_blank_values=True)]


@dataclass
class Reply:
    """What to answer. `body` may be bytes, text, or anything JSON-serialisable."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = b""
    #: Seconds to wait before answering.
    delay: float = 0.0
    #: Never answer (the client must give up on its own).
    hang: bool = False
    #: Close the connection after this many body bytes (the headers promise more).
    drop_after: int | None = None

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return orjson.dumps(self.body)


Handler = Callable[[Request], "Reply | Awaitable[Reply]"]


class ScriptedServer:
    """Serve `handler(request) -> Reply` on a free port; `requests` records every request.

    With `tls` (a server-side context), it speaks HTTPS.
    """

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.requests: list[Request] = []
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        #: TCP connections accepted so far.
        self.connections = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        connection = self.connections
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                request.connection = connection
                self.requests.append(request)
                reply = self.handler(request)
                if inspect.isawaitable(reply):
                    reply = await reply
                if reply.hang:
                    await asyncio.Event().wait()
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                body = reply.encoded()
                head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
                headers = {"content-type": "application/json", **reply.headers}
                if reply.status not in (204, 304):
                    headers["content-length"] = str(len(body))
                head += [f"{name}: {value}" for name, value in headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
                if reply.drop_after is not None:
                    writer.write(body[: reply.drop_after])
                    await writer.drain()
                    writer.close()
                    return
                if reply.status not in (204, 304):
                    writer.write(body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            # Cancelled by __aexit__ (or the peer went away): nothing left to do.
            return
        finally:
            self._tasks.discard(task)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)
    return Request(method, target, headers)


# -- Electric-shaped replies --------------------------------------------------------------

ITEMS_SCHEMA = {
    "id": {"type": "int4", "pk_index": 0, "not_null": True},
    "title": {"type": "text"},
    "done": {"type": "bool"},
}


def change(
    key: Any, operation: str = "insert", *, old_value: dict[str, Any] | None = None, **value: Any
) -> dict[str, Any]:
    """A change message for the `items` table of `ITEMS_SCHEMA` (values as given)."""
    message: dict[str, Any] = {
        "key": f'"public"."items"/"{key}"',
        "value": value,
        "headers": {"operation": operation, "relation": ["public", "items"]},
    }
    if old_value is not None:
        message["old_value"] = old_value
    return message


def up_to_date(lsn: str = "0") -> dict[str, Any]:
    return {"headers": {"control": "up-to-date", "global_last_seen_lsn": lsn}}


def shape_reply(
    messages: Iterable[dict[str, Any]] = (),
    *,
    handle: str = "h1",
    offset: str = "0_0",
    schema: dict[str, Any] | None = ITEMS_SCHEMA,
    cursor: str | None = None,
    done: bool = False,
    status: int = 200,
    extra_headers: dict[str, str] | None = None,
) -> Reply:
    """A shape reply; `done=True` appends up-to-date; `cursor` marks it as a live reply."""
    body = list(messages)
    headers = {"electric-handle": handle, "electric-offset": offset}
    if done:
        body.append(up_to_date())
        headers["electric-up-to-date"] = ""
    if cursor is not None:
        headers["electric-cursor"] = cursor
    elif schema is not None:
        headers["electric-schema"] = orjson.dumps(schema).decode()
    headers.update(extra_headers or {})
    return Reply(status, headers, body)


class Script:
    """Replies in order; once they run out, live requests hang and others get `[up-to-date]`.

    Use as `ScriptedServer(script)`; `script.replies` may be appended to while running.
    """

    def __init__(self, *replies: Reply | Callable[[Request], Reply]) -> None:
        self.replies: list[Reply | Callable[[Request], Reply]] = list(replies)
        self.exhausted = asyncio.Event()

    def __call__(self, request: Request) -> Reply:
        if not self.replies:
            self.exhausted.set()
            if request.params.get("live") == "true":
                return Reply(hang=True)
            return shape_reply(
                handle=request.params.get("handle", "h1"),
                offset=request.params.get("offset", "0_0"),
                done=True,
            )
        reply = self.replies.pop(0)
        if callable(reply):
            reply = reply(request)
        if not self.replies:
            self.exhausted.set()
        return reply
