"""Run packets (payload, output, metadata): decoding them by type, storing them as JSON text,
and fetching the ones Trigger.dev offloaded to object storage (`application/store`).

See trigger-realtime.md §1.10, §3.5 and §3.6.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import httpx
import orjson

from replica.errors import ProtocolError, RetriesExhaustedError
from replica.protocol.client import HttpClient, Response, as_http_client
from replica.protocol.replies import credentials, redact
from replica.protocol.values import has_long_digit_run
from replica.sources import superjson

__all__ = [
    "NO_PACKET",
    "PACKET_CONCURRENCY",
    "STORE_TYPE",
    "PacketCache",
    "PacketFetcher",
    "PacketLoader",
    "decode_packet",
    "format_utc",
    "packet_json",
    "to_json_text",
]

logger = logging.getLogger(__name__)

#: The packet type of an offloaded packet: its data is an object-store path.
STORE_TYPE: Final = "application/store"
_DEFAULT_TYPE: Final = "application/json"


class _NoPacket:
    """The absence of a packet (empty data), as opposed to a packet holding JSON `null`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_PACKET"

    def __bool__(self) -> bool:
        return False


#: What `decode_packet` returns for empty data: store SQL NULL, not JSON `null`.
NO_PACKET: Final = _NoPacket()

ProblemHandler = Callable[[str], None]


# -- decoding ----------------------------------------------------------------------------------


