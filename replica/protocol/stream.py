"""An async shape stream: the state machine driven over HTTP (requests and their retries
are `fetch.ReplyFetcher`'s), 409s, guards, and batches of messages.

`ShapeStream.pages()` yields one `Batch` per useful response (bounded memory: a consumer can
stage a large snapshot as it arrives); iterating the stream itself yields batches that end
at `up-to-date` boundaries, each with the position to persist after applying it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from replica.errors import (
    CertificateError,
    FastLoopError,
    InvalidPositionError,
    MalformedResponseError,
    MissingHeadersError,
    ProtocolError,
    RetriesExhaustedError,
    StaleResponseError,
    UpstreamError,
    web_page_title,
)
from replica.protocol.backoff import Backoff, BackoffTimer
from replica.protocol.client import HttpClient, as_http_client
from replica.protocol.fetch import ReplyFetcher, Sleep
from replica.protocol.messages import ChangeMessage, parse_messages
from replica.protocol.replies import Reply, out_of_bounds, short_body
from replica.protocol.shape import ShapeDefinition, redact_url
from replica.protocol.state import Position, ShapeState, is_valid_offset
from replica.protocol.values import Parser, RowParser, parse_schema_header

log = logging.getLogger(__name__)

#: Parameter values that query-string encoding leaves as they are.
_PLAIN = re.compile(r"[A-Za-z0-9_.\-~]*")


@dataclass(frozen=True)
class StreamOptions:
    """Tuning of a `ShapeStream`; the defaults follow Electric's own client."""

    backoff: Backoff = field(default_factory=Backoff)
    #: False: stop after the first up-to-date instead of following live changes.
    live: bool = True
    #: Watchdog for live long-polls (the server holds them ~20 s): re-issue after this long.
    live_timeout: float = 45.0
    #: Limit for a whole non-live request, body included; then it is retried.
    request_timeout: float = 120.0
    #: Cached replays of an expired handle tolerated before the one self-heal attempt.
    max_stale_retries: int = 3
    #: Consecutive retries an `on_error` hook may ask for.
    max_error_retries: int = 50
    #: A null in a NOT NULL column is an error (True) or a logged warning (False).
    strict_not_null: bool = True
    #: Per-type value parsers merged over the defaults (see `values.DEFAULT_PARSERS`).
    parsers: Mapping[str, Parser] | None = None
    #: Fast-loop guard: this many non-live requests at one offset within the window...
    fast_loop_requests: int = 5
    fast_loop_window: float = 0.5
    #: ...and this many detections end the stream with `FastLoopError`.
    fast_loop_max_detections: int = 5


@dataclass(slots=True)
class Batch:
    """Messages from the upstream and the position to persist once they are applied.

    `reset` means the shape starts over (409, must-refetch): everything held for it is
    superseded by what follows, up to the next up-to-date. `up_to_date` marks a consistent
    point; `lsn` is its `global_last_seen_lsn`.
    """

    changes: list[ChangeMessage]
    position: Position
    up_to_date: bool = False
    reset: bool = False
    live: bool = False
    lsn: str | None = None


@dataclass(frozen=True)
class StreamEvent:
    """Something a watcher of the stream may want to know: retries, refetches, timeouts.

    `kind` is one of `retry`, `must-refetch`, `stale`, `fast-loop`, `live-timeout`,
    `error-retry`.
    """

    kind: str
    message: str
    status: int | None = None
    delay: float | None = None
    url: str | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class ErrorRecovery:
    """Returned by an `on_error` hook: retry from the current offset with these changes."""

    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None


ErrorHook = Callable[[ProtocolError], "Awaitable[ErrorRecovery | None] | ErrorRecovery | None"]


class ShapeStream:
    """Follow one shape: `async for batch in ShapeStream(shape, client): ...`.

    `position` resumes a previous stream (an invalid one is logged and replaced by a fresh
    start, announced with a `reset` batch). `on_error` is called with errors that retrying
    cannot fix (4xx, malformed data); return `ErrorRecovery` to retry from the current offset,
    or None to let the error propagate. `on_event` receives `StreamEvent`s.
    """

    def __init__(
        self,
        shape: ShapeDefinition,
        client: HttpClient | httpx.AsyncClient,
        *,
        position: Position | None = None,
        options: StreamOptions | None = None,
        on_error: ErrorHook | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.shape = shape
        self.client = as_http_client(client)
        self.options = options or StreamOptions()
        self.on_error = on_error
        self.on_event = on_event
        self._sleep = sleep
        self._start_reset = False
        position = position or Position()
        try:
            position.check()
        except InvalidPositionError as exc:
            log.warning("%s: %s; starting the shape from scratch", shape.key, exc)
            position = Position(expired_handle=position.expired_handle)
            self._start_reset = True
        self.state = ShapeState.resume(position)
        self._row_parser: RowParser | None = None
        self._row_parser_schema: Mapping[str, Any] | None = None
        self._loop_guard: deque[float] = deque()
        self._loop_offset: str | None = None
        self._loop_detections = 0
        self._closed = False
        self._url_of: ShapeDefinition | None = None
        self._shape_query: dict[str, str] = {}  # name -> "name=value", encoded
        self._base_url = ""
        self._fetcher = ReplyFetcher(self.client, self.options, emit=self._emit, sleep=sleep)

    # -- public ---------------------------------------------------------------------

    @property
    def position(self) -> Position:
        """The position after the last response the stream accepted."""
        return self.state.position

    def close(self) -> None:
        """Stop after the current request; iteration ends."""
        self._closed = True

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self.batches()

    async def batches(self) -> AsyncIterator[Batch]:
        """Batches that end at up-to-date boundaries (changes held in memory until then).

        Empty keep-alive replies are skipped unless the handle or offset moved, so the
        position of a quiet shape is still reported when it changes.
        """
        pending: list[ChangeMessage] = []
        reset = False
        reported: tuple[str | None, str] | None = None
        async for page in self.pages():
            if page.reset:
                pending = []
                reset = True
                continue
            pending.extend(page.changes)
            if not page.up_to_date:
                continue
            where = (page.position.handle, page.position.offset)
            if pending or reset or where != reported:
                yield Batch(pending, page.position, True, reset, page.live, page.lsn)
                reported = where
            pending = []
            reset = False

    async def pages(self) -> AsyncIterator[Batch]:
        """Every reply as a batch: data pages, keep-alives, and `reset` announcements."""
        state = self.state
        if self._start_reset:
            self._start_reset = False
            state.reset(None, expire=False)
            yield Batch([], state.position, reset=True)
        error_retries = 0
        error_timer = BackoffTimer(self.options.backoff)
        while not self._closed:
            live = state.live
            if not live:
                announce = await self._guard_fast_loop()
                if announce:
                    yield Batch([], state.position, reset=True)
                    continue
            else:
                # Caught up: earlier loops are over (the official client forgets them too),
                # so occasional ones over a long life never add up to a FastLoopError.
                self._loop_detections = 0
                self._loop_guard.clear()
            requested_offset = state.offset
            try:
                url = self._request_url(state.request_params())
                reply = await self._fetcher.get(self.shape, url, live)
                batch = self._handle(reply, requested_offset, live)
                # The body (up to ~10 MB) is parsed: let it go before the consumer works on
                # the batch, which this frame would otherwise keep alive until the next reply.
                del reply
            except ProtocolError as exc:
                if isinstance(exc, UpstreamError) and out_of_bounds(exc):
                    # Electric answers 400 when our offset is past the end of its log (e.g.
                    # after a server restart). Resetting is the only way forward: start over.
                    log.warning("%s: offset out of bounds; fetching the shape again", self._name)
                    state.reset(None, expire=False)
                    self._emit("must-refetch", "offset out of bounds; refetching", status=400)
                    yield Batch([], state.position, reset=True)
                    continue
                recovery = await self._recover(exc, error_retries)
                error_retries += 1
                if recovery.params or recovery.headers:
                    self.shape = self.shape.with_updates(recovery.params, recovery.headers)
                delay = error_timer.next_delay()
                self._emit("error-retry", f"{exc}; retrying in {delay:.1f} s", delay=delay)
                await self._sleep(delay)
                continue
            if batch is None:
                continue
            if batch.changes:
                error_retries = 0
                error_timer.reset()
            yield batch
            if batch.up_to_date and not self.options.live and not batch.reset:
                return

    # -- one reply ------------------------------------------------------------------

    def _handle(self, reply: Reply, requested_offset: str, live: bool) -> Batch | None:
        state = self.state
        if reply.status == 409:
            new_handle = reply.headers.get("electric-handle") or None
            old = state.handle
            state.reset(new_handle)
            self._emit(
                "must-refetch",
                f"shape handle {old} expired (409); refetching with {new_handle or 'a new handle'}",
                status=409,
                url=reply.url,
            )
            return Batch([], state.position, reset=True)
        if reply.status == 204:
            # Legacy servers (before Electric 1.0.4) ended an empty long-poll with 204.
            state.accept(
                requested_offset=requested_offset,
                handle=reply.headers.get("electric-handle"),
                offset=reply.headers.get("electric-offset"),
                cursor=reply.headers.get("electric-cursor"),
                schema=None,
                up_to_date=True,
            )
            return Batch([], state.position, up_to_date=True, live=live)
        headers = reply.headers
        handle = headers.get("electric-handle")
        if state.is_stale(handle):
            if not state.note_stale(self.options.max_stale_retries):
                raise StaleResponseError(
                    f"kept receiving cached responses of the expired handle {handle}",
                    url=reply.url,
                )
            self._emit(
                "stale", f"ignored a cached response of expired handle {handle}", url=reply.url
            )
            return None
        self._check_headers(reply, live)
        offset = headers["electric-offset"]
        if not _valid_offset(offset):
            raise MalformedResponseError(
                f"electric-offset header {offset!r} is not a valid offset", url=reply.url
            )
        schema = None
        if not live and not state.schema_adopted:
            schema = parse_schema_header(headers["electric-schema"])
        parser = self._parser_for(schema if schema is not None else state.schema)
        body = parse_messages(reply.messages(), parser)
        if body.must_refetch:
            # A must-refetch inside a 200 body: same as a 409 without a new handle; the
            # handle this reply carries is the one that died.
            state.reset(None, retired=handle)
            self._emit("must-refetch", "server sent must-refetch; refetching", url=reply.url)
            return Batch([], state.position, reset=True)
        up_to_date = body.up_to_date or "electric-up-to-date" in headers
        state.accept(
            requested_offset=requested_offset,
            handle=handle,
            offset=offset,
            cursor=headers.get("electric-cursor"),
            schema=schema,
            up_to_date=up_to_date,
        )
        return Batch(body.changes, state.position, up_to_date, False, live, body.lsn)

    def _check_headers(self, reply: Reply, live: bool) -> None:
        required = ["electric-handle", "electric-offset"]
        required.append("electric-cursor" if live else "electric-schema")
        missing = [name for name in required if name not in reply.headers]
        if missing:
            text = short_body(reply.head, 1000)
            if web_page_title(text) is not None:  # a web site there, not a proxy at fault
                raise UpstreamError(reply.status, url=reply.url, body=text)
            raise MissingHeadersError(missing, url=reply.url)

    def _parser_for(self, schema: Mapping[str, Any] | None) -> RowParser | None:
        if schema is None:
            return None
        if schema is not self._row_parser_schema:
            self._row_parser = RowParser(
                schema, self.options.parsers, strict_not_null=self.options.strict_not_null
            )
            self._row_parser_schema = schema
        return self._row_parser

    # -- guards and hooks -------------------------------------------------------------

    async def _guard_fast_loop(self) -> bool:
        """Detect a tight loop of non-live requests at one offset; True if it reset."""
        opts = self.options
        now = time.monotonic()
        if self.state.offset != self._loop_offset:
            self._loop_offset = self.state.offset
            self._loop_guard.clear()
        guard = self._loop_guard
        guard.append(now)
        while guard and now - guard[0] > opts.fast_loop_window:
            guard.popleft()
        if len(guard) < opts.fast_loop_requests:
            return False
        guard.clear()
        self._loop_detections += 1
        if self._loop_detections >= opts.fast_loop_max_detections:
            raise FastLoopError(
                f"{self._loop_detections} tight request loops at offset {self.state.offset}",
                url=redact_url(self.shape.url),
            )
        if self._loop_detections == 1:
            # Start over, but keep what we know: the current handle is not known to be dead.
            self.state.reset(None, expire=False)
            self._emit("fast-loop", "tight request loop detected; refetching the shape")
            return True
        delay = random.uniform(0, min(5.0, 0.1 * 2**self._loop_detections))
        self._emit("fast-loop", f"tight request loop again; pausing {delay:.2f} s", delay=delay)
        await self._sleep(delay)
        return False

    async def _recover(self, exc: ProtocolError, retries: int) -> ErrorRecovery:
        """Ask `on_error` what to do; re-raise when there is no way forward."""
        if (
            self.on_error is None
            or isinstance(
                exc,
                MissingHeadersError
                | StaleResponseError
                | FastLoopError
                | RetriesExhaustedError
                | CertificateError,
            )
            or retries >= self.options.max_error_retries
        ):
            raise exc
        outcome = self.on_error(exc)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome is None:
            raise exc
        return outcome

    def _request_url(self, position: Mapping[str, str]) -> str:
        """The URL of the next request: the shape's parameters, `log=full` unless the shape
        says otherwise (as the official client sends), and `position`'s, sorted (so that the
        same request has the same URL whoever makes it, for shared caches)."""
        if self._url_of is not self.shape:  # worked out once per shape definition
            fixed = {"log": "full", **self.shape.query_params()}
            self._shape_query = {name: urlencode({name: value}) for name, value in fixed.items()}
            self._base_url = str(httpx.URL(self.shape.url).copy_with(query=None))
            self._url_of = self.shape
        pairs = dict(self._shape_query)
        for name, value in position.items():
            pairs[name] = f"{name}={value}" if _PLAIN.fullmatch(value) else urlencode({name: value})
        return f"{self._base_url}?{'&'.join(pairs[name] for name in sorted(pairs))}"

    def _emit(self, kind: str, message: str, **details: Any) -> None:
        level = logging.DEBUG if kind in ("live-timeout", "stale") else logging.WARNING
        log.log(level, "%s: %s", self._name, message)
        if self.on_event is not None:
            self.on_event(StreamEvent(kind, message, **details))

    @property
    def _name(self) -> str:
        return redact_url(self.shape.key)


def _valid_offset(offset: str) -> bool:
    return is_valid_offset(offset) and offset not in ("-1", "now")