def _loads(text: str) -> Any:
    # orjson reads integers beyond 64 bits as floats without complaint; a document holding a
    # run of 19+ digits (maybe such an integer) goes to the exact stdlib decoder instead.
    if not has_long_digit_run(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # the stdlib accepts a few documents orjson refuses (1e400, lone surrogates)
    return json.loads(text)


def _warn(message: str) -> None:
    logger.warning("%s", message)


def decode_packet(
    data: str | None, data_type: str | None, *, on_problem: ProblemHandler | None = None
) -> Any:
    """Decode one packet by its type, the way the Trigger.dev SDK's `parsePacket` does.

    `application/json` → parsed JSON; `application/super+json` → superjson decoded (Dates,
    bigints, Maps, ... see `replica.sources.superjson`); `text/plain`, no type and any other
    type (the match is exact: `application/json; charset=utf-8` is another type) → the
    string itself. Empty or missing data → `NO_PACKET`. Never raises for bad data: JSON that
    does not parse is kept as the raw string and reported through `on_problem` (a warning in
    this module's log by default). An `application/store` packet must be fetched first; here
    its path is returned as a string like any unknown type.
    """
    if not data:
        return NO_PACKET
    # Matched exactly, as the SDK does: "application/json; charset=utf-8" is not JSON there.
    kind = data_type or ""
    if kind not in ("application/json", "application/super+json"):
        return data
    report = on_problem or _warn
    try:
        document = _loads(data)
    except (ValueError, RecursionError) as exc:
        report(f"{kind} packet is not valid JSON ({exc}); kept the raw text")
        return data
    if kind == "application/json":
        return document
    return superjson.decode(document, on_problem=report)


# -- storing -------------------------------------------------------------------------------------


def format_utc(value: dt.datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.sssZ` in UTC, milliseconds truncated; a naive datetime is UTC."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(dt.timezone.utc)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
        f"{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


def _decimal_text(value: Decimal) -> str | None:
    return str(value) if value.is_finite() else None


def _default(value: Any) -> Any:
    # Called by orjson for what it does not serialise itself.
    if isinstance(value, dt.datetime):
        return format_utc(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, Decimal):
        text = _decimal_text(value)
        return None if text is None else orjson.Fragment(text)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME


def to_json_text(value: Any) -> str:
    """Serialise a decoded packet as the JSON text stored in a JSON column.

    Datetimes become `...sssZ` strings (UTC, milliseconds); sets become arrays; Decimals keep
    their digits; integers of any size stay exact; NaN and infinities become `null` (as
    `JSON.stringify` does); non-string keys (from superjson Maps) become strings.
    Raises `ValueError` for what JSON cannot hold (an unknown type, a cycle).
    """
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        pass  # big ints, non-string keys, very deep nesting: the exact, slower path
    chunks: list[str] = []
    try:
        _write(value, chunks)
    except RecursionError:
        raise ValueError("the value is nested too deeply (or holds a cycle)") from None
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return "".join(chunks)


def packet_json(
    data: str | None, data_type: str | None, *, on_problem: ProblemHandler
) -> str | None:
    """A packet as stored in a JSON column: `decode_packet` then `to_json_text`; None for no
    packet. What cannot be stored as JSON (a cycle) is stored as the raw text, reported."""
    decoded = decode_packet(data, data_type, on_problem=on_problem)
    if decoded is NO_PACKET:
        return None
    try:
        return to_json_text(decoded)
    except ValueError as exc:
        on_problem(f"cannot be stored as JSON ({exc}); kept the raw text")
        return to_json_text(data)


_dumps_str = json.JSONEncoder(ensure_ascii=False).encode


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, float) and math.isfinite(key) and key.is_integer():
        return str(int(key))  # how JavaScript prints 1.0
    if isinstance(key, dt.datetime):
        return format_utc(key)
    return str(key)


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_dumps_str(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(repr(value) if math.isfinite(value) else "null")
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_dumps_str(_key_text(key)))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple | set | frozenset):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(value, Decimal):
        out.append(_decimal_text(value) or "null")
    else:
        converted = _default(value)  # datetimes, dates; raises TypeError for the rest
        _write(converted, out)


class PacketCache:
    """Stored packets by object-store path: `(json text, content type)`, least recently used
    out first; bounded by entries and by total characters (an output may be 10 MB). Offloaded
    packets never change under one path, so a run re-sent whole is not downloaded again."""

    def __init__(self, max_entries: int = 128, max_chars: int = 16_000_000) -> None:
        self._items: OrderedDict[str, tuple[str | None, str]] = OrderedDict()
        self._max_entries, self._max_chars, self._chars = max_entries, max_chars, 0

    def get(self, path: str) -> tuple[str | None, str] | None:
        """The cached `(text, content type)` of `path`, or None."""
        item = self._items.get(path)
        if item is not None:
            self._items.move_to_end(path)
        return item

    def put(self, path: str, text: str | None, content_type: str) -> None:
        """Remember a packet (one larger than the whole budget is not kept)."""
        size = len(text or "")
        if size > self._max_chars or path in self._items:
            return
        self._items[path] = (text, content_type)
        self._chars += size
        while len(self._items) > self._max_entries or self._chars > self._max_chars:
            _, (old, _) = self._items.popitem(last=False)
            self._chars -= len(old or "")

    def __len__(self) -> int:
        return len(self._items)


# -- fetching --------------------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    """A URL fit for logs: presigned URLs carry their signature in the query, so drop it."""
    scheme, netloc, path, _, _ = urlsplit(url)
    return urlunsplit((scheme, netloc, path, "", ""))


#: Packet fetches (presign + download) at once, by default: they are bound by latency (two
#: round trips each, tens of ms from an object store), not by bandwidth or CPU.
PACKET_CONCURRENCY: Final = 64

#: Seconds an idle packet connection is kept: long enough to be reused by the next page's
#: packets, not only by the next request (object stores keep idle connections for a minute
#: or more; closing them first avoids sending into a closing socket).
PACKET_KEEPALIVE: Final = 30.0


class _Retry(Exception):
    """A failure worth another attempt (network error, 5xx, 429)."""


class PacketFetcher:
    """Downloads offloaded packets: presigned URL from the API, then the object itself.

    `headers` (with `Authorization`) go to the API only, never to the presigned URL. Each
    request is tried `attempts` times on network errors, 5xx and 429, waiting `initial_delay`
    seconds doubling up to `max_delay` (the SDK's 0.5-5 s); at most `concurrency` fetches run
    at once. Failures raise `ProtocolError` (`RetriesExhaustedError` once retries run out).
    """

    def __init__(
        self,
        client: HttpClient | httpx.AsyncClient,
        api_url: str,
        headers: Mapping[str, str],
        *,
        attempts: int = 5,
        concurrency: int = PACKET_CONCURRENCY,
        timeout: float = 30.0,
        initial_delay: float = 0.5,
        max_delay: float = 5.0,
    ) -> None:
        if attempts < 1 or concurrency < 1:
            raise ValueError("attempts and concurrency must be at least 1")
        self._client = as_http_client(client)
        self._api_url = api_url.rstrip("/")
        self._headers = dict(headers)
        self._attempts = attempts
        self._timeout = timeout
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._semaphore = asyncio.Semaphore(concurrency)
        # Servers that predate the per-run route answer 404 there; ask them the old way only.
        self._run_route = True

    async def fetch(
        self, run_id: str | None, which: Literal["payload", "output"], path: str
    ) -> tuple[str, str]:
        """The packet at object-store `path`, as `(data, content_type)`.

        Asks `GET /api/v1/runs/{run_id}/packets/{which}` for a presigned URL (newer servers),
        falling back to `GET /api/v1/packets/{path}` on 404 or when `run_id` (the friendly
        id) is unknown; then downloads the presigned URL. The content type defaults to
        `application/json`.
        """
        async with self._semaphore:
            presigned = await self._presigned_url(run_id, which, path)
            response = await self._get(presigned, api=False, what=f"the {which} packet {path!r}")
            # The download's own type, kept whole, as the SDK keeps it.
            return response.text, response.headers.get("content-type") or _DEFAULT_TYPE

    async def _presigned_url(
        self, run_id: str | None, which: Literal["payload", "output"], path: str
    ) -> str:
        what = f"a download URL for the {which} packet {path!r}"
        response = None
        if run_id and self._run_route:
            url = f"{self._api_url}/api/v1/runs/{quote(run_id, safe='')}/packets/{which}"
            response = await self._get(url, api=True, what=what, allow_404=True)
            if response.status == 404:
                self._run_route = False
                logger.debug("the per-run packets route answered 404; using /api/v1/packets")
                response = None
        if response is None:
            url = f"{self._api_url}/api/v1/packets/{quote(path, safe='')}"
            response = await self._get(url, api=True, what=what)
        try:
            presigned = orjson.loads(response.body).get("presignedUrl")
        except (orjson.JSONDecodeError, AttributeError):
            presigned = None
        if not isinstance(presigned, str) or not presigned:
            raise ProtocolError(
                f"the answer to {what} has no presignedUrl",
                url=_safe_url(response.url),
                hint="the server is not a Trigger.dev API it can talk to; check api_url",
                cli_hint="the server is not a Trigger.dev API it can talk to; check --api-url",
            )
        # Self-hosted setups may answer with a path relative to the API.
        return urljoin(self._api_url + "/", presigned)

    async def _get(self, url: str, *, api: bool, what: str, allow_404: bool = False) -> Response:
        delay = self._initial_delay
        last = _Retry("not tried")
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._get_once(url, api=api, what=what, allow_404=allow_404)
            except _Retry as exc:
                last = exc
                logger.debug("fetching %s failed (attempt %d): %s", what, attempt, exc)
            if attempt < self._attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay)
        raise RetriesExhaustedError(
            f"fetching {what} failed {self._attempts} times, last with {last}",
            url=_safe_url(url),
        ) from last.__cause__

    def _redacted(self, text: str, url: str) -> str:
        """`text` (an error page) without the token or the URL's signature: a server may
        quote the request, and error text is shown, logged and stored."""
        signature = [v for _, v in httpx.URL(url).params.multi_items() if len(v) >= 8]
        secrets = [*credentials(self._headers), *signature]
        return redact(text.encode(), secrets).decode("utf-8", "replace")

    async def _get_once(self, url: str, *, api: bool, what: str, allow_404: bool) -> Response:
        # Only the API gets the token: the object store must never see it.
        headers = self._headers if api else None
        try:
            response = await self._client.get(url, headers, timeout=self._timeout)
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        status = response.status
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}")
        if status < 300 or (status == 404 and allow_404):
            return response
        detail = self._redacted(response.text.strip(), url)[:200] or "no details"
        raise ProtocolError(
            f"fetching {what} was refused with HTTP {status}: {detail}",
            url=_safe_url(url),
            hint=_HINTS.get(status, "check the token and api_url"),
            cli_hint=None if status in _HINTS else "check the token and --api-url",
        )


_HINTS = {
    401: "the token is missing, invalid or expired; set a valid one",
    403: "the token lacks access to this run's packets (or the download URL expired)",
    404: "the packet is gone from the object store, or the server keeps none (self-hosted)",
}


#: A row waiting for a download: (its values, packet column, run label for logs, friendly id).
Waiter = tuple[dict[str, Any], Literal["payload", "output"], str, str | None]


class PacketLoader:
    """Fills the offloaded packets of row values: from the cache, else by a download started
    at once, which fills every row waiting for that path when it arrives. Until then (and
    for good if it fails) the row says where the packet is (`<column>_ref`, type
    `application/store`), never what it holds (the column is NULL).

    Downloads run as tasks bounded by the fetcher's concurrency; a path already downloading
    is not asked for twice. Whoever writes the rows awaits the tasks `fill` hands out first.
    """

    def __init__(self, fetcher: PacketFetcher | None, cache: PacketCache | None = None) -> None:
        self.fetcher = fetcher
        self.cache = cache if cache is not None else PacketCache()
        self._downloading: dict[str, tuple[asyncio.Task[None], list[Waiter]]] = {}

    def fill(self, waiter: Waiter, path: str, pending: list[asyncio.Task[None]]) -> None:
        """Set the packet at `path` into the waiter's values from the cache, or mark it
        offloaded and start (or join) its download, whose task is added to `pending`: the
        waiter's values are complete once that task is done. The task never raises (a
        failed download is logged and leaves the mark) unless it is cancelled."""
        values, column, label, _ = waiter
        cached = self.cache.get(path)
        if cached is not None:
            values[column], values[f"{column}_type"] = cached
            values[f"{column}_ref"] = None
            return
        values[column], values[f"{column}_type"], values[f"{column}_ref"] = None, STORE_TYPE, path
        if self.fetcher is None:
            logger.warning("run %s: offloaded %s %r not fetched: no fetcher", label, column, path)
            return
        downloading = self._downloading.get(path)
        if downloading is None:
            download = self._download(self.fetcher, path, waiter)
            downloading = (asyncio.get_running_loop().create_task(download), [])
            self._downloading[path] = downloading
        downloading[1].append(waiter)
        pending.append(downloading[0])

    async def _download(self, fetcher: PacketFetcher, path: str, first: Waiter) -> None:
        _, which, label, run_id = first
        try:
            try:
                data, content_type = await fetcher.fetch(run_id, which, path)
            except Exception as exc:
                logger.warning(
                    "run %s: offloaded %s %r not fetched (%s); its path is kept in %s_ref",
                    label, which, path, exc, which,
                )  # fmt: skip
                return

            def problem(message: str) -> None:
                logger.warning("run %s, %s: %s", label, which, message)

            text = packet_json(data, content_type, on_problem=problem)
            self.cache.put(path, text, content_type)
            # No await from here on: a row that asks for `path` now finds it in the cache.
            for values, column, _, _ in self._downloading[path][1]:
                values[column], values[f"{column}_type"] = text, content_type
                values[f"{column}_ref"] = None
        finally:
            del self._downloading[path]
